/**
 * The local-filesystem `BlobStore` driver: the same contract as S3, on one directory tree.
 *
 * Layout under `root` (keys never start with a dot, so the driver's own area cannot collide
 * with an object):
 *
 * ```
 * <root>/staging/uploads/<uuid>            objects, at path.join(root, key)
 * <root>/cas/sha256/ab/cd/<hex>
 * <root>/.imgsrv/tmp/<random>              temp files (writes, copies, move claims, health probe)
 * <root>/.imgsrv/multipart/<uploadId>/key  the key the upload will assemble
 * <root>/.imgsrv/multipart/<uploadId>/part.<n>
 * ```
 *
 * Crash safety: every file that becomes visible under its final name was written to a temp
 * file in the same filesystem, fsynced, renamed into place, and its directory fsynced. A crash
 * therefore leaves either the old version or the new one, plus at worst a stray temp file in
 * `.imgsrv/tmp` (or a `.part.*.tmp` inside an upload directory, removed with the upload when it
 * completes, is aborted or expires). `removeStaleTemporaries` removes the stray ones in
 * `.imgsrv/tmp` once they are old: another process may share the root and be writing its own,
 * but a live write keeps its file's ctime fresh (every write, rename and link updates it).
 * The whole root must be a single filesystem (rename and link do not cross mounts).
 *
 * ETags:
 * - a part's ETag is opaque (S3 only promises that, api.md §2.5): the fingerprint of the part
 *   file, 32 bare hex characters like an MD5 without quotes (scripts splice it into JSON). It
 *   costs a `stat`, not a pass over the bytes — the uploads layer already hashes every byte once
 *   with SHA-256 — and completion compares it with the part file's fingerprint then, so a part
 *   re-put after the client saw its ETag (a new file: new inode) is refused like S3's InvalidPart;
 * - an object's ETag is a fingerprint of the file version: the quoted, truncated SHA-256 of
 *   `dev:ino:size:mtimeNs`. Objects are never modified in place (every write is a new inode
 *   renamed over the old one), so the fingerprint changes whenever the bytes can, survives a
 *   `move` (rename keeps the inode) and costs a `stat`, not a read of the whole object.
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Effect, Exit, Option, Stream } from "effect"
import type { Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { type BigIntStats, constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Readable } from "node:stream"
import {
  BlobNotFound,
  BlobPreconditionFailed,
  BlobStore,
  BlobStoreError,
  BodyLengthMismatch,
  type ByteRange,
  checkKey,
  checkPartList,
  checkPutPart,
  type CopyOptions,
  InvalidPartList,
  type MultipartUploadInfo,
  type ObjectInfo,
  type OpenedObject,
  stripQuotes
} from "./blob-store.js"
import { isWellFormedKey, type StorageKey } from "./keys.js"

/** S3's limits, enforced here too so both drivers accept and refuse the same requests. */
const MIN_NON_FINAL_PART_BYTES = 5 * 1024 * 1024
const UPLOAD_ID = /^[0-9a-f]{32}$/
const COPY_BUFFER_BYTES = 1024 * 1024
/**
 * Size of each read of an opened object. Large reads make few syscalls and few chunks for
 * whatever consumes them (a socket, a hash, a Stream step each); the memory it costs is
 * bounded by the consumer's backpressure, a few chunks per open object.
 */
const READ_CHUNK_BYTES = 1024 * 1024
/** How much of a part body may wait for the disk before reading the body pauses. */
const WRITE_BEHIND_BYTES = 1024 * 1024

type BlobStoreService = BlobStore["Type"]

const errnoOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

/** True for a `BlobStoreError` whose underlying errno is one of `codes`. */
const hasErrno = (...codes: ReadonlyArray<string>) => (error: unknown): error is BlobStoreError =>
  error instanceof BlobStoreError && codes.includes(errnoOf(error.cause) ?? "")

const isMissing = hasErrno("ENOENT", "ENOTDIR")

