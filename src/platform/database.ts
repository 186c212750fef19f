import { PgClient } from "@effect/sql-pg"
import { SqlClient, SqlError } from "@effect/sql"
import { Context, Data, Effect, Layer, Redacted } from "effect"
import { readdir, readFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import pg from "pg"

/**
 * The PostgreSQL pool behind the SqlClient, exposed so scrape-time metrics can read
 * its counters (total / idle / waiting connections).
 */
export class PgPool extends Context.Tag("imgsrv/PgPool")<PgPool, pg.Pool>() {}

/**
 * BIGINT columns (sizes in bytes) come back as JS numbers: imgsrv's limits
 * (≈ 48.8 TiB per object) stay far below 2^53, and strings would leak into every
 * schema. Everything else keeps node-postgres' defaults.
 */
const INT8_OID = 20
const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"]
}

export interface DatabaseOptions {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  readonly applicationName?: string
}

/** A `SqlClient` (and `PgClient`) on a pool we own, plus the `PgPool` handle. */
export const DatabaseLive = (options: DatabaseOptions): Layer.Layer<
  PgClient.PgClient | SqlClient.SqlClient | PgPool,
  SqlError.SqlError
> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const created = new pg.Pool({
          connectionString: Redacted.value(options.url),
          max: options.maxConnections,
          application_name: options.applicationName ?? "imgsrv",
          connectionTimeoutMillis: 10_000,
          types: pgTypes
        })
        // An idle client losing its connection must not crash the process; the pool
        // replaces it and the next query reports any lasting problem.
        created.on("error", (error) => {
          Effect.runFork(Effect.logWarning("postgres idle connection error", { error: error.message }))
        })
        return created
      }),
      (created) => Effect.promise(() => created.end()).pipe(Effect.timeoutOption("5 seconds"))
    )
    yield* Effect.tryPromise({
      try: () => pool.query("SELECT 1"),
      catch: (cause) => new SqlError.SqlError({ cause, message: "could not connect to PostgreSQL" })
    })
    return Layer.merge(
      PgClient.layerFromPool({ acquire: Effect.succeed(pool), applicationName: "imgsrv", types: pgTypes }),
      Layer.succeed(PgPool, pool)
    )
  }))

/** A migration file could not be applied; start-up stops and names the file. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly file: string
  readonly cause: unknown
}> {
  override get message() {
    const detail = this.cause instanceof SqlError.SqlError && this.cause.cause instanceof Error
      ? this.cause.cause.message
      : this.cause instanceof Error
      ? this.cause.message
      : String(this.cause)
    return `migration ${this.file} failed: ${detail}`
  }
}

/** `0x696d677372763201` — the reference's key, so mixed fleets would still serialise. */
const MIGRATION_LOCK_KEY = "7596490406398939649"

export const defaultMigrationsDir = fileURLToPath(new URL("../../migrations", import.meta.url))

/**
 * Applies every `migrations/*.sql` not yet recorded, in file-name order, in ONE
 * transaction that first takes a transaction-scoped advisory lock: replicas starting
 * together queue on the lock, and the later ones find nothing left to do. A failing
 * file rolls everything back and stops start-up with its name.
 */
export const migrate = (dir: string = defaultMigrationsDir) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const files = (yield* Effect.promise(() => readdir(dir)))
      .filter((name) => /^\d{4}_[a-z0-9_]+\.sql$/.test(name))
      .sort()
    const applied = yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`
      yield* sql`CREATE TABLE IF NOT EXISTS imgsrv_schema_migrations (
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`
      const done = new Set(
        (yield* sql<{ version: string }>`SELECT version FROM imgsrv_schema_migrations`).map((r) => r.version)
      )
      const newlyApplied: Array<string> = []
      for (const file of files) {
        if (done.has(file)) continue
        const text = yield* Effect.promise(() => readFile(path.join(dir, file), "utf8"))
        yield* sql.unsafe(text).pipe(
          Effect.zipRight(sql`INSERT INTO imgsrv_schema_migrations (version) VALUES (${file})`),
          Effect.mapError((cause) => new MigrationFailed({ file, cause }))
        )
        newlyApplied.push(file)
      }
      return newlyApplied
    }))
    yield* Effect.logInfo("imgsrv postgres migrations applied").pipe(
      Effect.annotateLogs({ applied: applied.length, total: files.length })
    )
    return applied
  }).pipe(Effect.withSpan("database.migrate"))
