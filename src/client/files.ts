import { Effect } from "effect"
import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { stat } from "node:fs/promises"
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

/** The SHA-256 of a whole file, read once as a stream; `onBytes` gets the running count. */
export const hashFile = (
  file: string,
  onBytes: (done: number) => void
): Effect.Effect<Sha256Digest, LocalFileError> =>
  Effect.async<Sha256Digest, LocalFileError>((resume) => {
    const hash = createHash("sha256")
    const stream = createReadStream(file, { highWaterMark: CHUNK })
    let done = 0
    stream.on("data", (chunk) => {
      const bytes = chunk as Buffer
      hash.update(bytes)
      done += bytes.length
      onBytes(done)
    })
    stream.on("error", (cause) =>
      resume(Effect.fail(new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) }))))
    stream.on("end", () =>
      resume(Effect.succeed(digestFromHex(hash.digest("hex")))))
    return Effect.sync(() => stream.destroy())
  })