const io = <A>(operation: string, key: string | undefined, thunk: () => Promise<A>): Effect.Effect<A, BlobStoreError> =>
  Effect.tryPromise({ try: thunk, catch: (cause) => new BlobStoreError({ operation, key, cause }) })

/** 32 hex characters naming one version of a file (`dev:ino:size:mtimeNs`); no byte is read. */
const fileVersion = (st: BigIntStats): string =>
  createHash("sha256").update(`${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`).digest("hex").slice(0, 32)

const fingerprint = (st: BigIntStats): string => `"${fileVersion(st)}"`

const toInfo = (key: StorageKey, st: BigIntStats): ObjectInfo => ({
  key,
  sizeBytes: Number(st.size),
  etag: fingerprint(st),
  lastModified: st.mtime
})

/** fsync a directory so a rename/link/creation inside it survives a crash. */
const fsyncDir = async (dir: string): Promise<void> => {
  const handle = await fs.open(dir, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** `mkdir -p`, then fsync every directory whose entry was just created so the chain is durable. */
const ensureDir = async (dir: string): Promise<void> => {
  const firstCreated = await fs.mkdir(dir, { recursive: true })
  if (firstCreated === undefined) return
  let current = dir
  const parentOfFirst = path.dirname(firstCreated)
  while (true) {
    const parent = path.dirname(current)
    await fsyncDir(parent)
    if (parent === parentOfFirst || parent === current) return
    current = parent
  }
}

/** `FileHandle.write` may write fewer bytes than asked; loop until the whole chunk is on disk. */
const writeAll = async (handle: fs.FileHandle, data: Uint8Array): Promise<void> => {
  let offset = 0
  while (offset < data.byteLength) {
    const { bytesWritten } = await handle.write(data, offset, data.byteLength - offset, null)
    offset += bytesWritten
  }
}

/** `writeAll` for several buffers at once: one `writev` for all of them (and more if it falls short). */
const writevAll = async (handle: fs.FileHandle, buffers: ReadonlyArray<Uint8Array>): Promise<void> => {
  const pending = [...buffers]
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending)
    let skip = bytesWritten
    while (pending.length > 0 && skip >= pending[0]!.byteLength) skip -= pending.shift()!.byteLength
    if (skip > 0) pending[0] = pending[0]!.subarray(skip)
  }
}

/**
 * Write-behind for a file: `push` hands a chunk over and returns at once while earlier
 * chunks are still being written, so whoever produces the bytes (a socket) keeps going
 * instead of waiting for the disk after every piece; chunks that arrive meanwhile go down
 * together in one `writev`. `push` returns a promise to wait for (backpressure) once
 * `limit` bytes are waiting, and `flush` waits until everything is written. A write
 * failure fails the next `push`/`flush`.
 */
const writeBehind = (handle: fs.FileHandle, limit: number) => {
  let queued: Array<Uint8Array> = []
  let queuedBytes = 0
  let writing: Promise<void> | undefined
  let failure: { readonly error: unknown } | undefined
  const drain = async (): Promise<void> => {
    while (queued.length > 0) {
      const batch = queued
      queued = []
      queuedBytes = 0
      await writevAll(handle, batch)
    }
  }
  const start = (): void => {
    writing = drain().then(
      () => {
        writing = undefined
        // A chunk pushed between the end of the loop and this callback still gets written.
        if (queued.length > 0) start()
      },
      (error: unknown) => {
        failure = { error }
        writing = undefined
      }
    )
  }
  const failed = () => Promise.reject(failure!.error)
  return {
    push: (chunk: Uint8Array): Promise<void> | undefined => {
      if (failure !== undefined) return failed()
      queued.push(chunk)
      queuedBytes += chunk.byteLength
      if (writing === undefined) start()
      else if (queuedBytes >= limit) return writing.then(() => (failure !== undefined ? failed() : undefined))
      return undefined
    },
    flush: async (): Promise<void> => {
      while (writing !== undefined) await writing
      if (failure !== undefined) return failed()
    },
    /** Resolves once no write is under way (whatever their outcome). */
    settled: async (): Promise<void> => {
      while (writing !== undefined) await writing
    }
  }
}

