import type { SqlError } from "@effect/sql"
import { Context, Data, Duration, Effect, Layer, Metric, Option } from "effect"
import { createHash } from "node:crypto"
import { digestFromHex, type Sha256Digest } from "../contract/digest.js"
import { AppConfig } from "../platform/config/config.js"
import { withLinkedSpan } from "../platform/observability/tracing.js"
import { BlobStore, type BlobStoreError, readAll } from "../platform/storage/blob-store/blob-store.js"
import { casKey, type StorageKey } from "../platform/storage/blob-store/keys.js"
import { databaseFailure } from "../platform/storage/sql-errors.js"
import { type Job, leaseHeartbeat, type RunOutcome, workerLayer } from "../platform/worker.js"
import { uploadFailed, uploadReady } from "../webhooks/events.js"
import {
  promotionDuration,
  promotionVerifications,
  promotionVerifiedBytes,
  uploadsFailed,
  uploadsPromoted
} from "./metrics.js"
import { type ClaimedJob, UploadRepository } from "./repository.js"
import type { FailureReason, UploadSession } from "./schema.js"
import { PromotionWake } from "./service.js"

/**
 * The CAS promotion worker (domain.md §3.3, §4.4, with leases): claims one completed
 * upload, hashes the assembled staging object in one streaming pass, and on a match
 * moves it to `cas/sha256/<h[0:2]>/<h[2:4]>/<h>` — an atomic rename on the filesystem,
 * an ETag-pinned server-side copy on S3 — then records the blob, the session `ready`
 * and the job `succeeded` in one transaction.
 *
 * Multi-replica safety:
 * - a claim is `FOR UPDATE SKIP LOCKED` plus a lease (`lease_expires_at`) that a
 *   heartbeat pushes forward while the worker is busy; a worker that dies leaves a lease
 *   that runs out, and the next claim takes the job over (`attempt_count` + 1);
 * - every write of an outcome is fenced by (`locked_by`, `attempt_count`), so a worker
 *   that lost its lease can never overwrite the new holder's result;
 * - two uploads of one digest racing into CAS: the copy refuses an existing destination,
 *   and the loser reuses the existing object (trusting its blob row, or re-hashing it),
 *   so there is one blob row and both sessions end `ready`.
 *
 * Outcomes: a verification failure (digest or size mismatch, staged object missing) is
 * the uploader's problem, recorded as `failed` and reported to the runner as `worked`
 * (bad uploads must not open the circuit breaker). Anything else — store or database
 * trouble — gives the job back to the queue for a later attempt and is reported to the
 * runner as an error, which backs off and eventually opens the breaker.
 */

export const CAS_PROMOTION_JOB = "cas-promotion"

/** Promotion could not finish for a reason that may go away (the job is retried). */
export class PromotionRetry extends Data.TaggedError("PromotionRetry")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return this.reason
  }
}

interface Hashed {
  readonly sizeBytes: number
  readonly digest: Sha256Digest
  /** The ETag of exactly the version that was hashed (pins the later copy). */
  readonly etag: string
}

type Outcome = "ready" | "failed" | "lease_lost"

export class CasPromotion extends Context.Tag("imgsrv/uploads/CasPromotion")<CasPromotion, {
  /**
   * Claims and promotes at most one upload (the runner's unit of work). A database failing
   * during the promotion is a failure here, not a defect: the job is given back at once.
   */
  readonly runOnce: (workerId: string) => Effect.Effect<RunOutcome, PromotionRetry | BlobStoreError | SqlError.SqlError>
}>() {}

