import { Data, Effect } from "effect"
import type { Scope } from "effect"
import { stat, unlink } from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"

/**
 * One imgsrv per data directory. The embedded PostgreSQL cluster under it must have a
 * single owner: a second process would find the first one's server in `postmaster.pid`
 * and take it for a leftover.
 *
 * The lock is a listening Unix socket, which the kernel gives to exactly one process and
 * takes back when that process ends, however it ends (kill -9 included): nothing stale is
 * ever left to be judged by pid or start time, and two processes starting at the same
 * moment cannot both win. On Linux it lives in the abstract namespace, named after the
 * directory's device and inode (any path to the directory, symlinks and bind mounts
 * included, names the same lock); it is shared by the processes of one network
 * namespace. Elsewhere it is a socket file in the directory, which a crash leaves behind:
 * one that nobody listens on any more is removed and bound again.
 *
 * The holder answers every connection with its pid, so a refused start can name it.
 */

/** Another process holds the data directory. */
export class DataDirInUse extends Data.TaggedError("DataDirInUse")<{
  readonly dir: string
  /** The holder's pid, when it answered. */
  readonly holder: number | undefined
}> {
  override get message() {
    const holder = this.holder === undefined ? "another imgsrv" : `another imgsrv (pid ${this.holder})`
    return `data directory ${this.dir} is in use by ${holder}; stop it or choose another --data-dir`
  }
}

/** The lock could not be taken for another reason (the directory is missing, the socket cannot be created). */
export class DataDirLockFailed extends Data.TaggedError("DataDirLockFailed")<{
  readonly dir: string
  readonly cause: unknown
}> {
  override get message() {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `could not lock data directory ${this.dir}: ${detail}`
  }
}

const LOCK_FILE = ".imgsrv.lock"

const lockAddress = (dir: string) =>
  Effect.tryPromise({
    try: async () => {
      if (process.platform !== "linux") return { address: path.join(dir, LOCK_FILE), file: true }
      const info = await stat(dir, { bigint: true })
      return { address: `\0imgsrv/data-dir/${info.dev}/${info.ino}`, file: false }
    },
    catch: (cause) => new DataDirLockFailed({ dir, cause })
  })

const errorCode = (error: unknown) =>
  typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined

/** Binds `address`: "bound", "in-use", or the error. */
const bind = (server: net.Server, address: string, dir: string) =>
  Effect.async<"bound" | "in-use", DataDirLockFailed>((resume) => {
    const onError = (error: Error) =>
      errorCode(error) === "EADDRINUSE"
        ? resume(Effect.succeed("in-use"))
        : resume(Effect.fail(new DataDirLockFailed({ dir, cause: error })))
    server.once("error", onError)
    server.listen({ path: address, exclusive: true }, () => {
      server.off("error", onError)
      resume(Effect.succeed("bound"))
    })
  })

/** Asks the holder of `address` for its pid: a number, "gone" when nobody listens, or undefined when it did not say. */
const askHolder = (address: string) =>
  Effect.async<number | "gone" | undefined>((resume) => {
    let answer = ""
    const socket = net.connect({ path: address })
    const done = (result: number | "gone" | undefined) => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(result))
    }
    // A frozen holder accepts (the kernel does) but never answers.
    const timer = setTimeout(() => done(undefined), 1_000)
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (answer += chunk))
    socket.on("end", () => {
      const pid = Number(answer.trim())
      done(Number.isSafeInteger(pid) && pid > 0 ? pid : undefined)
    })
    socket.on("error", (error) =>
      done(errorCode(error) === "ECONNREFUSED" || errorCode(error) === "ENOENT" ? "gone" : undefined))
  })

/** Holds an exclusive lock on `dir` until the Scope closes; fails with `DataDirInUse` when another process has it. */
export const lockDataDir = (dir: string): Effect.Effect<void, DataDirInUse | DataDirLockFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const { address, file } = yield* lockAddress(dir)
    const server = net.createServer((socket) => socket.end(`${process.pid}\n`))
    // The lock must not keep the process alive on its own.
    server.unref()
    let outcome = yield* bind(server, address, dir)
    if (outcome === "in-use") {
      const holder = yield* askHolder(address)
      if (holder === "gone") {
        // The holder has just ended, or (socket file) died and left the file behind.
        if (file) yield* Effect.promise(() => unlink(address).catch(() => undefined))
        outcome = yield* bind(server, address, dir)
      }
      if (outcome === "in-use") {
        return yield* new DataDirInUse({ dir, holder: typeof holder === "number" ? holder : undefined })
      }
    }
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      }).pipe(Effect.interruptible, Effect.timeoutOption("1 second"))
    )
  })
