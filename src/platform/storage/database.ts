import { SqlClient, SqlError, SqlSchema } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Data, Duration, Effect, Layer, Option, Redacted, Runtime, Schema } from "effect"
import { readdir, readFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { registerCollector, type Sample } from "../observability/metrics.js"

/** Cumulative acquisition figures of a pool, as pgxpool's `Stat()` reports them. */
export interface PoolAcquireStats {
  /** Successful acquisitions. */
  readonly acquires: number
  /** Successful acquisitions that found no idle connection (waited for one to be opened or released). */
  readonly emptyAcquires: number
  /** Acquisitions that gave up: timed out waiting, the connection could not be opened, or the pool was closing. */
  readonly canceledAcquires: number
  /** Total time spent in successful acquisitions, in seconds. */
  readonly acquireSeconds: number
}

type ConnectCallback = (
  err: Error | undefined,
  client: pg.PoolClient | undefined,
  done: (release?: unknown) => void
) => void

/**
 * A `pg.Pool` that counts its acquisitions (node-postgres keeps no such figures) and
 * knows how many connections are still being opened. Every checkout — `pool.query`
 * included — goes through `connect`, so overriding it sees them all.
 */
export class MeteredPool extends pg.Pool {
  readonly #stats = { acquires: 0, emptyAcquires: 0, canceledAcquires: 0, acquireSeconds: 0 }
  readonly #connected = new Set<pg.PoolClient>()
  readonly #handedOut = new WeakSet<pg.PoolClient>()

  constructor(config: pg.PoolConfig) {
    super(config)
    this.on("connect", (client) => void this.#connected.add(client))
    this.on("remove", (client) => void this.#connected.delete(client))
  }

  get acquireStats(): PoolAcquireStats {
    return { ...this.#stats }
  }

  /** Connections counted by the pool whose connection handshake has not finished yet. */
  get constructingCount(): number {
    return Math.max(0, this.totalCount - this.#connected.size)
  }

  override connect(): Promise<pg.PoolClient>
  override connect(callback: ConnectCallback): void
  override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | void {
    const started = performance.now()
    const idleAtStart = this.idleCount
    const record = (client: pg.PoolClient | undefined) => {
      if (client === undefined) {
        this.#stats.canceledAcquires++
        return
      }
      // Empty: nothing was idle, or the connection had to be opened for this caller.
      const fresh = !this.#handedOut.has(client)
      this.#handedOut.add(client)
      this.#stats.acquires++
      if (idleAtStart === 0 || fresh) this.#stats.emptyAcquires++
      this.#stats.acquireSeconds += (performance.now() - started) / 1000
    }
    if (callback === undefined) {
      return super.connect().then(
        (client) => {
          record(client)
          return client
        },
        (error: unknown) => {
          record(undefined)
          throw error
        }
      )
    }
    super.connect((err, client, done) => {
      record(err ? undefined : client)
      callback(err, client, done)
    })
  }
}

/**
 * The PostgreSQL pool behind the SqlClient, exposed so scrape-time metrics can read
 * its figures (connections by state, acquisitions).
 */
export class PgPool extends Context.Tag("imgsrv/PgPool")<PgPool, MeteredPool>() {}

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

/** How much longer than `statement_timeout` the client waits for an answer before it drops the connection. */
const ANSWER_GRACE_MILLIS = 2_000

/** PostgreSQL did not answer a statement in time; the connection it was sent on is closed. */
export class StatementUnanswered extends Error {
  // A timeout, so `isConnectionFailure` (and through it the 503 renderer) knows it.
  override readonly name = "TimeoutError"
  constructor(readonly deadlineMillis: number) {
    super(`PostgreSQL did not answer within ${deadlineMillis} ms`)
  }
}

/**
 * A node-postgres client that gives up on a statement left unanswered for `deadlineMillis`
 * and closes its connection. `statement_timeout` bounds a running statement on a live
 * server; this covers a server that answers nothing at all (frozen, partitioned away).
 * node-postgres' own `query_timeout` answers the caller but keeps the connection, with the
 * statement (maybe a transaction) still open on it, for the next user of the pool; a closed
 * connection cannot be reused: the pool drops it.
 */
const clientWithDeadline = (deadlineMillis: number) =>
  class DeadlineClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config)
      const query = this.query.bind(this) as (...args: Array<unknown>) => unknown
      const guarded = (...args: Array<unknown>): unknown => {
        // @effect/sql-pg and the pool pass a callback as the last argument; other forms
        // (promises, cursors) are not used here and keep node-postgres' behaviour.
        const last = args.length - 1
        const callback = args[last]
        if (typeof callback !== "function") return query(...args)
        const timer = setTimeout(
          () => this.connection.stream.destroy(new StatementUnanswered(deadlineMillis)),
          deadlineMillis
        )
        args[last] = (...result: Array<unknown>) => {
          clearTimeout(timer)
          return (callback as (...result: Array<unknown>) => unknown)(...result)
        }
        return query(...args)
      }
      this.query = guarded as pg.Client["query"]
    }
  }

/** Bounds on every round trip to PostgreSQL; see `PostgresTimeouts` in config.ts. */
export interface DatabaseTimeouts {
  readonly connect: Duration.Duration
  /** None: statements run unbounded (migrations may take as long as they need). */
  readonly statement: Option.Option<Duration.Duration>
}

export interface DatabaseOptions {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  /** Default: 10 s to connect, statements unbounded. */
  readonly timeouts?: DatabaseTimeouts
}

/** A `SqlClient` (and `PgClient`) on a pool we own, plus the `PgPool` handle. */
export const DatabaseLive = (options: DatabaseOptions): Layer.Layer<
  PgClient.PgClient | SqlClient.SqlClient | PgPool,
  SqlError.SqlError
> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    // Pool events arrive outside any fiber: log them through this layer's runtime (the app's logger).
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const statementMillis = Option.map(options.timeouts?.statement ?? Option.none(), Duration.toMillis)
        const created = new MeteredPool({
          connectionString: Redacted.value(options.url),
          max: options.maxConnections,
          application_name: "imgsrv",
          connectionTimeoutMillis: Duration.toMillis(options.timeouts?.connect ?? Duration.seconds(10)),
          types: pgTypes,
          ...Option.match(statementMillis, {
            onNone: () => ({}),
            onSome: (millis) => ({
              statement_timeout: millis,
              Client: clientWithDeadline(millis + ANSWER_GRACE_MILLIS)
            })
          })
        })
        // An idle client losing its connection must not crash the process; the pool
        // replaces it and the next query reports any lasting problem.
        created.on("error", (error) => {
          runFork(Effect.logWarning("postgres idle connection error", { error: error.message }))
        })
        return created
      }),
      // Finalizers are uninterruptible: without `interruptible` the timeout could not cut a hung end().
      (created) => Effect.promise(() => created.end()).pipe(Effect.interruptible, Effect.timeoutOption("2 seconds"))
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

