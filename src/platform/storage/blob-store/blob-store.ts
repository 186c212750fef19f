import { Context, Effect, type Option, Predicate, Schema } from "effect"
import type { Scope, Stream } from "effect"
import type { Readable } from "node:stream"
import { MAX_PART_BYTES, MAX_PART_NUMBER } from "../../../contract/limits.js"
import { isConnectionFailure } from "../connection-errors.js"
import { isWellFormedKey, type StorageKey } from "./keys.js"

/** The object (or the multipart upload) does not exist. */
export class BlobNotFound extends Schema.TaggedError<BlobNotFound>()("BlobNotFound", {
  key: Schema.String,
  /** Which thing was missing: the object itself, or the multipart upload id. */
  what: Schema.Literal("object", "multipart-upload")
}) {
  override get message() {
    return `${this.what} not found: ${this.key}`
  }
}

/**
 * The store refused a multipart completion because a listed part was never uploaded
 * or its ETag does not match (S3 `InvalidPart` / `InvalidPartOrder` / `EntityTooSmall`).
 * The client sent a bad part list, so the API answers 400.
 */
export class InvalidPartList extends Schema.TaggedError<InvalidPartList>()("InvalidPartList", {
  key: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `storage rejected the part list for ${this.key}: ${this.reason}`
  }
}

/**
 * A conditional write lost: the copy source no longer matches the pinned ETag, or the
 * destination already exists when `ifDestinationAbsent` was asked for.
 */
export class BlobPreconditionFailed extends Schema.TaggedError<BlobPreconditionFailed>()(
  "BlobPreconditionFailed",
  {
    key: Schema.String,
    reason: Schema.Literal("source-changed", "destination-exists", "unknown")
  }
) {
  override get message() {
    return `precondition failed on ${this.key}: ${this.reason}`
  }
}

/** The request body ended before the declared Content-Length (or carried more bytes). */
export class BodyLengthMismatch extends Schema.TaggedError<BodyLengthMismatch>()("BodyLengthMismatch", {
  expected: Schema.Number,
  received: Schema.Number
}) {
  override get message() {
    return `body carried ${this.received} bytes, expected ${this.expected}`
  }
}

/** Any other storage failure (network, permissions, disk full...). Never shown to clients verbatim. */
export class BlobStoreError extends Schema.TaggedError<BlobStoreError>()("BlobStoreError", {
  operation: Schema.String,
  key: Schema.optional(Schema.String),
  cause: Schema.Defect
}) {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `${this.operation}${this.key ? ` ${this.key}` : ""} failed: ${cause}`
  }
}

/** Statuses of an HTTP object store that is overloaded or has no backend (S3 `SlowDown`, `ServiceUnavailable`). */
const UNAVAILABLE_STATUSES = new Set([502, 503, 504])

/**
 * Whether a storage failure says the store is unreachable, frozen or overloaded (the
 * request may succeed later) rather than that it refused the operation. The S3 SDK
 * records the HTTP status of an answer in `$metadata`.
 */
export const isStoreUnavailable = (error: BlobStoreError): boolean => {
  if (isConnectionFailure(error.cause)) return true
  const metadata = Predicate.isObject(error.cause) ? (error.cause as { $metadata?: unknown }).$metadata : undefined
  const status = Predicate.isObject(metadata) ? (metadata as { httpStatusCode?: unknown }).httpStatusCode : undefined
  return typeof status === "number" && UNAVAILABLE_STATUSES.has(status)
}

export interface ObjectInfo {
  readonly key: StorageKey
  readonly sizeBytes: number
  /** Opaque validator of this exact object version (S3 ETag, or a fingerprint on disk). */
  readonly etag: string
  readonly lastModified: Date
}

export interface PartInfo {
  readonly partNumber: number
  /**
   * The part's ETag as a bare, opaque value (S3's hex MD5 without its double quotes; the
   * filesystem store's 32-hex fingerprint of the part file), on every driver: clients splice it into a JSON string (`"etag": "'"$ETAG"'"`), where quotes
   * would break the document. `completeMultipartUpload` takes it quoted or bare.
   */
  readonly etag: string
  readonly sizeBytes: number
}

/** Inclusive byte range, already validated against the object size by the caller. */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

export interface OpenedObject {
  /** Size of the whole object, whatever range was asked for. */
  readonly totalSizeBytes: number
  /** Bytes the stream will carry (range length, or the whole object). */
  readonly contentLength: number
  readonly etag: string
  readonly lastModified: Date
  /**
   * The bytes, with backpressure. The underlying socket / file handle belongs to the
   * Scope `open` ran in: it is released when that scope closes, whether the stream
   * was drained, abandoned half-way (client went away) or never pulled (HEAD).
   */
  readonly stream: Stream.Stream<Uint8Array, BlobStoreError>
  /**
   * The same bytes as a Node `Readable`, for a Node sink that takes one as it is (an HTTP
   * response body, a hash fed chunk by chunk) without an Effect `Stream` step per chunk.
   * The same lifetime rule applies: the Scope owns the handle, so a `Readable` destroyed
   * half-way or never read releases nothing by itself and leaks nothing either. Errors are
   * the driver's own (`error` events), not `BlobStoreError`s. Read an object through
   * `stream` or through this, once.
   */
  readonly toReadable: () => Readable
}

