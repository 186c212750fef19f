import { Clock, Context, Data, Duration, Effect, Layer, Metric, Option, Stream } from "effect"
import type { Sha256Digest } from "../contract/digest.js"
import { AppConfig } from "../platform/config/config.js"
import { freshUuid } from "../platform/fresh-ids.js"
import { currentTraceParent } from "../platform/observability/tracing.js"
import { BlobStore, stripQuotes } from "../platform/storage/blob-store/blob-store.js"
import { stagingKey } from "../platform/storage/blob-store/keys.js"
import { makeWakeSignal, type WakeSignal } from "../platform/worker.js"
import { uploadReady } from "../webhooks/events.js"
import {
  CasBlobNotFound,
  PartBodyIncomplete,
  PartListRejected,
  TrustedBlobSizeMismatch,
  UploadExpired,
  UploadInvalidInput,
  UploadNotAbortable,
  UploadNotAcceptingParts,
  UploadNotCompletable,
  UploadNotFound,
  UploadSizeMismatch,
  UploadStorageGone
} from "./errors.js"
import { partBytesReceived, partsReceived, uploadsAborted, uploadsBegun, uploadsCompleted } from "./metrics.js"
import { type PartHasher, ReceivedHashes } from "./receive-hash.js"
import { type ReceivedObject, UploadRepository } from "./repository.js"
import {
  type CasBlob,
  type CompletedPart,
  IngestJobId,
  MAX_PART_NUMBER,
  MAX_PART_SIZE_BYTES,
  MIN_PART_SIZE_BYTES,
  UploadId,
  type UploadPart,
  type UploadSession
} from "./schema.js"

/**
 * Wakes the promotion loop of this process when an upload is completed: the signal lives
 * beside the queue it signals (`complete` inserts the `cas_ingest_jobs` row).
 */
export class PromotionWake extends Context.Tag("imgsrv/uploads/PromotionWake")<PromotionWake, WakeSignal>() {}

export const PromotionWakeLive = Layer.effect(PromotionWake, makeWakeSignal)

/**
 * The upload state machine (api.md §2.3, §3.1; domain.md §2.1):
 *
 *   begin → created ─PUT part→ uploading ─complete→ completed ─worker→ ingesting → ready | failed
 *              └──────────── abort ──────────┴→ aborted
 *   begin for an already trusted digest → ready at once (200 instead of 201)
 *
 * Storage is touched before the database on every transition, so a crash in between
 * leaves storage ahead of the database, never behind it: a completion that reached the
 * store but not the database is found again by the next complete (crash recovery).
 */

export interface BeginUpload {
  readonly expectedDigest: Sha256Digest
  readonly expectedSizeBytes: number
  readonly mediaTypeHint: string | null
  readonly filenameHint: string | null
}

export type UploadsShape = {
  /** `created` is false when the digest was already trusted and the session is born `ready`. */
  readonly begin: (
    request: BeginUpload
  ) => Effect.Effect<{ readonly session: UploadSession; readonly created: boolean }, TrustedBlobSizeMismatch>
  /** The session and the parts received so far (for clients that resume). */
  readonly status: (id: UploadId) => Effect.Effect<
    { readonly session: UploadSession; readonly parts: ReadonlyArray<UploadPart> },
    UploadNotFound
  >
  /**
   * Streams one part into storage (never buffered) and records it. A body that ends before
   * `contentLength` bytes fails with `PartBodyIncomplete` and records nothing.
   */
  readonly putPart: <E>(
    id: UploadId,
    partNumber: number,
    body: Stream.Stream<Uint8Array, E>,
    contentLength: number
  ) => Effect.Effect<UploadPart, UploadNotFound | UploadNotAcceptingParts | UploadExpired | PartBodyIncomplete>
  /** Retry-safe: a completed (or further) session is returned unchanged before `parts` is looked at. */
  readonly complete: (id: UploadId, parts: ReadonlyArray<CompletedPart>) => Effect.Effect<
    UploadSession,
    | UploadNotFound
    | UploadNotCompletable
    | UploadInvalidInput
    | UploadSizeMismatch
    | UploadExpired
    | PartListRejected
    | UploadStorageGone
  >
  /** Idempotent: aborting an aborted session returns it. */
  readonly abort: (id: UploadId) => Effect.Effect<UploadSession, UploadNotFound | UploadNotAbortable>
  /** A verified blob, for `/v1/blobs/{digest}`. */
  readonly trustedBlob: (digest: Sha256Digest) => Effect.Effect<CasBlob, CasBlobNotFound>
}

