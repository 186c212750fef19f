import { Clock, Context, Duration, Effect, Layer, Metric, Option, Ref } from "effect"
import { AppConfig } from "../platform/config/config.js"
import { withLinkedSpan } from "../platform/observability/tracing.js"
import { BlobStore, type BlobStoreError } from "../platform/storage/blob-store/blob-store.js"
import { type Job, type RunOutcome, workerLayer } from "../platform/worker.js"
import { uploadsAborted } from "./metrics.js"
import { UploadRepository } from "./repository.js"
import type { UploadSession } from "./schema.js"

/**
 * The expiry sweeper (an imgsrv decision beyond the reference, domain.md §3.6): a
 * session past `expires_at` that still accepts parts (`created`/`uploading`) becomes
 * `aborted`, its storage multipart upload is aborted and any staging object deleted, so
 * abandoned uploads leak neither parts nor rows.
 *
 * One session per unit of work, inside a transaction that holds its row lock (`FOR
 * UPDATE SKIP LOCKED`): replicas sweep different sessions, and a part PUT or complete
 * racing the sweep waits for it and then finds the session `aborted` (412). Storage is
 * cleaned before the state changes, so a store outage leaves the session to a later
 * sweep (after `--upload-expiry-error-backoff-max`) instead of an `aborted` row whose
 * parts nobody will ever delete.
 *
 * It also owns what a crash leaves in the store: every `TEMPORARY_SWEEP_INTERVAL` it has the
 * store remove its temporary files untouched for `STALE_TEMPORARY_AGE` (a completion killed
 * half-way leaves one as big as the upload).
 */

export const UPLOAD_EXPIRY_JOB = "upload-expiry"

/** A store temporary untouched this long belongs to no live write (they touch it continually). */
export const STALE_TEMPORARY_AGE = Duration.hours(1)
/** How often the sweeper looks for stale temporaries. */
export const TEMPORARY_SWEEP_INTERVAL = Duration.minutes(10)

export class UploadExpirySweeper extends Context.Tag("imgsrv/uploads/UploadExpirySweeper")<UploadExpirySweeper, {
  /** Sweeps at most one expired session: `worked` when it aborted one, `idle` when none is due. */
  readonly runOnce: Effect.Effect<RunOutcome, BlobStoreError>
}>() {}

export const UploadExpirySweeperLive = Layer.effect(
  UploadExpirySweeper,
  Effect.gen(function*() {
    const repo = yield* UploadRepository
    const store = yield* BlobStore

    const config = yield* AppConfig
    const retryAfterMillis = Duration.toMillis(config.uploadExpiry.errorBackoffMax)

    /**
     * Storage first, then the row. Traced per expired session (with no link: no request
     * started it); the loop's polls themselves are not traced (untracedPoll).
     */
    const expire = (session: UploadSession) =>
      Effect.gen(function*() {
        const cleaned = yield* Effect.gen(function*() {
          yield* store.abortMultipartUpload(session.stagingKey, session.storageUploadId).pipe(
            Effect.catchTag("BlobNotFound", () => Effect.void)
          )
          // A completion that reached storage but not the database leaves an assembled object.
          yield* store.delete(session.stagingKey)
        }).pipe(Effect.either)
        if (cleaned._tag === "Left") return { _tag: "StorageFailed", session, error: cleaned.left } as const
        yield* repo.markAborted(session.id)
        yield* Metric.increment(Metric.tagged(uploadsAborted, "trigger", "expired"))
        yield* Effect.logInfo("expired upload session aborted").pipe(
          Effect.annotateLogs({
            upload_id: session.id,
            state: session.state,
            expires_at: session.expiresAt.toISOString()
          })
        )
        return { _tag: "Swept" } as const
      }).pipe(withLinkedSpan("uploads.expire", null, { "imgsrv.upload.id": session.id }))

    const nextTemporarySweep = yield* Ref.make(0)
    /** Never fails the session sweep: a store that cannot list its temporaries only logs. */
    const sweepTemporaries = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now < (yield* Ref.get(nextTemporarySweep))) return
      yield* Ref.set(nextTemporarySweep, now + Duration.toMillis(TEMPORARY_SWEEP_INTERVAL))
      const cutoff = new Date(now - Duration.toMillis(STALE_TEMPORARY_AGE))
      const removed = yield* store.removeStaleTemporaries(cutoff).pipe(
        Effect.catchAll((error) => Effect.as(Effect.logWarning("removing stale temporary files failed", error), 0))
      )
      if (removed > 0) {
        yield* Effect.logInfo("stale temporary files removed").pipe(
          Effect.annotateLogs({ count: removed, untouched_since: cutoff.toISOString() })
        )
      }
    })

    const runOnce = Effect.gen(function*() {
      yield* sweepTemporaries
      const outcome = yield* repo.transaction(Effect.gen(function*() {
        const now = new Date(yield* Clock.currentTimeMillis)
        const expired = yield* repo.lockNextExpired(now)
        if (Option.isNone(expired)) return { _tag: "Idle" } as const
        return yield* expire(expired.value)
      }))
      switch (outcome._tag) {
        case "Idle":
          return "idle" as const
        case "Swept":
          return "worked" as const
        case "StorageFailed":
          // The session stays as it is (still refusing parts: it is expired) and is tried
          // again later; meanwhile the others are swept. The runner logs and backs off.
          yield* repo.deferSweep(outcome.session.id, retryAfterMillis)
          return yield* outcome.error
      }
    }).pipe(Effect.annotateLogs({ component: "uploads" }))

    return UploadExpirySweeper.of({ runOnce })
  })
)

/** The sweeper's job: on every replica with a database (it is cheap and multi-replica safe). */
export const uploadExpiryJob = Effect.gen(function*() {
  const config = yield* AppConfig
  const sweeper = yield* UploadExpirySweeper
  // Nothing in-process signals expiry; the loop wakes on its interval only.
  return {
    name: UPLOAD_EXPIRY_JOB,
    nodeName: config.nodeName,
    // Its own switch (default on), whatever `--cas-promotion-enabled` says: expiry needs no promotion.
    settings: config.uploadExpiry,
    runOnce: () => sweeper.runOnce,
    enabledBy: "--upload-expiry-enabled"
  } satisfies Job<BlobStoreError, never>
})

/** The sweeper's loop, when `--upload-expiry-enabled` (default true). */
export const UploadExpirySweeperLoopLive = workerLayer(uploadExpiryJob)
