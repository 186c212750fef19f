/**
 * The S3 `BlobStore` driver (any S3-compatible endpoint), on `@aws-sdk/client-s3`.
 *
 * Streaming: part bodies are handed to the SDK as a Node `Readable` with an explicit
 * `ContentLength`. The SDK then signs them as `UNSIGNED-PAYLOAD` and pipes them straight into
 * the HTTP request, so nothing is buffered. Flexible checksums are limited to operations that
 * require them (`WHEN_REQUIRED`): otherwise the SDK would switch streamed bodies to
 * `aws-chunked` encoding with a trailing checksum, which S3-compatible servers (s3rver, older
 * MinIO, Ceph) do not all understand.
 *
 * Object ETags are passed through exactly as S3 returns them (quoted); part ETags are handed
 * out bare (the `PartInfo` contract) and quoted again for CompleteMultipartUpload.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand
} from "@aws-sdk/client-s3"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Deferred, Duration, Effect, LogLevel, Option, Redacted, Runtime, Stream } from "effect"
import type { Scope } from "effect"
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
  type CompletedUpload,
  type CopyOptions,
  InvalidPartList,
  MAX_PART_BYTES,
  MAX_PART_NUMBER,
  type MultipartUploadInfo,
  type ObjectInfo,
  type OpenedObject,
  stripQuotes
} from "./blob-store.js"
import { isWellFormedKey, type StorageKey } from "./keys.js"

export interface S3Options {
  /** `host:port`, without scheme. */
  readonly endpoint: string
  readonly bucket: string
  /** Empty means `us-east-1`. */
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: Redacted.Redacted<string>
  readonly sessionToken?: Redacted.Redacted<string> | undefined
  readonly useTls: boolean
  /** Path-style addressing (`endpoint/bucket/key`) instead of virtual-host style. */
  readonly pathStyle: boolean
  /** Longest wait to open a connection; unbounded when absent. */
  readonly connectTimeout?: Duration.Duration | undefined
  /**
   * A request whose socket moves no bytes for this long is abandoned (a frozen store, or a
   * reader that stopped pulling); unbounded when absent. Not a limit on a request's total
   * time: a 5 GiB part or a long download runs as long as bytes flow.
   */
  readonly idleTimeout?: Duration.Duration | undefined
}

/** Knobs that exist for tests; production uses the defaults. */
export interface S3InternalOptions {
  /** Objects larger than this are copied with multipart UploadPartCopy. Default 5 GiB (S3's CopyObject limit). */
  readonly multipartCopyThresholdBytes?: number
  /** Range size of each UploadPartCopy. Default 5 GiB (S3's maximum part size). */
  readonly copyPartSizeBytes?: number
}

const GiB = 1024 * 1024 * 1024
/** UploadPartCopy requests in flight at once during a multipart copy. */
const COPY_PART_CONCURRENCY = 4

type BlobStoreService = BlobStore["Type"]

const codeOf = (cause: unknown): string | undefined => (cause instanceof S3ServiceException ? cause.name : undefined)
const statusOf = (cause: unknown): number | undefined =>
  cause instanceof S3ServiceException ? cause.$metadata.httpStatusCode : undefined

/** A `BlobStoreError` whose SDK cause carries one of these S3 error codes (or HTTP statuses). */
const s3Error =
  (codes: ReadonlyArray<string>, statuses: ReadonlyArray<number> = []) => (error: unknown): error is BlobStoreError =>
    error instanceof BlobStoreError &&
    (codes.includes(codeOf(error.cause) ?? "") || statuses.includes(statusOf(error.cause) ?? 0))

/** HEAD answers 404 without a body, so the SDK can only name it `NotFound`. */
const isObjectMissing = s3Error(["NoSuchKey", "NotFound"])
const isUploadMissing = s3Error(["NoSuchUpload"])
const isBadPartList = s3Error(["InvalidPart", "InvalidPartOrder", "EntityTooSmall"])
const isPreconditionFailed = s3Error(["PreconditionFailed"], [412])
const isConditionalConflict = s3Error(["ConditionalRequestConflict"], [409])

const fail = (operation: string, key: string | undefined, message: string): BlobStoreError =>
  new BlobStoreError({ operation, key, cause: new Error(message) })