/** Durably writes a small file: temp + fsync + rename + fsync(dir). */
const writeSmallFileDurably = async (target: string, contents: string): Promise<void> => {
  const dir = path.dirname(target)
  const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(8).toString("hex")}.tmp`)
  const handle = await fs.open(tmp, "wx")
  try {
    await handle.writeFile(contents, "utf8")
    await handle.sync()
  } finally {
    await handle.close()
  }
  await fs.rename(tmp, target)
  await fsyncDir(dir)
}

/** Closing / removing during cleanup cannot fail the operation, but a failure is still logged. */
const closeQuietly = (operation: string, key: string | undefined, handle: fs.FileHandle): Effect.Effect<void> =>
  io(operation, key, () => handle.close()).pipe(
    Effect.catchAll((error) => Effect.logWarning("closing a file handle failed", error))
  )

const removeQuietly = (operation: string, key: string | undefined, file: string): Effect.Effect<void> =>
  io(operation, key, () => fs.rm(file, { force: true })).pipe(
    Effect.catchAll((error) => Effect.logWarning("removing a temporary file failed", error))
  )

/**
 * Builds the filesystem driver rooted at `root` (created if missing).
 * The Scope is unused today; it is part of the signature so both drivers compose the same way.
 */
export const makeFilesystemBlobStore = (
  root: string
): Effect.Effect<BlobStoreService, BlobStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const base = path.resolve(root)
    const internalDir = path.join(base, ".imgsrv")
    const tmpDir = path.join(internalDir, "tmp")
    const multipartDir = path.join(internalDir, "multipart")

    yield* io("init", undefined, async () => {
      await ensureDir(tmpDir)
      await ensureDir(multipartDir)
    })

    const objectPath = (key: StorageKey): string => path.join(base, key)
    const tmpPath = (): string => path.join(tmpDir, randomBytes(16).toString("hex"))
    const partPath = (uploadDir: string, partNumber: number): string => path.join(uploadDir, `part.${partNumber}`)

    const statObject = (
      operation: string,
      key: StorageKey
    ): Effect.Effect<BigIntStats, BlobNotFound | BlobStoreError> =>
      io(operation, key, () => fs.stat(objectPath(key), { bigint: true })).pipe(
        Effect.catchIf(isMissing, () => Effect.fail(new BlobNotFound({ key, what: "object" }))),
        Effect.filterOrFail(
          (st) => st.isFile(),
          () => new BlobStoreError({ operation, key, cause: new Error("not a regular file") })
        )
      )

    /** Resolves an upload id to its directory; unknown id or an id for another key → not found. */
    const uploadDirOf = (
      operation: string,
      key: StorageKey,
      uploadId: string
    ): Effect.Effect<string, BlobNotFound | BlobStoreError> =>
      Effect.gen(function*() {
        const notFound = new BlobNotFound({ key, what: "multipart-upload" })
        // The id is caller-supplied: only the shape we mint may be joined into a path.
        if (!UPLOAD_ID.test(uploadId)) return yield* notFound
        const dir = path.join(multipartDir, uploadId)
        const recordedKey = yield* io(operation, key, () => fs.readFile(path.join(dir, "key"), "utf8")).pipe(
          Effect.catchIf(isMissing, () => Effect.fail(notFound))
        )
        if (recordedKey !== key) return yield* notFound
        return dir
      })

    /**
     * Streams `body` into `handle`, failing as soon as it runs long or if it ends short. Writes happen behind the body (`writeBehind`): the body keeps being read while
     * the disk writes, in few large writes.
     */
    const writeBody = <E>(
      key: StorageKey,
      handle: fs.FileHandle,
      body: Stream.Stream<Uint8Array, E>,
      contentLength: number
    ): Effect.Effect<void, E | BodyLengthMismatch | BlobStoreError> =>
      Effect.suspend(() => {
        const behind = writeBehind(handle, WRITE_BEHIND_BYTES)
        let received = 0
        return body.pipe(
          Stream.runForEach((chunk): Effect.Effect<void, BodyLengthMismatch | BlobStoreError> => {
            received += chunk.byteLength
            if (received > contentLength) {
              return Effect.fail(new BodyLengthMismatch({ expected: contentLength, received }))
            }
            const full = behind.push(chunk)
            return full === undefined ? Effect.void : io("putPart", key, () => full)
          }),
          Effect.flatMap((): Effect.Effect<void, BodyLengthMismatch | BlobStoreError> =>
            received === contentLength
              ? io("putPart", key, behind.flush)
              : Effect.fail(new BodyLengthMismatch({ expected: contentLength, received }))
          ),
          // Stopped early (failure, interruption): let the write under way finish before the
          // caller closes and removes the file.
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Effect.promise(behind.settled))
        )
      })

    /** Copies the rest of `src` into `dst` through one reusable buffer. */
    const copyContents = (
      operation: string,
      key: StorageKey,
      src: fs.FileHandle,
      dst: fs.FileHandle
    ): Effect.Effect<void, BlobStoreError> =>
      Effect.suspend(() => {
        const buffer = Buffer.allocUnsafe(COPY_BUFFER_BYTES)
        const step = (): Effect.Effect<void, BlobStoreError> =>
          io(operation, key, () => src.read(buffer, 0, buffer.byteLength, null)).pipe(
            Effect.flatMap(({ bytesRead }) => {
              if (bytesRead === 0) return Effect.void
              const slice = buffer.subarray(0, bytesRead)
              return io(operation, key, () => writeAll(dst, slice)).pipe(Effect.zipRight(Effect.suspend(step)))
            })
          )
        return step()
      })

    /**
     * Opens a fresh temp file, runs `use` with it, and removes the temp file if anything failed
     * or was interrupted (a successful `use` has renamed/linked it away or removed it itself).
     */
    const withTempFile = <A, E>(
      operation: string,
      key: StorageKey,
      file: string,
      use: (handle: fs.FileHandle) => Effect.Effect<A, E>
    ): Effect.Effect<A, E | BlobStoreError> =>
      Effect.acquireUseRelease(
        io(operation, key, () => fs.open(file, "wx")),
        use,
        (handle, exit) =>
          closeQuietly(operation, key, handle).pipe(
            Effect.zipRight(Exit.isFailure(exit) ? removeQuietly(operation, key, file) : Effect.void)
          )
      )

    const createMultipartUpload: BlobStoreService["createMultipartUpload"] = (key) =>
      Effect.gen(function*() {
        yield* checkKey("createMultipartUpload", key)
        const uploadId = randomBytes(16).toString("hex")
        const dir = path.join(multipartDir, uploadId)
        yield* io("createMultipartUpload", key, async () => {
          await fs.mkdir(dir)
          await writeSmallFileDurably(path.join(dir, "key"), key)
          await fsyncDir(multipartDir)
        })
        return uploadId
      })

    const putPart: BlobStoreService["putPart"] = (key, uploadId, partNumber, body, contentLength) =>
      Effect.gen(function*() {
        yield* checkPutPart(key, partNumber, contentLength)
        const dir = yield* uploadDirOf("putPart", key, uploadId)
        // The temp file lives inside the upload directory so an abort removes it too, and the
        // part it may replace stays intact until the rename.
        const tmp = path.join(dir, `.part.${partNumber}.${randomBytes(8).toString("hex")}.tmp`)
        const etag = yield* withTempFile("putPart", key, tmp, (handle) =>
          Effect.gen(function*() {
            yield* writeBody(key, handle, body, contentLength)
            return yield* io("putPart", key, async () => {
              await handle.sync()
              // After the last write: rename keeps the inode and the mtime, so completion sees
              // the same fingerprint unless the part was replaced meanwhile.
              const st = await handle.stat({ bigint: true })
              await fs.rename(tmp, partPath(dir, partNumber))
              await fsyncDir(dir)
              return fileVersion(st)
            })
          })).pipe(
            // The directory vanished under us: the upload was aborted or completed meanwhile.
            Effect.catchIf(isMissing, () => Effect.fail(new BlobNotFound({ key, what: "multipart-upload" })))
          )
        return { partNumber, etag, sizeBytes: contentLength }
      })

    const completeMultipartUpload: BlobStoreService["completeMultipartUpload"] = (key, uploadId, parts) =>
      Effect.gen(function*() {
        yield* checkKey("completeMultipartUpload", key)
        const dir = yield* uploadDirOf("completeMultipartUpload", key, uploadId)
        yield* checkPartList(key, parts)

        // Cheap checks first (existence, S3's 5 MiB minimum for non-final parts) so a bad list
        // is refused before any byte is copied.
        yield* Effect.forEach(parts, (part, index) =>
          io("completeMultipartUpload", key, () =>
            fs.stat(partPath(dir, part.partNumber))).pipe(
              Effect.catchIf(
                isMissing,
                () => Effect.fail(new InvalidPartList({ key, reason: `part ${part.partNumber} was never uploaded` }))
              ),
              Effect.flatMap((st) =>
                index < parts.length - 1 && st.size < MIN_NON_FINAL_PART_BYTES
                  ? Effect.fail(
                    new InvalidPartList({
                      key,
                      reason:
                        `part ${part.partNumber} is ${st.size} bytes; every part but the last needs at least ${MIN_NON_FINAL_PART_BYTES}`
                    })
                  )
                  : Effect.void
              )
            ))

        const target = objectPath(key)
        const tmp = tmpPath()
        const st = yield* withTempFile("completeMultipartUpload", key, tmp, (out) =>
          Effect.gen(function*() {
            for (const part of parts) {
              yield* Effect.acquireUseRelease(
                io("completeMultipartUpload", key, () =>
                  fs.open(partPath(dir, part.partNumber), "r")).pipe(
                    Effect.catchIf(
                      isMissing,
                      () =>
                        Effect.fail(new InvalidPartList({ key, reason: `part ${part.partNumber} was never uploaded` }))
                    )
                  ),
                (src) =>
                  Effect.gen(function*() {
                    // The ETag is checked against the very file that is copied (fstat of the
                    // open descriptor), so a part re-put after the client saw its ETag is
                    // caught here, like S3's InvalidPart.
                    const st = yield* io("completeMultipartUpload", key, () => src.stat({ bigint: true }))
                    if (fileVersion(st) !== stripQuotes(part.etag)) {
                      return yield* new InvalidPartList({
                        key,
                        reason: `part ${part.partNumber} does not match ETag ${part.etag}`
                      })
                    }
                    yield* copyContents("completeMultipartUpload", key, src, out)
                  }),
                (src) => closeQuietly("completeMultipartUpload", key, src)
              )
            }
            return yield* io("completeMultipartUpload", key, async () => {
              await out.sync()
              const st = await out.stat({ bigint: true })
              await ensureDir(path.dirname(target))
              await fs.rename(tmp, target)
              await fsyncDir(path.dirname(target))
              return st
            })
          }))

        // The object is in place; a leftover upload directory only wastes space (and keeps the
        // id completable a second time), so failing to remove it is logged, not returned.
        yield* io("completeMultipartUpload", key, async () => {
          await fs.rm(dir, { recursive: true, force: true })
          await fsyncDir(multipartDir)
        }).pipe(Effect.catchAll((error) => Effect.logWarning("removing a completed upload directory failed", error)))

        return { sizeBytes: Number(st.size), etag: fingerprint(st) }
      })

    const abortMultipartUpload: BlobStoreService["abortMultipartUpload"] = (key, uploadId) =>
      Effect.gen(function*() {
        yield* checkKey("abortMultipartUpload", key)
        const dir = yield* uploadDirOf("abortMultipartUpload", key, uploadId)
        yield* io("abortMultipartUpload", key, async () => {
          await fs.rm(dir, { recursive: true, force: true })
          await fsyncDir(multipartDir)
        })
      })

    const stat: BlobStoreService["stat"] = (key) =>
      Effect.gen(function*() {
        yield* checkKey("stat", key)
        return toInfo(key, yield* statObject("stat", key))
      })

    const open = (
      key: StorageKey,
      range?: ByteRange
    ): Effect.Effect<OpenedObject, BlobNotFound | BlobStoreError, Scope.Scope> =>
      Effect.gen(function*() {
        yield* checkKey("open", key)
        // The descriptor belongs to the caller's Scope: it is closed when that scope closes,
        // whether the stream was drained, abandoned or never pulled.
        const handle = yield* Effect.acquireRelease(
          io("open", key, () => fs.open(objectPath(key), "r")).pipe(
            Effect.catchIf(isMissing, () => Effect.fail(new BlobNotFound({ key, what: "object" })))
          ),
          (handle) => closeQuietly("open", key, handle)
        )
        // fstat the open descriptor, so size and ETag describe exactly the bytes we will read.
        const st = yield* io("open", key, () => handle.stat({ bigint: true }))
        const size = Number(st.size)
        let start = 0
        let end = size - 1
        if (range !== undefined) {
          if (
            !Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 ||
            range.end < range.start || range.start >= size
          ) {
            return yield* new BlobStoreError({
              operation: "open",
              key,
              cause: new Error(`range ${range.start}-${range.end} is not satisfiable for ${size} bytes`)
            })
          }
          start = range.start
          // Like S3, an end past the last byte is clamped.
          end = Math.min(range.end, size - 1)
        }
        const contentLength = size === 0 ? 0 : end - start + 1
        // autoClose: false — the handle's lifetime is the Scope's, not the stream's, so the
        // stream can be re-run or abandoned without double closes.
        const toReadable = (): Readable =>
          contentLength === 0
            ? Readable.from([])
            : handle.createReadStream({ start, end, autoClose: false, highWaterMark: READ_CHUNK_BYTES })
        const stream: Stream.Stream<Uint8Array, BlobStoreError> = contentLength === 0
          ? Stream.empty
          : NodeStream.fromReadable(toReadable, (cause) => new BlobStoreError({ operation: "open", key, cause }))
        return {
          totalSizeBytes: size,
          contentLength,
          etag: fingerprint(st),
          lastModified: st.mtime,
          stream,
          toReadable
        }
      })

    /**
     * Puts the (fsynced) file `tmp` at `to`: `link` when the destination must be absent (atomic
     * "create only if missing"), `rename` (atomic replace) otherwise. `tmp` is gone on success.
     */
    const place = (
      operation: string,
      tmp: string,
      to: StorageKey,
      ifDestinationAbsent: boolean
    ): Effect.Effect<void, BlobPreconditionFailed | BlobStoreError> =>
      Effect.gen(function*() {
        const target = objectPath(to)
        yield* io(operation, to, () => ensureDir(path.dirname(target)))
        if (ifDestinationAbsent) {
          yield* io(operation, to, () => fs.link(tmp, target)).pipe(
            Effect.catchIf(
              hasErrno("EEXIST"),
              () => Effect.fail(new BlobPreconditionFailed({ key: to, reason: "destination-exists" }))
            )
          )
          yield* io(operation, to, () => fs.unlink(tmp))
        } else {
          yield* io(operation, to, () => fs.rename(tmp, target))
        }
        yield* io(operation, to, () => fsyncDir(path.dirname(target)))
      })

    const copy = (
      from: StorageKey,
      to: StorageKey,
      options?: CopyOptions
    ): Effect.Effect<ObjectInfo, BlobNotFound | BlobPreconditionFailed | BlobStoreError> =>
      Effect.gen(function*() {
        yield* checkKey("copy", from)
        yield* checkKey("copy", to)
        const before = yield* statObject("copy", from)
        if (options?.ifMatch !== undefined && stripQuotes(options.ifMatch) !== stripQuotes(fingerprint(before))) {
          return yield* new BlobPreconditionFailed({ key: from, reason: "source-changed" })
        }
        if (options?.ifDestinationAbsent === true) {
          // Early refusal saves copying bytes for nothing; `place` still decides atomically.
          const exists = yield* statObject("copy", to).pipe(
            Effect.as(true),
            Effect.catchTag("BlobNotFound", () => Effect.succeed(false))
          )
          if (exists) return yield* new BlobPreconditionFailed({ key: to, reason: "destination-exists" })
        }
        const tmp = tmpPath()
        return yield* Effect.gen(function*() {
          // copyFile uses copy_file_range / reflinks where the filesystem can, instead of
          // pumping the bytes through JS.
          yield* io(
            "copy",
            from,
            () => fs.copyFile(objectPath(from), tmp, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE)
          ).pipe(
            Effect.catchIf(isMissing, () => Effect.fail(new BlobNotFound({ key: from, what: "object" })))
          )
          const copied = yield* io("copy", to, async () => {
            const handle = await fs.open(tmp, "r+")
            try {
              await handle.sync()
              return await handle.stat({ bigint: true })
            } finally {
              await handle.close()
            }
          })
          // copyFile works by path. Sources are never modified in place, so an unchanged
          // fingerprint after the copy proves the bytes copied are the version checked above.
          const after = yield* statObject("copy", from).pipe(
            Effect.catchTag("BlobNotFound", () => Effect.succeed(undefined))
          )
          if (after === undefined || fingerprint(after) !== fingerprint(before)) {
            return yield* new BlobPreconditionFailed({ key: from, reason: "source-changed" })
          }
          yield* place("copy", tmp, to, options?.ifDestinationAbsent === true)
          return toInfo(to, copied)
        }).pipe(Effect.onError(() => removeQuietly("copy", to, tmp)))
      })

    const move = (
      from: StorageKey,
      to: StorageKey,
      options?: CopyOptions
    ): Effect.Effect<ObjectInfo, BlobNotFound | BlobPreconditionFailed | BlobStoreError> =>
      Effect.gen(function*() {
        yield* checkKey("move", from)
        yield* checkKey("move", to)
        // Claim the source by renaming it to a private temp name: from then on nobody can
        // replace the version we check, so ifMatch and the final placement are race-free.
        // Readers of `from` briefly see it missing, which is fine for staging objects.
        const tmp = tmpPath()
        yield* io("move", from, () => fs.rename(objectPath(from), tmp)).pipe(
          Effect.catchIf(isMissing, () => Effect.fail(new BlobNotFound({ key: from, what: "object" })))
        )
        // Puts the claimed source back. If a new `from` appeared meanwhile it is newer than the
        // claimed one, so the claimed version is dropped rather than clobbering it.
        const restore = io("move", from, async () => {
          try {
            await fs.link(tmp, objectPath(from))
          } catch (error) {
            if (errnoOf(error) !== "EEXIST") throw error
          }
          await fs.rm(tmp, { force: true })
        }).pipe(Effect.catchAll((error) => Effect.logError("restoring the source of a failed move failed", error)))

        return yield* Effect.gen(function*() {
          const st = yield* io("move", from, () => fs.stat(tmp, { bigint: true }))
          if (options?.ifMatch !== undefined && stripQuotes(options.ifMatch) !== stripQuotes(fingerprint(st))) {
            return yield* new BlobPreconditionFailed({ key: from, reason: "source-changed" })
          }
          yield* place("move", tmp, to, options?.ifDestinationAbsent === true)
          yield* io("move", from, () => fsyncDir(path.dirname(objectPath(from))))
          // rename and link keep the inode, so the ETag survives the move.
          return toInfo(to, st)
        }).pipe(Effect.onError(() => restore))
        // Between the claim and the placement the object exists only under the temp name; an
        // interruption there would strand it, so the whole sequence (a few syscalls) is atomic
        // with respect to interruption.
      }).pipe(Effect.uninterruptible)

    const del: BlobStoreService["delete"] = (key) =>
      Effect.gen(function*() {
        yield* checkKey("delete", key)
        // No directory fsync: a delete undone by a crash only resurrects a staging object that
        // the caller deletes again; it never exposes partial bytes.
        yield* io("delete", key, () => fs.unlink(objectPath(key))).pipe(Effect.catchIf(isMissing, () => Effect.void))
      })

    const health: BlobStoreService["health"] = io("health", undefined, async () => {
      const probe = path.join(tmpDir, `health-${randomBytes(8).toString("hex")}`)
      const payload = randomBytes(16)
      await fs.writeFile(probe, payload, { flag: "wx" })
      try {
        const readBack = await fs.readFile(probe)
        if (!readBack.equals(payload)) throw new Error("health probe read back different bytes")
      } finally {
        await fs.rm(probe, { force: true })
      }
    })

    const removeStaleTemporaries: BlobStoreService["removeStaleTemporaries"] = (cutoff) =>
      io("removeStaleTemporaries", undefined, async () => {
        let removed = 0
        for (const name of await fs.readdir(tmpDir)) {
          const file = path.join(tmpDir, name)
          try {
            const st = await fs.lstat(file)
            // ctime moves with every write, rename and link: a file in use is never this old.
            if (!st.isFile() || Math.max(st.mtimeMs, st.ctimeMs) >= cutoff.getTime()) continue
            await fs.unlink(file)
            removed += 1
          } catch (error) {
            // Gone meanwhile (its write finished, or another replica removed it).
            if (errnoOf(error) !== "ENOENT") throw error
          }
        }
        return removed
      })

    const stagingDir = path.join(base, "staging", "uploads")

    const listStagingObjects: BlobStoreService["listStagingObjects"] = io("listStagingObjects", undefined, async () => {
      const found: Array<ObjectInfo> = []
      let names: Array<string>
      try {
        names = await fs.readdir(stagingDir)
      } catch (error) {
        if (errnoOf(error) === "ENOENT") return found
        throw error
      }
      for (const name of names) {
        const key = `staging/uploads/${name}`
        if (!isWellFormedKey(key)) continue
        try {
          const st = await fs.stat(path.join(stagingDir, name), { bigint: true })
          if (st.isFile()) found.push(toInfo(key, st))
        } catch (error) {
          // Removed meanwhile (promoted, aborted, or swept by another replica).
          if (errnoOf(error) !== "ENOENT") throw error
        }
      }
      return found
    })

    const listMultipartUploads: BlobStoreService["listMultipartUploads"] = io(
      "listMultipartUploads",
      undefined,
      async () => {
        const found: Array<MultipartUploadInfo> = []
        for (const uploadId of await fs.readdir(multipartDir)) {
          if (!UPLOAD_ID.test(uploadId)) continue
          const keyFile = path.join(multipartDir, uploadId, "key")
          try {
            const key = await fs.readFile(keyFile, "utf8")
            // The key file is written once, at creation: its mtime is when the upload began.
            const st = await fs.stat(keyFile)
            if (isWellFormedKey(key)) found.push({ key, uploadId, initiated: st.mtime })
          } catch (error) {
            // Completed or aborted meanwhile, or still being created (no key file yet).
            if (errnoOf(error) !== "ENOENT") throw error
          }
        }
        return found
      }
    ).pipe(Effect.map(Option.some))

    return BlobStore.of({
      kind: "filesystem",
      createMultipartUpload,
      putPart,
      completeMultipartUpload,
      abortMultipartUpload,
      stat,
      open,
      copy,
      move,
      delete: del,
      health,
      removeStaleTemporaries,
      listStagingObjects,
      listMultipartUploads
    })
  })
