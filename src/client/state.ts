import { Effect, Option } from "effect"
import { createHash, randomUUID } from "node:crypto"
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { LocalFileError } from "./errors.js"

/**
 * What a client remembers between runs so that a second `push` continues the first:
 * the digest of a file (by path, size, mtime, ctime and inode, so a 100 GiB file is not
 * hashed twice), the upload session of a blob on a server, and the publish job of a
 * version. One small JSON file per entry, written atomically (temporary file + rename),
 * so concurrent runs and a `kill -9` leave either the old entry or the new one.
 */

/** Enough of a file's `stat` to tell whether its bytes may have changed. */
export interface FileIdentity {
  readonly path: string
  readonly size: number
  readonly mtimeNs: bigint
  readonly ctimeNs: bigint
  readonly ino: bigint
}

export interface StoredSession {
  readonly uploadId: string
  readonly partSize: number
}

export interface ClientState {
  readonly digestOf: (file: FileIdentity) => Effect.Effect<Option.Option<string>, LocalFileError>
  readonly rememberDigest: (file: FileIdentity, digest: string) => Effect.Effect<void, LocalFileError>
  readonly forgetDigest: (file: FileIdentity) => Effect.Effect<void, LocalFileError>
  readonly sessionOf: (
    server: string,
    digest: string,
    size: number
  ) => Effect.Effect<Option.Option<StoredSession>, LocalFileError>
  readonly rememberSession: (
    server: string,
    digest: string,
    size: number,
    session: StoredSession
  ) => Effect.Effect<void, LocalFileError>
  readonly forgetSession: (server: string, digest: string, size: number) => Effect.Effect<void, LocalFileError>
  readonly publishJobOf: (
    server: string,
    image: string,
    version: string
  ) => Effect.Effect<Option.Option<string>, LocalFileError>
  readonly rememberPublishJob: (
    server: string,
    image: string,
    version: string,
    jobId: string
  ) => Effect.Effect<void, LocalFileError>
}

const fileKey = (
  file: FileIdentity
) => ["digest", file.path, file.size, file.mtimeNs.toString(), file.ctimeNs.toString(), file.ino.toString()]

interface Entries {
  readonly get: (key: ReadonlyArray<unknown>) => Effect.Effect<Option.Option<unknown>, LocalFileError>
  readonly set: (key: ReadonlyArray<unknown>, value: unknown) => Effect.Effect<void, LocalFileError>
  readonly remove: (key: ReadonlyArray<unknown>) => Effect.Effect<void, LocalFileError>
}

const stateOf = (entries: Entries): ClientState => {
  const getString = (key: ReadonlyArray<unknown>, member: string) =>
    entries.get(key).pipe(Effect.map(Option.flatMap((value) => {
      const found = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[member] : undefined
      return typeof found === "string" ? Option.some(found) : Option.none()
    })))
  return {
    digestOf: (file) => getString(fileKey(file), "digest"),
    rememberDigest: (file, digest) => entries.set(fileKey(file), { digest }),
    forgetDigest: (file) => entries.remove(fileKey(file)),
    sessionOf: (server, digest, size) =>
      entries.get(["session", server, digest, size]).pipe(Effect.map(Option.flatMap((value) => {
        const v = typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {}
        return typeof v["uploadId"] === "string" && typeof v["partSize"] === "number"
          ? Option.some({ uploadId: v["uploadId"], partSize: v["partSize"] })
          : Option.none()
      }))),
    rememberSession: (server, digest, size, session) => entries.set(["session", server, digest, size], session),
    forgetSession: (server, digest, size) => entries.remove(["session", server, digest, size]),
    publishJobOf: (server, image, version) => getString(["job", server, image, version], "jobId"),
    rememberPublishJob: (server, image, version, jobId) => entries.set(["job", server, image, version], { jobId })
  }
}

/** Remembers nothing beyond this process (a library user who keeps no state). */
export const memoryState = (): ClientState => {
  const map = new Map<string, unknown>()
  const id = (key: ReadonlyArray<unknown>) => JSON.stringify(key)
  return stateOf({
    get: (key) => Effect.sync(() => Option.fromNullable(map.get(id(key)))),
    set: (key, value) => Effect.sync(() => void map.set(id(key), value)),
    remove: (key) => Effect.sync(() => void map.delete(id(key)))
  })
}

/** Keeps the entries under `dir` (created on first write). */
export const directoryState = (dir: string): ClientState => {
  const fileOf = (key: ReadonlyArray<unknown>) =>
    path.join(dir, `${createHash("sha256").update(JSON.stringify(key)).digest("hex")}.json`)
  const failure = (operation: string, file: string) => (cause: unknown) =>
    new LocalFileError({ path: file, operation, reason: cause instanceof Error ? cause.message : String(cause) })
  return stateOf({
    get: (key) => {
      const file = fileOf(key)
      return Effect.tryPromise({
        try: () => readFile(file, "utf8"),
        catch: (cause) => cause
      }).pipe(
        Effect.map((text): Option.Option<unknown> => {
          try {
            return Option.some(JSON.parse(text) as unknown)
          } catch {
            // Entries are renamed into place whole; one that does not parse was damaged
            // outside imgsrv, and a cache entry that cannot be read is no entry.
            return Option.none()
          }
        }),
        Effect.catchAll((cause) =>
          (cause as { code?: unknown }).code === "ENOENT"
            ? Effect.succeed(Option.none())
            : Effect.fail(failure("read the client state", file)(cause))
        )
      )
    },
    set: (key, value) => {
      const file = fileOf(key)
      const temporary = `${file}.${randomUUID()}.tmp`
      return Effect.tryPromise({
        try: async () => {
          await mkdir(dir, { recursive: true })
          await writeFile(temporary, JSON.stringify(value))
          await rename(temporary, file)
        },
        catch: failure("write the client state", file)
      })
    },
    remove: (key) => {
      const file = fileOf(key)
      return Effect.tryPromise({
        try: () => rm(file, { force: true }),
        catch: failure("remove the client state", file)
      })
    }
  })
}