/** `bytes <start>-<end>/<total>`; a `*` total is refused (the caller needs the object size). */
const parseContentRange = (
  header: string | undefined
): Option.Option<{ start: number; end: number; total: number }> => {
  const match = header === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim())
  if (match === null) return Option.none()
  return Option.some({ start: Number(match[1]), end: Number(match[2]), total: Number(match[3]) })
}

/**
 * Lets exactly `contentLength` bytes through, with one element of look-ahead: an element is
 * released only once the next one (or the end of the stream) is known, and the final bytes only
 * after the end proved the length right. A body that runs long therefore never delivers all
 * `contentLength` bytes to S3, so S3 can never record it as a complete part.
 */
const exactLength = <E>(
  body: Stream.Stream<Uint8Array, E>,
  contentLength: number
): Stream.Stream<Uint8Array, E | BodyLengthMismatch> =>
  Stream.suspend(() => {
    let passed = 0
    const mismatch = (received: number) => new BodyLengthMismatch({ expected: contentLength, received })
    return body.pipe(
      Stream.zipWithNext,
      Stream.mapEffect(([chunk, next]) => {
        passed += chunk.byteLength
        const atLeast = Option.isSome(next) ? passed + next.value.byteLength : passed
        if (atLeast > contentLength) return Effect.fail(mismatch(atLeast))
        if (Option.isNone(next) && passed !== contentLength) return Effect.fail(mismatch(passed))
        return Effect.succeed(chunk)
      }),
      // Covers the empty body, which never reaches the check above.
      Stream.concat(Stream.suspend(() => (passed === contentLength ? Stream.empty : Stream.fail(mismatch(passed)))))
    )
  })

/** The `length` bytes starting at byte `start` of a byte stream; stops pulling once they are out. */
const sliceBytes = <E>(stream: Stream.Stream<Uint8Array, E>, start: number, length: number) => {
  const stop = start + length
  return stream.pipe(
    Stream.mapAccum(0, (offset, chunk): readonly [number, readonly [number, Uint8Array]] => {
      const chunkEnd = offset + chunk.length
      const from = Math.max(start, offset)
      const to = Math.min(stop, chunkEnd)
      return [chunkEnd, [chunkEnd, to > from ? chunk.subarray(from - offset, to - offset) : new Uint8Array(0)]]
    }),
    Stream.takeUntil(([chunkEnd]) => chunkEnd >= stop),
    Stream.map(([, piece]) => piece),
    Stream.filter((piece) => piece.length > 0)
  )
}

/** `sliceBytes` for a Node byte stream; stops reading (and destroys `source`) once they are out. */
const sliceReadable = (source: Readable, start: number, length: number): Readable => {
  const stop = start + length
  return Readable.from(
    (async function*() {
      let offset = 0
      // Leaving the loop early destroys `source`, which frees its socket.
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        const chunkEnd = offset + chunk.byteLength
        const from = Math.max(start, offset)
        const to = Math.min(stop, chunkEnd)
        if (to > from) yield chunk.subarray(from - offset, to - offset)
        offset = chunkEnd
        if (offset >= stop) return
      }
    })(),
    { objectMode: false }
  )
}

/**
 * The HTTP handler's bounds: `socketTimeout` is its inactivity timeout; its `requestTimeout`
 * would bound a whole request, cutting long transfers, and stays off.
 */
const timeouts = (options: S3Options) => {
  const bounds: { connectionTimeout?: number; socketTimeout?: number } = {}
  if (options.connectTimeout !== undefined) bounds.connectionTimeout = Duration.toMillis(options.connectTimeout)
  if (options.idleTimeout !== undefined) bounds.socketTimeout = Duration.toMillis(options.idleTimeout)
  return bounds
}