export const CasPromotionLive = Layer.effect(
  CasPromotion,
  Effect.gen(function*() {
    const repo = yield* UploadRepository
    const store = yield* BlobStore
    const config = yield* AppConfig
    const leaseMillis = Duration.toMillis(config.casPromotion.lease)
    const retryAfterMillis = Duration.toMillis(config.casPromotion.errorBackoff)

    /** One streaming pass through SHA-256 (constant memory); None when the object is missing. */
    const hashObject = (key: StorageKey): Effect.Effect<Option.Option<Hashed>, BlobStoreError> =>
      Effect.scoped(Effect.gen(function*() {
        const opened = yield* store.open(key).pipe(
          Effect.map(Option.some),
          Effect.catchTag("BlobNotFound", () => Effect.succeedNone)
        )
        if (Option.isNone(opened)) return Option.none()
        const hash = createHash("sha256")
        const size = yield* readAll(opened.value, key, (chunk) => {
          hash.update(chunk)
          promotionVerifiedBytes.unsafeUpdate(chunk.byteLength, [])
        })
        return Option.some({ sizeBytes: size, digest: digestFromHex(hash.digest("hex")), etag: opened.value.etag })
      }))

    /**
     * Whether the object already at the CAS key holds the expected bytes: trusted by its
     * blob row when there is one (its size re-checked), otherwise hashed again — an
     * object without a row may be a half-finished earlier promotion, or anything.
     */
    const statOption = (key: StorageKey) =>
      store.stat(key).pipe(
        Effect.map(Option.some),
        Effect.catchTag("BlobNotFound", () => Effect.succeedNone)
      )

    const casObjectMatches = (session: UploadSession) =>
      Effect.gen(function*() {
        const key = casKey(session.expectedDigest)
        const info = yield* statOption(key)
        if (Option.isNone(info) || info.value.sizeBytes !== session.expectedSizeBytes) return false
        const row = yield* repo.findBlob(session.expectedDigest)
        if (Option.isSome(row)) return row.value.sizeBytes === session.expectedSizeBytes
        const hashed = yield* hashObject(key)
        return Option.isSome(hashed) && hashed.value.digest === session.expectedDigest &&
          hashed.value.sizeBytes === session.expectedSizeBytes
      })

    const deleteStaging = (session: UploadSession) =>
      store.delete(session.stagingKey).pipe(
        Effect.timeout("5 seconds"),
        Effect.catchAll((error) =>
          Effect.logWarning("staging object cleanup failed").pipe(Effect.annotateLogs({ upload_id: session.id, error }))
        )
      )

    const recordFailure = (job: ClaimedJob, session: UploadSession, reason: FailureReason, message: string) =>
      Effect.gen(function*() {
        // upload.failed commits with the session's state, or not at all.
        const recorded = yield* repo.recordFailed(
          job,
          { reason, message },
          uploadFailed(session, { reason, message })
        )
        if (!recorded) return "lease_lost" as const
        yield* Metric.increment(Metric.tagged(uploadsFailed, "reason", reason))
        yield* Effect.logWarning("cas ingest failed").pipe(
          Effect.annotateLogs({ upload_id: session.id, failure_reason: reason, detail: message })
        )
        yield* deleteStaging(session)
        return "failed" as const
      })

    const recordSuccess = (job: ClaimedJob, session: UploadSession, how: "moved" | "reused") =>
      Effect.gen(function*() {
        // Under the digest's lock (src/gc/service.ts): no collection of the digest is
        // unfinished, and the object is in the store now, so the blob row written with it
        // describes an object no collector is about to delete. upload.ready commits with
        // the session's state, or not at all.
        const recorded = yield* repo.transaction(Effect.gen(function*() {
          yield* repo.claimDigestForBlob(session.expectedDigest)
          const present = yield* statOption(casKey(session.expectedDigest))
          if (Option.isNone(present) || present.value.sizeBytes !== session.expectedSizeBytes) {
            return yield* new PromotionRetry({ reason: "the CAS object was garbage-collected meanwhile" })
          }
          return yield* repo.recordPromoted(job, {
            digest: session.expectedDigest,
            sizeBytes: session.expectedSizeBytes,
            mediaType: session.mediaTypeHint
          }, uploadReady(session))
        })).pipe(
          Effect.catchTag(
            "BlobBeingCollected",
            (error) => new PromotionRetry({ reason: "a garbage collection of this digest is finishing", cause: error })
          )
        )
        if (!recorded) return "lease_lost" as const
        yield* Metric.increment(Metric.tagged(uploadsPromoted, "via", how))
        yield* Effect.logInfo("cas ingest succeeded").pipe(
          Effect.annotateLogs({
            upload_id: session.id,
            digest: session.expectedDigest,
            size_bytes: session.expectedSizeBytes,
            via: how
          })
        )
        return "ready" as const
      })

    /**
     * The digest, size and ETag of the staged object: from the hash taken while the parts were
     * received (receive-hash.ts) when the staged object still is that exact version, else from
     * one streaming pass. None when the staged object is missing.
     */
    const verifyStaged = (job: ClaimedJob, session: UploadSession) =>
      Effect.gen(function*() {
        const received = job.received
        if (received !== null) {
          const info = yield* statOption(session.stagingKey)
          if (Option.isSome(info) && info.value.etag === received.etag && info.value.sizeBytes === received.sizeBytes) {
            yield* Metric.increment(Metric.tagged(promotionVerifications, "mode", "received"))
            return Option.some<Hashed>(received)
          }
        }
        yield* Metric.increment(Metric.tagged(promotionVerifications, "mode", "streamed"))
        return yield* hashObject(session.stagingKey)
      })

    const promote = (
      job: ClaimedJob,
      session: UploadSession
    ): Effect.Effect<Outcome, PromotionRetry | BlobStoreError> =>
      Effect.gen(function*() {
        const target = casKey(session.expectedDigest)
        const verified = yield* verifyStaged(job, session)
        if (Option.isNone(verified)) {
          // An earlier attempt may have moved the object into CAS and died before recording it.
          if (yield* casObjectMatches(session)) return yield* recordSuccess(job, session, "reused")
          return yield* recordFailure(job, session, "staged_object_missing", "staged object is missing")
        }
        const staged = verified.value
        if (staged.sizeBytes !== session.expectedSizeBytes) {
          return yield* recordFailure(
            job,
            session,
            "size_mismatch",
            `staged object is ${staged.sizeBytes} bytes, expected ${session.expectedSizeBytes} bytes`
          )
        }
        if (staged.digest !== session.expectedDigest) {
          return yield* recordFailure(
            job,
            session,
            "digest_mismatch",
            `staged object digest is ${staged.digest}, expected ${session.expectedDigest}`
          )
        }
        // Pinned to the version just hashed: bytes swapped in between are never promoted.
        const moved = yield* store.move(session.stagingKey, target, { ifMatch: staged.etag, ifDestinationAbsent: true })
          .pipe(Effect.either)
        if (moved._tag === "Right") return yield* recordSuccess(job, session, "moved")
        const error = moved.left
        if (error._tag === "BlobStoreError") return yield* error
        if (error._tag === "BlobNotFound") {
          return yield* new PromotionRetry({ reason: "staged object vanished after verification" })
        }
        if (error.reason === "source-changed") {
          return yield* new PromotionRetry({ reason: "staged object changed after verification" })
        }
        // The destination exists (or S3 refused without saying which condition failed).
        if (yield* casObjectMatches(session)) {
          // Recorded first: should the collector take the object meanwhile, the staged copy
          // is still there for the retry.
          const outcome = yield* recordSuccess(job, session, "reused")
          if (outcome === "ready") yield* deleteStaging(session)
          return outcome
        }
        const occupied = yield* statOption(target)
        if (Option.isNone(occupied)) {
          // Nothing at the destination, so it was the source condition that failed.
          return yield* new PromotionRetry({ reason: "staged object changed after verification" })
        }
        // Something that is not these bytes sits at the CAS key (damaged or tampered with).
        // The staged bytes are verified, so they replace it.
        yield* Effect.logWarning("replacing a CAS object that does not match its digest").pipe(
          Effect.annotateLogs({ digest: session.expectedDigest, found_size_bytes: occupied.value.sizeBytes })
        )
        yield* store.move(session.stagingKey, target, { ifMatch: staged.etag }).pipe(
          Effect.catchTags({
            BlobNotFound: () => new PromotionRetry({ reason: "staged object vanished after verification" }),
            BlobPreconditionFailed: () => new PromotionRetry({ reason: "staged object changed after verification" })
          })
        )
        return yield* recordSuccess(job, session, "moved")
      })

    // A failing database does not stop the beat (the lease may still be renewed in time).
    const heartbeat = (job: ClaimedJob) =>
      leaseHeartbeat(config.casPromotion.lease, databaseFailure(repo.heartbeat(job, leaseMillis)), {
        job: "cas-promotion",
        upload_id: job.uploadId
      })

    const runOnce = (workerId: string) =>
      Effect.gen(function*() {
        const claim = yield* repo.claimJob(workerId, leaseMillis)
        if (Option.isNone(claim)) return "idle" as const
        const { job, session } = claim.value
        if (Option.isNone(session)) {
          // Only reachable after manual edits; finishing the job keeps it from blocking the queue.
          yield* repo.dropJob(job, "the upload session is not awaiting promotion")
          yield* Effect.logWarning("cas promotion job dropped: its session is not awaiting promotion").pipe(
            Effect.annotateLogs({ ingest_job_id: job.id, upload_id: job.uploadId })
          )
          return "worked" as const
        }
        yield* Effect.logInfo("cas promotion job claimed").pipe(
          Effect.annotateLogs({
            ingest_job_id: job.id,
            upload_id: job.uploadId,
            attempt_count: job.attemptCount,
            expected_digest: session.value.expectedDigest,
            expected_size_bytes: session.value.expectedSizeBytes
          })
        )
        const started = performance.now()
        const observe = (outcome: string) =>
          Metric.update(Metric.tagged(promotionDuration, "outcome", outcome), (performance.now() - started) / 1000)
        // A failing database is one more reason to give the job back (below), so it is a failure here.
        const result = yield* Effect.raceFirst(databaseFailure(promote(job, session.value)), heartbeat(job)).pipe(
          withLinkedSpan("cas.promote", job.traceParent, {
            "imgsrv.upload.id": job.uploadId,
            "imgsrv.cas.attempt": job.attemptCount
          }),
          Effect.either
        )
        if (result._tag === "Right") {
          yield* observe(result.right)
          if (result.right === "lease_lost") {
            yield* Effect.logWarning("cas promotion lease lost; another worker owns the upload now").pipe(
              Effect.annotateLogs({ upload_id: job.uploadId })
            )
          }
          return "worked" as const
        }
        const error = result.left
        if (error._tag === "LeaseLost") {
          yield* observe("lease_lost")
          yield* Effect.logWarning("cas promotion lease lost; another worker owns the upload now").pipe(
            Effect.annotateLogs({ upload_id: job.uploadId })
          )
          return "worked" as const
        }
        yield* observe("retry")
        // Give the job back at once (rather than waiting for the lease) so any replica can
        // retry it after the backoff; the runner logs the error and backs off.
        yield* databaseFailure(repo.releaseJob(job, retryAfterMillis, error.message)).pipe(
          Effect.catchAll((releaseError) =>
            Effect.logWarning("releasing a cas promotion job failed; its lease will expire").pipe(
              Effect.annotateLogs({ error: releaseError })
            )
          )
        )
        return yield* error
      }).pipe(Effect.annotateLogs({ component: "cas-promotion", worker_id: workerId }))

    return CasPromotion.of({ runOnce })
  })
)

/** The promotion job: one loop per replica, woken by completed uploads (`PromotionWake`). */
export const casPromotionJob = Effect.gen(function*() {
  const config = yield* AppConfig
  const promotion = yield* CasPromotion
  return {
    name: CAS_PROMOTION_JOB,
    nodeName: config.nodeName,
    settings: config.casPromotion,
    runOnce: promotion.runOnce,
    wake: yield* PromotionWake,
    enabledBy: "--cas-promotion-enabled"
  } satisfies Job<PromotionRetry | BlobStoreError | SqlError.SqlError, never>
})

/** The promotion loop, when `--cas-promotion-enabled` (default true). */
export const CasPromotionWorkerLive = workerLayer(casPromotionJob)