export class Uploads extends Context.Tag("imgsrv/Uploads")<Uploads, UploadsShape>() {}

/** The part body failed (client went away, connection cut) — kept apart from storage errors. */
class BodyFailed extends Data.TaggedError("BodyFailed")<{ readonly cause: unknown }> {}

/**
 * Complete's part-list rules, in the order api.md §2.3 lists them. Returns the parts
 * sorted by number (clients may list them in any order), each ETag bare: a client may
 * send the form part PUTs return (`847c…`) or S3's quoted one (`"847c…"`).
 */
export const normalizeParts = (
  parts: ReadonlyArray<CompletedPart>
): Effect.Effect<ReadonlyArray<CompletedPart>, UploadInvalidInput> =>
  Effect.gen(function*() {
    const invalid = (detail: string) => new UploadInvalidInput({ detail })
    if (parts.length === 0) return yield* invalid("parts must not be empty")
    const sorted = parts.map((part) => ({ ...part, etag: stripQuotes(part.etag) })).sort((a, b) => a.number - b.number)
    for (const [index, part] of sorted.entries()) {
      if (!Number.isInteger(part.number) || part.number < 1 || part.number > MAX_PART_NUMBER) {
        return yield* invalid(`part number must be between 1 and ${MAX_PART_NUMBER}, got ${part.number}`)
      }
      if (index > 0 && sorted[index - 1]!.number === part.number) {
        return yield* invalid(`part ${part.number} is listed more than once`)
      }
      if (part.etag.trim() === "") return yield* invalid(`part ${part.number} etag must not be blank`)
      if (!Number.isInteger(part.sizeBytes) || part.sizeBytes < 0 || part.sizeBytes > MAX_PART_SIZE_BYTES) {
        return yield* invalid(`part ${part.number} size_bytes must be between 0 and ${MAX_PART_SIZE_BYTES}`)
      }
      if (index < sorted.length - 1 && part.sizeBytes < MIN_PART_SIZE_BYTES) {
        return yield* invalid(
          `part ${part.number} is ${part.sizeBytes} bytes; every part but the last must be at least ${MIN_PART_SIZE_BYTES} bytes`
        )
      }
    }
    return sorted
  })

const isTerminalOrFurther = (state: UploadSession["state"]) =>
  state === "completed" || state === "ingesting" || state === "ready"