/** Builds the S3 driver. The SDK client is destroyed (sockets closed) when the Scope closes. */
export const makeS3BlobStore = (
  options: S3Options,
  internal: S3InternalOptions = {}
): Effect.Effect<BlobStoreService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const bucket = options.bucket
    const multipartCopyThreshold = internal.multipartCopyThresholdBytes ?? 5 * GiB
    const copyPartSize = internal.copyPartSizeBytes ?? MAX_PART_BYTES

    // Without a logger the SDK prints some warnings with console.warn; route warnings to the
    // Effect logger instead. The SDK logs every command at info and every failed command (with
    // its input) at error: both stay silent, since each failure is returned to the caller as
    // a typed error and logged (or not) where it is handled.
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const sdkLogger: NonNullable<S3ClientConfig["logger"]> = {
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: (...content: Array<unknown>) => {
        // The SDK never retries a streamed UploadPart and says so; the failure itself reaches
        // putPart's caller, so this line is only worth a debug record.
        const level = String(content[0]).includes("non-retryable streaming request") ? LogLevel.Debug : LogLevel.Warning
        runFork(
          Effect.logWithLevel(level, "s3 sdk warning", ...content).pipe(
            Effect.annotateLogs("component", "objectstore-s3")
          )
        )
      },
      error: () => undefined
    }

    const config: S3ClientConfig = {
      endpoint: `${options.useTls ? "https" : "http"}://${options.endpoint}`,
      region: options.region === "" ? "us-east-1" : options.region,
      forcePathStyle: options.pathStyle,
      credentials: {
        accessKeyId: options.accessKeyId,
        secretAccessKey: Redacted.value(options.secretAccessKey),
        ...(options.sessionToken === undefined ? {} : { sessionToken: Redacted.value(options.sessionToken) })
      },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: timeouts(options)
    }
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new S3Client({ ...config, logger: sdkLogger })),
      (client) => Effect.sync(() => client.destroy())
    )

    /** Runs one SDK call; interrupting the fiber aborts the HTTP request. */
    const send = <A>(operation: string, key: string | undefined, run: (signal: AbortSignal) => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: (cause) => new BlobStoreError({ operation, key, cause }) })

    const copySource = (key: StorageKey): string =>
      `${encodeURIComponent(bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`

    const head = (operation: string, key: StorageKey): Effect.Effect<ObjectInfo, BlobNotFound | BlobStoreError> =>
      send(operation, key, (abortSignal) =>
        client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })).pipe(
          Effect.catchIf(isObjectMissing, () =>
            Effect.fail(new BlobNotFound({ key, what: "object" }))),
          Effect.flatMap((out) =>
            out.ContentLength === undefined
              ? Effect.fail(fail(operation, key, "HeadObject answered without Content-Length"))
              : Effect.succeed<ObjectInfo>({
                key,
                sizeBytes: out.ContentLength,
                etag: out.ETag ?? "",
                lastModified: out.LastModified ?? new Date(0)
              })
          )
        )

    const abortUpload = (operation: string, key: StorageKey, uploadId: string) =>
      send(operation, key, (abortSignal) =>
        client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }), { abortSignal }))
        .pipe(
          Effect.catchIf(isUploadMissing, () =>
            Effect.fail(new BlobNotFound({ key, what: "multipart-upload" }))),
          Effect.asVoid
        )

    const createMultipartUpload: BlobStoreService["createMultipartUpload"] = (key) =>
      Effect.gen(function*() {
        yield* checkKey("createMultipartUpload", key)
        const out = yield* send("createMultipartUpload", key, (abortSignal) =>
          client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }), { abortSignal }))
        if (out.UploadId === undefined || out.UploadId === "") {
          return yield* fail("createMultipartUpload", key, "CreateMultipartUpload answered without an UploadId")
        }
        return out.UploadId
      })

    const putPart: BlobStoreService["putPart"] = <E>(
      key: StorageKey,
      uploadId: string,
      partNumber: number,
      body: Stream.Stream<Uint8Array, E>,
      contentLength: number
    ) =>
      Effect.gen(function*() {
        yield* checkPutPart(key, partNumber, contentLength)
        // The body's own failure (client went away, wrong length) is captured here before the
        // Readable is destroyed. The SDK pipes the Readable into the request, and a pipe does
        // not propagate source errors, so the request itself is aborted by interrupting it.
        const bodyFailure = yield* Deferred.make<never, E | BodyLengthMismatch>()
        const guarded = exactLength(body, contentLength).pipe(
          Stream.tapError((error) =>
            Deferred.fail(bodyFailure, error)
          )
        )
        const readable = yield* Effect.acquireRelease(
          NodeStream.toReadable(guarded).pipe(
            // The adapter destroys the Readable with the body's error. `pipe` never listens
            // for source errors, so without this listener Node would raise it as an uncaught
            // exception; the error itself is reported through `bodyFailure`.
            Effect.tap((readable) =>
              Effect.sync(() =>
                readable.on("error", () => undefined)
              )
            )
          ),
          (readable) => Effect.sync(() => readable.destroy())
        )
        const upload = send("putPart", key, (abortSignal) =>
          client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: partNumber,
              ContentLength: contentLength,
              Body: readable
            }),
            { abortSignal }
          )).pipe(
            Effect.catchIf(isUploadMissing, () => Effect.fail(new BlobNotFound({ key, what: "multipart-upload" }))),
            // If the request died because the body did, report the body's error, not the socket's.
            Effect.catchAll((error) =>
              Deferred.poll(bodyFailure).pipe(
                Effect.flatMap(
                  (bodyError): Effect.Effect<never, BlobNotFound | BlobStoreError | E | BodyLengthMismatch> =>
                    Option.isSome(bodyError) ? bodyError.value : Effect.fail(error)
                )
              )
            )
          )
        // Whichever settles first wins; a body failure interrupts the upload, which aborts the
        // HTTP request before S3 saw Content-Length bytes, so no truncated part is recorded.
        const out = yield* Effect.raceFirst(upload, Deferred.await(bodyFailure))
        if (out.ETag === undefined || out.ETag === "") {
          return yield* fail("putPart", key, "UploadPart answered without an ETag")
        }
        return { partNumber, etag: stripQuotes(out.ETag), sizeBytes: contentLength }
      }).pipe(Effect.scoped)

    const completeMultipartUpload: BlobStoreService["completeMultipartUpload"] = (key, uploadId, parts) =>
      Effect.gen(function*() {
        yield* checkKey("completeMultipartUpload", key)
        yield* checkPartList(key, parts)
        const out = yield* send("completeMultipartUpload", key, (abortSignal) =>
          client.send(
            new CompleteMultipartUploadCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              MultipartUpload: {
                Parts: parts.map((part) => ({ PartNumber: part.partNumber, ETag: `"${stripQuotes(part.etag)}"` }))
              }
            }),
            { abortSignal }
          )).pipe(
            Effect.catchIf(isUploadMissing, () => Effect.fail(new BlobNotFound({ key, what: "multipart-upload" }))),
            Effect.catchIf(isBadPartList, (error) =>
              Effect.fail(
                new InvalidPartList({
                  key,
                  reason: error.cause instanceof Error ? error.cause.message : String(error.cause)
                })
              ))
          )
        // CompleteMultipartUpload does not report the size; HEAD the new object for it.
        const info = yield* head("completeMultipartUpload", key).pipe(
          Effect.catchTag(
            "BlobNotFound",
            () => Effect.fail(fail("completeMultipartUpload", key, "the completed object is not visible"))
          )
        )
        const completed: CompletedUpload = { sizeBytes: info.sizeBytes, etag: out.ETag ?? info.etag }
        return completed
      })

    const abortMultipartUpload: BlobStoreService["abortMultipartUpload"] = (key, uploadId) =>
      checkKey("abortMultipartUpload", key).pipe(Effect.zipRight(abortUpload("abortMultipartUpload", key, uploadId)))

    const stat: BlobStoreService["stat"] = (key) => checkKey("stat", key).pipe(Effect.zipRight(head("stat", key)))

    const open = (
      key: StorageKey,
      range?: ByteRange
    ): Effect.Effect<OpenedObject, BlobNotFound | BlobStoreError, Scope.Scope> =>
      Effect.gen(function*() {
        yield* checkKey("open", key)
        const request = new GetObjectCommand({
          Bucket: bucket,
          Key: key,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` })
        })
        // The request stays interruptible while waiting for headers (interruption aborts it);
        // once the response exists, registering its release cannot be interrupted away, so the
        // socket is always freed when the caller's Scope closes.
        const response = yield* Effect.uninterruptibleMask((restore) =>
          restore(send("open", key, (abortSignal) => client.send(request, { abortSignal }))).pipe(
            Effect.tap((out) =>
              Effect.addFinalizer(() =>
                Effect.sync(() => {
                  if (out.Body instanceof Readable) {
                    out.Body.destroy()
                  }
                })
              )
            )
          )
        ).pipe(Effect.catchIf(isObjectMissing, () => Effect.fail(new BlobNotFound({ key, what: "object" }))))

        const body = response.Body
        if (!(body instanceof Readable)) {
          return yield* fail("open", key, "GetObject answered without a Node stream body")
        }
        if (response.ContentLength === undefined) {
          return yield* fail("open", key, "GetObject answered without Content-Length")
        }

        let totalSizeBytes = response.ContentLength
        const bodyStream = NodeStream.fromReadable(
          () => body,
          (cause) => new BlobStoreError({ operation: "open", key, cause })
        )
        if (range !== undefined && response.$metadata.httpStatusCode === 200 && response.ContentRange === undefined) {
          // HTTP lets a server ignore Range and send the whole object (s3rver does for
          // `bytes=0-0`). Cut the asked-for bytes out of it rather than failing.
          if (range.start >= response.ContentLength) {
            return yield* fail("open", key, `range starts at ${range.start} beyond ${response.ContentLength} bytes`)
          }
          const end = Math.min(range.end, response.ContentLength - 1)
          return {
            totalSizeBytes: response.ContentLength,
            contentLength: end - range.start + 1,
            etag: response.ETag ?? "",
            lastModified: response.LastModified ?? new Date(0),
            stream: sliceBytes(bodyStream, range.start, end - range.start + 1),
            toReadable: () => sliceReadable(body, range.start, end - range.start + 1)
          }
        }
        if (range !== undefined) {
          const contentRange = parseContentRange(response.ContentRange)
          if (Option.isNone(contentRange)) {
            return yield* fail(
              "open",
              key,
              `ranged GetObject answered with Content-Range ${JSON.stringify(response.ContentRange)}`
            )
          }
          const { start, end, total } = contentRange.value
          const wantedEnd = Math.min(range.end, total - 1)
          // A server may widen the range (s3rver reads `bytes=0-0` as `bytes=0-`): keep only
          // the asked-for bytes, so callers never send more than their own headers announce.
          if (start === range.start && end > wantedEnd && end - start + 1 === response.ContentLength) {
            return {
              totalSizeBytes: total,
              contentLength: wantedEnd - start + 1,
              etag: response.ETag ?? "",
              lastModified: response.LastModified ?? new Date(0),
              stream: sliceBytes(bodyStream, 0, wantedEnd - start + 1),
              toReadable: () => sliceReadable(body, 0, wantedEnd - start + 1)
            }
          }
          if (start !== range.start || end !== wantedEnd || end - start + 1 !== response.ContentLength) {
            return yield* fail(
              "open",
              key,
              `asked for bytes ${range.start}-${range.end}, S3 answered ${response.ContentRange} with ${response.ContentLength} bytes`
            )
          }
          totalSizeBytes = total
        }
        return {
          totalSizeBytes,
          contentLength: response.ContentLength,
          etag: response.ETag ?? "",
          lastModified: response.LastModified ?? new Date(0),
          stream: bodyStream,
          toReadable: () => body
        }
      })

    /**
     * Single CopyObject. A 412/409 cannot say which condition failed when both were sent, so the
     * reason is exact only when a single condition was in play.
     */
    const copyObject = (from: StorageKey, to: StorageKey, pin: string, ifDestinationAbsent: boolean, size: number) =>
      send("copy", to, (abortSignal) =>
        client.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: to,
            CopySource: copySource(from),
            CopySourceIfMatch: pin,
            ...(ifDestinationAbsent ? { IfNoneMatch: "*" } : {})
          }),
          { abortSignal }
        )).pipe(
          Effect.catchIf(isObjectMissing, () => Effect.fail(new BlobNotFound({ key: from, what: "object" }))),
          Effect.catchIf(
            (error) => isPreconditionFailed(error) || isConditionalConflict(error),
            () =>
              Effect.fail(
                new BlobPreconditionFailed({ key: to, reason: ifDestinationAbsent ? "unknown" : "source-changed" })
              )
          ),
          Effect.flatMap((out) => {
            const etag = out.CopyObjectResult?.ETag
            return etag === undefined || etag === ""
              ? Effect.fail(fail("copy", to, "CopyObject answered without an ETag"))
              : Effect.succeed<ObjectInfo>({
                key: to,
                sizeBytes: size,
                etag,
                lastModified: out.CopyObjectResult?.LastModified ?? new Date(0)
              })
          })
        )

    /**
     * CreateMultipartUpload + UploadPartCopy (every range pinned to the same source ETag) +
     * CompleteMultipartUpload (with `If-None-Match: *` when asked). Any failure or interruption
     * aborts the multipart upload so no orphan parts are billed.
     */
    const multipartCopy = (from: StorageKey, to: StorageKey, pin: string, ifDestinationAbsent: boolean, size: number) =>
      Effect.gen(function*() {
        const partCount = Math.ceil(size / copyPartSize)
        if (partCount > MAX_PART_NUMBER) {
          return yield* fail(
            "copy",
            to,
            `object of ${size} bytes needs ${partCount} copy parts (max ${MAX_PART_NUMBER})`
          )
        }
        yield* Effect.logDebug("s3 multipart copy selected").pipe(
          Effect.annotateLogs({ size_bytes: size, parts: partCount })
        )
        const uploadId = yield* send(
          "copy",
          to,
          (abortSignal) => client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }), { abortSignal })
        ).pipe(
          Effect.flatMap((out) =>
            out.UploadId === undefined || out.UploadId === ""
              ? Effect.fail(fail("copy", to, "CreateMultipartUpload answered without an UploadId"))
              : Effect.succeed(out.UploadId)
          )
        )
        yield* Effect.logDebug("s3 multipart copy started")
        const ranges = Array.from({ length: partCount }, (_, index) => ({
          partNumber: index + 1,
          start: index * copyPartSize,
          end: Math.min((index + 1) * copyPartSize, size) - 1
        }))
        const copyAndComplete = Effect.gen(function*() {
          const parts = yield* Effect.forEach(
            ranges,
            (range) =>
              send("copy", to, (abortSignal) =>
                client.send(
                  new UploadPartCopyCommand({
                    Bucket: bucket,
                    Key: to,
                    UploadId: uploadId,
                    PartNumber: range.partNumber,
                    CopySource: copySource(from),
                    CopySourceIfMatch: pin,
                    CopySourceRange: `bytes=${range.start}-${range.end}`
                  }),
                  { abortSignal }
                )).pipe(
                  Effect.catchIf(isObjectMissing, () => Effect.fail(new BlobNotFound({ key: from, what: "object" }))),
                  Effect.catchIf(
                    (error) => isPreconditionFailed(error) || isConditionalConflict(error),
                    () => Effect.fail(new BlobPreconditionFailed({ key: from, reason: "source-changed" }))
                  ),
                  Effect.flatMap((out) => {
                    const etag = out.CopyPartResult?.ETag
                    return etag === undefined || etag === ""
                      ? Effect.fail(fail("copy", to, `UploadPartCopy ${range.partNumber} answered without an ETag`))
                      : Effect.succeed({ PartNumber: range.partNumber, ETag: etag })
                  })
                ),
            { concurrency: COPY_PART_CONCURRENCY }
          )
          return yield* send("copy", to, (abortSignal) =>
            client.send(
              new CompleteMultipartUploadCommand({
                Bucket: bucket,
                Key: to,
                UploadId: uploadId,
                MultipartUpload: { Parts: parts },
                ...(ifDestinationAbsent ? { IfNoneMatch: "*" } : {})
              }),
              { abortSignal }
            )).pipe(
              // Only the destination condition is evaluated at completion.
              Effect.catchIf(
                isPreconditionFailed,
                () => Effect.fail(new BlobPreconditionFailed({ key: to, reason: "destination-exists" }))
              ),
              Effect.catchIf(
                isConditionalConflict,
                () => Effect.fail(new BlobPreconditionFailed({ key: to, reason: "unknown" }))
              )
            )
        })
        const completed = yield* copyAndComplete.pipe(
          Effect.onError(() =>
            abortUpload("copy", to, uploadId).pipe(
              Effect.catchAll((error) => Effect.logWarning("aborting a failed multipart copy failed", error))
            )
          )
        )
        yield* Effect.logDebug("s3 multipart copy completed")
        if (completed.ETag === undefined || completed.ETag === "") {
          return yield* fail("copy", to, "CompleteMultipartUpload answered without an ETag")
        }
        // Completion does not report LastModified; HEAD the destination for it.
        const info = yield* head("copy", to).pipe(
          Effect.catchTag("BlobNotFound", () => Effect.fail(fail("copy", to, "the copied object is not visible")))
        )
        return { key: to, sizeBytes: size, etag: completed.ETag, lastModified: info.lastModified } satisfies ObjectInfo
      })

    const copy = (
      from: StorageKey,
      to: StorageKey,
      options?: CopyOptions
    ): Effect.Effect<ObjectInfo, BlobNotFound | BlobPreconditionFailed | BlobStoreError> =>
      Effect.gen(function*() {
        yield* checkKey("copy", from)
        yield* checkKey("copy", to)
        // The size decides single vs multipart copy. The HEAD also lets a stale ifMatch fail
        // early and exactly ("source-changed") instead of as an ambiguous 412.
        const source = yield* head("copy", from)
        if (options?.ifMatch !== undefined && stripQuotes(options.ifMatch) !== stripQuotes(source.etag)) {
          return yield* new BlobPreconditionFailed({ key: from, reason: "source-changed" })
        }
        // Always pin the source: without ifMatch we pin the version just HEADed, so the size we
        // report (and every multipart range) describes one version. If the source is replaced
        // mid-copy the copy fails with source-changed rather than mixing versions.
        const pin = options?.ifMatch ?? source.etag
        if (pin === "") return yield* fail("copy", from, "the source object has no ETag to pin the copy to")
        const ifDestinationAbsent = options?.ifDestinationAbsent === true
        return source.sizeBytes <= multipartCopyThreshold
          ? yield* copyObject(from, to, pin, ifDestinationAbsent, source.sizeBytes)
          : yield* multipartCopy(from, to, pin, ifDestinationAbsent, source.sizeBytes)
      })

    const del: BlobStoreService["delete"] = (key) =>
      checkKey("delete", key).pipe(
        Effect.zipRight(
          send(
            "delete",
            key,
            (abortSignal) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })
          )
        ),
        // S3 answers 204 for a missing key; some compatible servers answer NoSuchKey.
        Effect.catchIf(isObjectMissing, () => Effect.void),
        Effect.asVoid
      )

    const move = (from: StorageKey, to: StorageKey, options?: CopyOptions) =>
      Effect.gen(function*() {
        const info = yield* copy(from, to, options)
        yield* del(from)
        return info
      })

    const health: BlobStoreService["health"] = send("health", undefined, (abortSignal) =>
      client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal })).pipe(Effect.asVoid)

    const STAGING_PREFIX = "staging/uploads/"

    const listStagingObjects: BlobStoreService["listStagingObjects"] = Effect.gen(function*() {
      const found: Array<ObjectInfo> = []
      let token: string | undefined
      do {
        const page = yield* send("listStagingObjects", undefined, (abortSignal) =>
          client.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: STAGING_PREFIX, ContinuationToken: token }),
            { abortSignal }
          ))
        for (const object of page.Contents ?? []) {
          const key = object.Key ?? ""
          if (!isWellFormedKey(key)) {
            continue
          }
          found.push({
            key,
            sizeBytes: object.Size ?? 0,
            etag: object.ETag ?? "",
            lastModified: object.LastModified ?? new Date(0)
          })
        }
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
      return found
    })

    const listMultipartUploads: BlobStoreService["listMultipartUploads"] = Effect.gen(function*() {
      const found: Array<MultipartUploadInfo> = []
      let keyMarker: string | undefined
      let uploadIdMarker: string | undefined
      do {
        const page = yield* send("listMultipartUploads", undefined, (abortSignal) =>
          client.send(
            new ListMultipartUploadsCommand({
              Bucket: bucket,
              Prefix: STAGING_PREFIX,
              KeyMarker: keyMarker,
              UploadIdMarker: uploadIdMarker
            }),
            { abortSignal }
          ))
        for (const upload of page.Uploads ?? []) {
          const key = upload.Key ?? ""
          if (!isWellFormedKey(key) || upload.UploadId === undefined) {
            continue
          }
          found.push({ key, uploadId: upload.UploadId, initiated: upload.Initiated ?? new Date(0) })
        }
        const more = page.IsTruncated === true
        keyMarker = more ? page.NextKeyMarker : undefined
        uploadIdMarker = more ? page.NextUploadIdMarker : undefined
      } while (keyMarker !== undefined)
      return Option.some<ReadonlyArray<MultipartUploadInfo>>(found)
    }).pipe(
      // Some S3-compatible servers (s3rver) do not implement the listing: say so, do not fail.
      Effect.catchIf(s3Error(["NotImplemented"], [501]), () =>
        Effect.succeed(Option.none()))
    )

    return BlobStore.of({
      kind: "s3",
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
      removeStaleTemporaries: () => Effect.succeed(0),
      listStagingObjects,
      listMultipartUploads
    })
  })
