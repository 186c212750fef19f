import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Logger, Redacted } from "effect"
import { mkdtemp, readdir, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import pg from "pg"
import { DatabaseLive, defaultMigrationsDir, migrate } from "../../src/platform/storage/database.js"
import { freshDatabaseUrl } from "../support/harness.js"

const onDatabase = (url: Redacted.Redacted<string>) => DatabaseLive({ url, maxConnections: 4 })

describe("migrations", () => {
  it.scoped("are applied once, in order, and recorded", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const files = (yield* Effect.promise(() => readdir(defaultMigrationsDir))).filter((f) => f.endsWith(".sql"))
        .sort()
      const first = yield* migrate().pipe(Effect.provide(onDatabase(url)))
      expect(first).toEqual(files)
      const second = yield* migrate().pipe(Effect.provide(onDatabase(url)))
      expect(second).toEqual([])
      const recorded = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return (yield* sql<{ version: string }>`SELECT version FROM imgsrv_schema_migrations ORDER BY version`)
          .map((r) => r.version)
      }).pipe(Effect.provide(onDatabase(url)))
      expect(recorded).toEqual(files)
    }))

  it.scoped("two migrators starting together do not collide: each file is applied exactly once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      // Separate pools, like two replicas.
      const results = yield* Effect.all(
        [migrate().pipe(Effect.provide(onDatabase(url))), migrate().pipe(Effect.provide(onDatabase(url)))],
        { concurrency: 2 }
      )
      const files = (yield* Effect.promise(() => readdir(defaultMigrationsDir))).filter((f) => f.endsWith(".sql"))
      expect([...results[0], ...results[1]].sort()).toEqual(files.sort())
      expect(results.some((r) => r.length === 0)).toBe(true)
    }))

  it.scoped("a failing migration stops with its file name and leaves nothing half-applied", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const dir = yield* Effect.promise(() => mkdtemp(path.join(tmpdir(), "imgsrv-migrations-")))
      yield* Effect.promise(() => writeFile(path.join(dir, "0001_good.sql"), "CREATE TABLE good (id int);"))
      yield* Effect.promise(() =>
        writeFile(path.join(dir, "0002_broken.sql"), "CREATE TABLE broken (id nonsense_type);")
      )
      const exit = yield* migrate(dir).pipe(Effect.provide(onDatabase(url)), Effect.exit)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        // One line with the file and the driver's reason, said once.
        const error = Cause.squash(exit.cause)
        expect(error instanceof Error ? error.message : String(error)).toBe(
          "migration 0002_broken.sql failed: type \"nonsense_type\" does not exist"
        )
      }
      const tables = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'good'`
      }).pipe(Effect.provide(onDatabase(url)))
      expect(tables[0]!.n).toBe(0)
    }))
})

describe("the pool", () => {
  it.scoped("logs an idle connection's loss through the app's logger and keeps serving", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const logged: Array<string> = []
      // A message logged with extra arguments arrives as an array; its first element is the text.
      const capture = Logger.make(({ message }) =>
        void logged.push(String(Array.isArray(message) ? message[0] : message))
      )
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`SELECT 1` // leaves an idle connection in the pool
        // Another session ends it, as a PostgreSQL restart or an idle timeout would.
        const admin = new pg.Client({ connectionString: Redacted.value(url) })
        yield* Effect.acquireRelease(Effect.promise(() => admin.connect()), () => Effect.promise(() => admin.end()))
        yield* Effect.promise(() =>
          admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'imgsrv'")
        )
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 200)))
        expect(logged).toContain("postgres idle connection error")
        expect(yield* sql<{ one: number }>`SELECT 1 AS one`).toEqual([{ one: 1 }])
      }).pipe(Effect.provide(onDatabase(url)), Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
    }))
})