export const UploadsLive = Layer.effect(
  Uploads,
  Effect.gen(function*() {
    const repo = yield* UploadRepository
    const store = yield* BlobStore
    const config = yield* AppConfig
    const wake = yield* PromotionWake
    const receivedHashes = yield* ReceivedHashes
    const ttlMillis = Duration.toMillis(config.uploadTtl)

    const now = Clock.currentTimeMillis.pipe(Effect.map((ms) => new Date(ms)))

    const findSession = (id: UploadId) =>
      repo.findSession(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new UploadNotFound({ uploadId: id })),
          onSome: Effect.succeed
        }))
      )

    /** Size of the assembled staging object, if a completion already produced it. */
    const stagedSize = (session: UploadSession) =>
      store.stat(session.stagingKey).pipe(
        Effect.map((info) => Option.some(info.sizeBytes)),
        Effect.catchTag("BlobNotFound", () => Effect.succeedNone),
        Effect.catchTag("BlobStoreError", Effect.die)
      )

    const begin: UploadsShape["begin"] = (request) =>
      Effect.gen(function*() {
        const id = UploadId.make(yield* freshUuid)
        const createdAt = yield* now
        const base = {
          id,
          expectedDigest: request.expectedDigest,
          expectedSizeBytes: request.expectedSizeBytes,
          mediaTypeHint: request.mediaTypeHint,
          filenameHint: request.filenameHint,
          createdAt,
          expiresAt: new Date(createdAt.getTime() + ttlMillis)
        }
        const trusted = yield* repo.findBlob(request.expectedDigest)
        if (Option.isSome(trusted)) {
          if (trusted.value.sizeBytes !== request.expectedSizeBytes) {
            return yield* new TrustedBlobSizeMismatch({
              digest: request.expectedDigest,
              trustedSize: trusted.value.sizeBytes,
              expectedSize: request.expectedSizeBytes
            })
          }
          // Ready at once (the bytes are already trusted): upload.ready commits with the session.
          // The garbage collector may have deleted the blob since it was read: the database
          // then refuses the ready session (src/gc/service.ts) and this becomes an ordinary upload.
          const ready = yield* repo.insertReadySession({ ...base, storageUploadId: `ready:${id}` }, uploadReady).pipe(
            Effect.map(Option.some),
            Effect.catchTag("BlobNotTrusted", () => Effect.succeedNone)
          )
          if (Option.isSome(ready)) {
            yield* Metric.increment(Metric.tagged(uploadsBegun, "result", "ready"))
            return { session: ready.value, created: false }
          }
        }
        // Uninterruptible: a client leaving between the two steps must not strand a
        // multipart upload that no session row knows about.
        const session = yield* Effect.uninterruptible(Effect.gen(function*() {
          const key = stagingKey(id)
          const storageUploadId = yield* store.createMultipartUpload(key).pipe(
            Effect.catchTag("BlobStoreError", Effect.die)
          )
          // The database failing is a defect, so the cleanup runs on any failure.
          return yield* repo.insertCreatedSession({ ...base, storageUploadId }).pipe(
            Effect.onError(() =>
              store.abortMultipartUpload(key, storageUploadId).pipe(
                Effect.catchAll((error) =>
                  Effect.logWarning("aborting the multipart upload of a session that was not recorded failed", error)
                )
              )
            )
          )
        }))
        yield* Metric.increment(Metric.tagged(uploadsBegun, "result", "created"))
        return { session, created: true }
      }).pipe(
        Effect.withSpan("uploads.begin", { attributes: { "imgsrv.upload.size_bytes": request.expectedSizeBytes } })
      )

    const status: UploadsShape["status"] = (id) =>
      Effect.gen(function*() {
        const session = yield* findSession(id)
        const parts = yield* repo.listParts(id)
        return { session, parts }
      })

    const putPart: UploadsShape["putPart"] = (id, partNumber, body, contentLength) =>
      Effect.gen(function*() {
        const session = yield* findSession(id)
        if (session.state !== "created" && session.state !== "uploading") {
          return yield* new UploadNotAcceptingParts({ state: session.state })
        }
        if ((yield* now).getTime() >= session.expiresAt.getTime()) {
          return yield* new UploadExpired({ expiresAt: session.expiresAt })
        }
        // Hash while receiving when this part continues an in-order chain (receive-hash.ts).
        const hasher = receivedHashes.beginPart(id, partNumber)
        return yield* storePart(session, partNumber, body, contentLength, hasher).pipe(
          // A part that was not recorded leaves the chain where it was (after a commit, a no-op).
          Effect.ensuring(Effect.sync(() => hasher?.abandon()))
        )
      }).pipe(Effect.withSpan("uploads.put_part", { attributes: { "imgsrv.upload.part_number": partNumber } }))

    /** Streams the part into storage and records it; see `putPart`. */
    const storePart = <E>(
      session: UploadSession,
      partNumber: number,
      body: Stream.Stream<Uint8Array, E>,
      contentLength: number,
      hasher: PartHasher | undefined
    ) =>
      Effect.gen(function*() {
        const id = session.id
        let received = 0
        const counted = body.pipe(
          Stream.mapError((cause) => new BodyFailed({ cause })),
          // Synchronous (no effect per socket read): this runs for every ~64 KiB.
          Stream.map((chunk) => {
            received += chunk.byteLength
            hasher?.update(chunk)
            return chunk
          })
        )
        const stored = yield* store.putPart(
          session.stagingKey,
          session.storageUploadId,
          partNumber,
          counted,
          contentLength
        )
          .pipe(
            Effect.ensuring(Effect.suspend(() => Metric.incrementBy(partBytesReceived, received))),
            Effect.catchTags({
              BodyFailed: () => Effect.fail(new PartBodyIncomplete({ expected: contentLength, received })),
              BodyLengthMismatch: (e) =>
                Effect.fail(new PartBodyIncomplete({ expected: contentLength, received: e.received })),
              // The multipart upload vanished under the part: the session was aborted,
              // swept or completed meanwhile.
              BlobNotFound: () =>
                findSession(id).pipe(Effect.flatMap((current) => new UploadNotAcceptingParts({ state: current.state })))
            }),
            Effect.catchTag("BlobStoreError", Effect.die),
            Effect.tapError(() => Metric.increment(Metric.tagged(partsReceived, "outcome", "rejected")))
          )
        const recorded = yield* repo.recordPart({
          uploadId: id,
          partNumber,
          etag: stored.etag,
          sizeBytes: stored.sizeBytes
        })
        if (Option.isNone(recorded)) {
          const current = yield* findSession(id)
          return yield* new UploadNotAcceptingParts({ state: current.state })
        }
        hasher?.commit({ etag: stored.etag, sizeBytes: stored.sizeBytes })
        yield* Metric.increment(Metric.tagged(partsReceived, "outcome", "accepted"))
        return recorded.value
      })

    /** The database half of complete: `completed`, one job queued, the worker woken. */
    const markCompleted = (session: UploadSession, received?: ReceivedObject) =>
      Effect.gen(function*() {
        const traceParent = yield* currentTraceParent
        const updated = yield* repo.markCompleted(session.id, {
          id: IngestJobId.make(yield* freshUuid),
          traceParent,
          received
        })
        receivedHashes.forget(session.id)
        if (Option.isNone(updated)) {
          // A concurrent complete (or abort) got there first.
          const current = yield* findSession(session.id)
          if (isTerminalOrFurther(current.state)) return current
          return yield* new UploadNotCompletable({ state: current.state })
        }
        yield* Metric.increment(uploadsCompleted)
        yield* wake.wake
        return updated.value
      })

    // Concurrent retries of one complete in this process take turns, so the second finds the
    // session completed instead of racing the store's assembly of the same object (S3
    // servers may answer a concurrent CompleteMultipartUpload before the object is visible).
    // Across replicas the store's answer and `recover` below settle it.
    const completing = new Map<UploadId, { readonly lock: Effect.Semaphore; users: number }>()
    const oneAtATime = <A, E, R>(id: UploadId, effect: Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          const entry = completing.get(id) ?? { lock: Effect.unsafeMakeSemaphore(1), users: 0 }
          entry.users += 1
          completing.set(id, entry)
          return entry
        }),
        (entry) => entry.lock.withPermits(1)(effect),
        (entry) =>
          Effect.sync(() => {
            entry.users -= 1
            if (entry.users === 0) completing.delete(id)
          })
      )

    const complete: UploadsShape["complete"] = (id, parts) =>
      oneAtATime(
        id,
        Effect.gen(function*() {
          const session = yield* findSession(id)
          if (isTerminalOrFurther(session.state)) return session
          if (session.state === "failed" || session.state === "aborted") {
            return yield* new UploadNotCompletable({ state: session.state })
          }
          const sorted = yield* normalizeParts(parts)
          const declared = sorted.reduce((sum, part) => sum + part.sizeBytes, 0)
          if (declared !== session.expectedSizeBytes) {
            return yield* new UploadSizeMismatch({ declared, expected: session.expectedSizeBytes })
          }

          /** A completion that reached storage but not the database left the assembled object. */
          const recover = <E>(
            otherwise: Effect.Effect<never, E>
          ): Effect.Effect<UploadSession, E | UploadStorageGone | UploadNotFound | UploadNotCompletable> =>
            Effect.gen(function*() {
              const size = yield* stagedSize(session)
              if (Option.isNone(size)) return yield* otherwise
              if (size.value !== session.expectedSizeBytes) {
                return yield* new UploadStorageGone({
                  detail: `the assembled object is ${size.value} bytes, expected ${session.expectedSizeBytes}`
                })
              }
              yield* Effect.logInfo("upload completion recovered from the assembled staging object").pipe(
                Effect.annotateLogs({ upload_id: id })
              )
              return yield* markCompleted(session)
            })

          if ((yield* now).getTime() >= session.expiresAt.getTime()) {
            return yield* recover(Effect.fail(new UploadExpired({ expiresAt: session.expiresAt })))
          }

          const stored = yield* store.completeMultipartUpload(
            session.stagingKey,
            session.storageUploadId,
            sorted.map((part) => ({ partNumber: part.number, etag: part.etag }))
          ).pipe(Effect.either)
          if (stored._tag === "Left") {
            receivedHashes.forget(id)
            const error = stored.left
            // Whatever the store says — upload gone (NoSuchUpload after a crash or a concurrent
            // retry), a part missing because a concurrent retry consumed it, or an error after
            // the object was assembled — an assembled object of the right size means the
            // completion happened.
            return yield* recover<PartListRejected | UploadStorageGone>(
              error._tag === "InvalidPartList"
                ? Effect.fail(new PartListRejected({ reason: error.reason }))
                : error._tag === "BlobNotFound"
                ? Effect.fail(new UploadStorageGone({ detail: "the storage multipart upload no longer exists" }))
                : Effect.die(error)
            )
          }
          // The bytes were hashed on the way in and the assembled object is exactly those parts:
          // tell the worker, pinned to the ETag of the object just assembled.
          const hashed = receivedHashes.digestFor(id, sorted)
          const received = hashed !== undefined && hashed.sizeBytes === stored.right.sizeBytes
            ? { digest: hashed.digest, sizeBytes: hashed.sizeBytes, etag: stored.right.etag }
            : undefined
          return yield* markCompleted(session, received)
        })
      ).pipe(Effect.withSpan("uploads.complete", { attributes: { "imgsrv.upload.parts": parts.length } }))

    const abort: UploadsShape["abort"] = (id) =>
      Effect.gen(function*() {
        const session = yield* findSession(id)
        if (session.state === "aborted") return session
        if (session.state !== "created" && session.state !== "uploading") {
          return yield* new UploadNotAbortable({ state: session.state })
        }
        receivedHashes.forget(id)
        // Storage first: if it fails the session stays abortable and the client retries.
        yield* store.abortMultipartUpload(session.stagingKey, session.storageUploadId).pipe(
          Effect.catchTag("BlobNotFound", () => Effect.void),
          Effect.catchTag("BlobStoreError", Effect.die)
        )
        // A completion that reached storage but not the database left an assembled object.
        yield* store.delete(session.stagingKey).pipe(Effect.catchTag("BlobStoreError", Effect.die))
        const aborted = yield* repo.markAborted(id)
        if (Option.isNone(aborted)) {
          const current = yield* findSession(id)
          if (current.state === "aborted") return current
          return yield* new UploadNotAbortable({ state: current.state })
        }
        yield* Metric.increment(Metric.tagged(uploadsAborted, "trigger", "client"))
        return aborted.value
      }).pipe(Effect.withSpan("uploads.abort"))

    const trustedBlob: UploadsShape["trustedBlob"] = (digest) =>
      repo.findBlob(digest).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new CasBlobNotFound({ digest })),
          onSome: Effect.succeed
        }))
      )

    return Uploads.of({ begin, status, putPart, complete, abort, trustedBlob })
  })
)
