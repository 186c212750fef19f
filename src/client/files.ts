import { Effect } from "effect"
import { createHash } from "node:crypto"
import { open, stat } from "node:fs/promises"
import * as path from "node:path"
import { digestFromHex, type Sha256Digest } from "../contract/digest.js"
import { LocalFileError } from "./errors.js"
import type { FileIdentity } from "./state.js"

/** Local files: identity for the digest cache, one streaming hash. */

const reasonOf = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

/** Reads are done in 1 MiB chunks (also of part bodies): few system calls, and memory stays a few chunks per stream. */
export const CHUNK = 1024 * 1024

export const identify = (file: string): Effect.Effect<FileIdentity, LocalFileError> =>
  Effect.tryPromise({
    try: () => stat(file, { bigint: true }),
    catch: (cause) => new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) })
  }).pipe(Effect.flatMap((info) =>
    info.isFile()
      ? Effect.succeed({
        path: path.resolve(file),
        size: Number(info.size),
        mtimeNs: info.mtimeNs,
        ctimeNs: info.ctimeNs,
        ino: info.ino
      })
      : Effect.fail(new LocalFileError({ path: file, operation: "read", reason: "not a regular file" }))
  ))

/**
 * The SHA-256 of a whole file, read once into one reused buffer (a read stream would allocate
 * a new chunk per read, and tens of MiB of them wait for the garbage collector at a time);
 * `onBytes` gets the running count. Interruption stops between reads.
 */
export const hashFile = (
  file: string,
  onBytes: (done: number) => void
): Effect.Effect<Sha256Digest, LocalFileError> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({
      try: () => open(file, "r"),
      catch: (cause) => new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) })
    }),
    (handle) =>
      Effect.tryPromise({
        try: async (signal) => {
          const hash = createHash("sha256")
          const buffer = Buffer.allocUnsafe(CHUNK)
          let done = 0
          for (;;) {
            if (signal.aborted) throw signal.reason
            const { bytesRead } = await handle.read(buffer, 0, CHUNK, null)
            if (bytesRead === 0) break
            hash.update(buffer.subarray(0, bytesRead))
            done += bytesRead
            onBytes(done)
          }
          return digestFromHex(hash.digest("hex"))
        },
        catch: (cause) => new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) })
      }),
    (handle) => Effect.promise(() => handle.close())
  )