/** A multipart upload the store still holds (not completed, not aborted). */
export interface MultipartUploadInfo {
  readonly key: StorageKey
  readonly uploadId: string
  readonly initiated: Date
}

export interface CompletedUpload {
  readonly sizeBytes: number
  readonly etag: string
}

/**
 * Where blob bytes live. One contract, two drivers (S3 and the local filesystem);
 * both are exercised by the same contract suite in `test/platform/storage/blob-store.test.ts`.
 *
 * Keys are `StorageKey`s built by `keys.ts`, so a driver never sees a caller-made path.
 */
export class BlobStore extends Context.Tag("imgsrv/BlobStore")<
  BlobStore,
  {
    /** Which driver this is, for logs and metrics labels. */
    readonly kind: "s3" | "filesystem"

    /** Starts a multipart upload that will assemble `key`. Returns the driver's upload id. */
    readonly createMultipartUpload: (key: StorageKey) => Effect.Effect<string, BlobStoreError>

    /**
     * Streams one part into the multipart upload. `contentLength` is the declared size;
     * a body that ends early or runs long fails with `BodyLengthMismatch` and leaves
     * no part behind (a previously stored part with the same number is kept intact
     * only if the driver can guarantee it; callers must not rely on that).
     * Re-putting a part number replaces it.
     */
    readonly putPart: <E>(
      key: StorageKey,
      uploadId: string,
      partNumber: number,
      body: Stream.Stream<Uint8Array, E>,
      contentLength: number
    ) => Effect.Effect<PartInfo, E | BodyLengthMismatch | BlobNotFound | BlobStoreError>

    /**
     * Assembles the listed parts (ascending part numbers) into `key`.
     * Part ETags may be bare or quoted. Unknown upload id → `BlobNotFound(multipart-upload)`;
     * a part missing or with a different ETag → `InvalidPartList`.
     */
    readonly completeMultipartUpload: (
      key: StorageKey,
      uploadId: string,
      parts: ReadonlyArray<{ readonly partNumber: number; readonly etag: string }>
    ) => Effect.Effect<CompletedUpload, BlobNotFound | InvalidPartList | BlobStoreError>

    /** Discards a multipart upload and its parts. Unknown id → `BlobNotFound(multipart-upload)`. */
    readonly abortMultipartUpload: (
      key: StorageKey,
      uploadId: string
    ) => Effect.Effect<void, BlobNotFound | BlobStoreError>

    /** HEAD. */
    readonly stat: (key: StorageKey) => Effect.Effect<ObjectInfo, BlobNotFound | BlobStoreError>

    /** Opens the object (optionally a byte range of it) for streaming; see `OpenedObject`. */
    readonly open: (
      key: StorageKey,
      range?: ByteRange
    ) => Effect.Effect<OpenedObject, BlobNotFound | BlobStoreError, Scope.Scope>

    /**
     * Server-side copy `from` → `to` without the bytes passing through imgsrv.
     * `ifMatch` pins the source to the ETag the caller verified; `ifDestinationAbsent`
     * refuses to overwrite. Objects over 5 GiB use multipart UploadPartCopy on S3.
     */
    readonly copy: (
      from: StorageKey,
      to: StorageKey,
      options?: { readonly ifMatch?: string; readonly ifDestinationAbsent?: boolean }
    ) => Effect.Effect<ObjectInfo, BlobNotFound | BlobPreconditionFailed | BlobStoreError>

    /**
     * Moves `from` to `to`: an atomic rename on the filesystem, copy + delete on S3.
     * Same options and errors as `copy`. After success `from` no longer exists.
     */
    readonly move: (
      from: StorageKey,
      to: StorageKey,
      options?: { readonly ifMatch?: string; readonly ifDestinationAbsent?: boolean }
    ) => Effect.Effect<ObjectInfo, BlobNotFound | BlobPreconditionFailed | BlobStoreError>

    /** Deletes the object; deleting a missing object succeeds. */
    readonly delete: (key: StorageKey) => Effect.Effect<void, BlobStoreError>

    /** Cheap round trip proving the store is reachable and usable (for `/readyz`). */
    readonly health: Effect.Effect<void, BlobStoreError>

    /**
     * Removes the driver's own temporary files last touched before `cutoff` — what a crash in
     * the middle of a write leaves behind (a completion's temp file is as big as the upload).
     * Returns how many were removed. The upload expiry sweeper calls it; S3 keeps no
     * temporaries (an unfinished multipart upload is aborted with its session).
     */
    readonly removeStaleTemporaries: (cutoff: Date) => Effect.Effect<number, BlobStoreError>

    /** Every object under `staging/uploads/` (for the garbage collector's leftover sweep). */
    readonly listStagingObjects: Effect.Effect<ReadonlyArray<ObjectInfo>, BlobStoreError>

    /**
     * Every unfinished multipart upload of a staging key, with when it began (for the garbage
     * collector's orphan sweep). None when the store cannot list them (S3 servers without
     * `ListMultipartUploads`, such as s3rver; AWS and MinIO have it).
     */
    readonly listMultipartUploads: Effect.Effect<Option.Option<ReadonlyArray<MultipartUploadInfo>>, BlobStoreError>
  }