/**
 * The reference's pool series (domain.md §7.2, pgxpool names), read at scrape time:
 * connections by state (`acquired`, `idle`, `constructing`, `total`, `max`) and the
 * cumulative acquisition counters.
 */
export const poolSamples = (pool: MeteredPool): ReadonlyArray<Sample> => {
  const constructing = pool.constructingCount
  const idle = pool.idleCount
  const total = pool.totalCount
  const connections = (state: string, value: number): Sample => ({
    name: "imgsrv_postgres_pool_connections",
    help: "PostgreSQL pool connections by state (acquired, idle, constructing, total, max).",
    type: "gauge",
    labels: { state },
    value
  })
  const stats = pool.acquireStats
  return [
    connections("acquired", Math.max(0, total - idle - constructing)),
    connections("idle", idle),
    connections("constructing", constructing),
    connections("total", total),
    connections("max", pool.options.max),
    {
      name: "imgsrv_postgres_pool_acquires_total",
      help: "Successful PostgreSQL pool acquisitions.",
      type: "counter",
      value: stats.acquires
    },
    {
      name: "imgsrv_postgres_pool_empty_acquires_total",
      help: "Successful acquisitions that had to wait because no idle connection was available.",
      type: "counter",
      value: stats.emptyAcquires
    },
    {
      name: "imgsrv_postgres_pool_canceled_acquires_total",
      help: "Acquisitions that gave up (timed out, could not connect, or the pool was closing).",
      type: "counter",
      value: stats.canceledAcquires
    },
    {
      name: "imgsrv_postgres_pool_acquire_duration_seconds_total",
      help: "Total time spent acquiring PostgreSQL pool connections, in seconds.",
      type: "counter",
      value: stats.acquireSeconds
    }
  ]
}

/** Registers the pool series with the metrics listener. */
export const PoolMetricsLive = Layer.effectDiscard(
  Effect.flatMap(PgPool, (pool) => registerCollector("postgres-pool", Effect.sync(() => poolSamples(pool))))
)

/** A migration file could not be applied; start-up stops and names the file. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly file: string
  /** Not `cause`: the message already carries the driver's reason, which main.ts would repeat. */
  readonly error: unknown
}> {
  override get message() {
    const detail = this.error instanceof SqlError.SqlError && this.error.cause instanceof Error
      ? this.error.cause.message
      : this.error instanceof Error
      ? this.error.message
      : String(this.error)
    return `migration ${this.file} failed: ${detail}`
  }
}

/** `0x696d677372763201` — the reference's key, so mixed fleets would still serialise. */
const MIGRATION_LOCK_KEY = "7596490406398939649"

export const defaultMigrationsDir = fileURLToPath(new URL("../../../migrations", import.meta.url))

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
      const appliedVersions = yield* SqlSchema.findAll({
        Request: Schema.Void,
        Result: Schema.Struct({ version: Schema.String }),
        execute: () => sql`SELECT version FROM imgsrv_schema_migrations`
      })(undefined)
      const done = new Set(appliedVersions.map((r) => r.version))
      const newlyApplied: Array<string> = []
      for (const file of files) {
        if (done.has(file)) continue
        const text = yield* Effect.promise(() => readFile(path.join(dir, file), "utf8"))
        yield* sql.unsafe(text).pipe(
          Effect.zipRight(sql`INSERT INTO imgsrv_schema_migrations (version) VALUES (${file})`),
          Effect.mapError((cause) => new MigrationFailed({ file, error: cause }))
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