>() {}

/**
 * Reads all of `opened`, handing each chunk to `onChunk` as it arrives, and returns the
 * number of bytes read. It reads through the Node stream (`toReadable`): a whole-object
 * pass such as hashing then costs no Effect step per chunk, which matters on S3 where a
 * body arrives in socket-sized pieces. Interruption destroys the stream; a read error
 * fails with `BlobStoreError` naming `key`.
 */
export const readAll = (
  opened: OpenedObject,
  key: StorageKey,
  onChunk: (chunk: Uint8Array) => void
): Effect.Effect<number, BlobStoreError> =>
  Effect.tryPromise({
    try: async (signal) => {
      const readable = opened.toReadable()
      const stop = () => readable.destroy()
      signal.addEventListener("abort", stop, { once: true })
      let bytes = 0
      try {
        for await (const chunk of readable as AsyncIterable<Uint8Array>) {
          onChunk(chunk)
          bytes += chunk.byteLength
        }
      } finally {
        signal.removeEventListener("abort", stop)
      }
      return bytes
    },
    catch: (cause) => new BlobStoreError({ operation: "open", key, cause })
  })

// ---------------------------------------------------------------------------------
// Rules every driver applies the same way (S3's limits and argument checks).
// ---------------------------------------------------------------------------------

/** S3's multipart limits (contract/limits.ts): parts numbered 1..10000, each at most 5 GiB. */
export { MAX_PART_BYTES, MAX_PART_NUMBER }

/** Preconditions of `copy` and `move`. */
export type CopyOptions = { readonly ifMatch?: string; readonly ifDestinationAbsent?: boolean }

/** ETags compare without their quotes (stores and clients differ in quoting). */
export const stripQuotes = (etag: string): string => etag.replaceAll("\"", "")

/** Last line of defence: a key that is not one of the two shapes never reaches a driver. */
export const checkKey = (operation: string, key: StorageKey): Effect.Effect<void, BlobStoreError> =>
  isWellFormedKey(key)
    ? Effect.void
    : Effect.fail(new BlobStoreError({ operation, key, cause: new Error("malformed storage key") }))

/** `putPart`'s arguments: a well-formed key, a part number 1..10000, a size 0..5 GiB. */
export const checkPutPart = (
  key: StorageKey,
  partNumber: number,
  contentLength: number
): Effect.Effect<void, BlobStoreError> =>
  checkKey("putPart", key).pipe(Effect.zipRight(Effect.suspend(() => {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
      return Effect.fail(
        new BlobStoreError({ operation: "putPart", key, cause: new Error(`invalid part number ${partNumber}`) })
      )
    }
    if (!Number.isSafeInteger(contentLength) || contentLength < 0 || contentLength > MAX_PART_BYTES) {
      return Effect.fail(
        new BlobStoreError({ operation: "putPart", key, cause: new Error(`invalid part size ${contentLength}`) })
      )
    }
    return Effect.void
  })))

/** `completeMultipartUpload`'s part list: not empty, numbers 1..10000 and strictly ascending. */
export const checkPartList = (
  key: StorageKey,
  parts: ReadonlyArray<{ readonly partNumber: number }>
): Effect.Effect<void, InvalidPartList> => {
  if (parts.length === 0) return Effect.fail(new InvalidPartList({ key, reason: "the part list is empty" }))
  for (let i = 0; i < parts.length; i++) {
    const number = parts[i]!.partNumber
    if (!Number.isInteger(number) || number < 1 || number > MAX_PART_NUMBER) {
      return Effect.fail(new InvalidPartList({ key, reason: `invalid part number ${number}` }))
    }
    if (i > 0 && number <= parts[i - 1]!.partNumber) {
      return Effect.fail(new InvalidPartList({ key, reason: "part numbers must be strictly ascending" }))
    }
  }
  return Effect.void
}
