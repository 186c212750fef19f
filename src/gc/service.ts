import { Cause, Clock, Context, Duration, Effect, Layer, Metric, Option } from "effect"
import { AppConfig } from "../platform/config/config.js"
import {
  BlobStore,
  type BlobStoreError,
  type MultipartUploadInfo,
  type ObjectInfo
} from "../platform/storage/blob-store/blob-store.js"
import { isWellFormedKey } from "../platform/storage/blob-store/keys.js"
import { GcAlreadyRunning } from "./errors.js"
import { gcCandidates, gcReclaimedBlobs, gcReclaimedBytes, type GcRunOutcome, gcRuns } from "./metrics.js"
import { GcRepository } from "./repository.js"
import { type CollectableBlob, type GcReport, reportToWire } from "./schema.js"

/**
 * The garbage collector of CAS blobs (issue 16; docs/gc.md).
 *
 * A blob is collectable when no artifact or attachment of any version names its digest, no
 * upload session that is not finished (`created`, `uploading`, `completed`, `ingesting`)
 * claims it, and its last reference ended more than `--gc-grace-period` ago (see
 * `collectable` in repository.ts and migrations/0009_gc.sql for "unreferenced since").
 *
 * The protocol — why it never deletes a blob that something references when it deletes it:
 *
 * 1. One collector at a time: a run holds a session-level advisory lock (PostgreSQL frees it
 *    with the connection when the process dies).
 * 2. Every writer that makes a digest referenced takes the digest's advisory lock SHARED in
 *    its own transaction — database triggers do it for artifact and attachment rows, new
 *    upload sessions, a session becoming `ready` and a blob row being recorded — so no code
 *    path can forget it. The collector deletes one blob per transaction: it takes that lock
 *    EXCLUSIVE, then re-checks "collectable" in a new statement (READ COMMITTED: a fresh
 *    snapshot, with every reference whose transaction held the shared lock before), locks the
 *    row, writes a tombstone, deletes the row, and commits. A reference written after that
 *    commit names a digest with no blob row: exactly an artifact declared before its upload,
 *    which imgsrv allows and publish refuses (it requires the blob rows) until the blob is
 *    uploaded again. A session born `ready` (its digest trusted at begin) finds no row
 *    either and begins an ordinary upload instead.
 * 3. The object goes last: deleted after the row's commit, then the tombstone. While the
 *    tombstone exists no blob row for that digest can be recorded (trigger), and the
 *    promotion worker records a blob only after checking, under the shared lock, that no
 *    tombstone exists and that the object is in the store; so an upload of the same digest
 *    that completes meanwhile is retried after the collector is done and ends `ready` with
 *    its object present (its grace period starts then), or — when the collector removed the
 *    very object it had just promoted — `failed` (`staged_object_missing`), after which
 *    uploading again works. A crash between the commit and the object's deletion leaves the
 *    tombstone; the next run deletes the object and the tombstone first.
 * 4. The database refuses any delete of a blob row that has no tombstone or that something
 *    references (trigger), whatever code runs.
 *
 * Leftovers of uploads are swept in the same run: staging objects older than the upload TTL
 * whose session is finished or missing, and multipart uploads older than the upload TTL that
 * no session still accepting parts owns (a crash in begin leaves one with no session at all).
 */

export interface GcRunOptions {
  readonly dryRun: boolean
  /** For the run's log line: `schedule` (the worker) or `api`. */
  readonly trigger: "schedule" | "api"
}

export class GarbageCollector extends Context.Tag("imgsrv/gc/GarbageCollector")<GarbageCollector, {
  /** One run. Fails with `GcAlreadyRunning` when another run holds the lock (dry runs take none). */
  readonly run: (
    options: GcRunOptions
  ) => Effect.Effect<GcReport, GcAlreadyRunning | BlobStoreError>
}>() {}

/** Session states that still accept parts (their multipart upload is live). */
const ACCEPTING_PARTS = new Set(["created", "uploading"])
/** Session states whose staging object is no longer needed. */
const FINISHED = new Set(["ready", "failed", "aborted"])

export const GarbageCollectorLive = Layer.effect(
  GarbageCollector,
  Effect.gen(function*() {
    const repo = yield* GcRepository
    const store = yield* BlobStore
    const config = yield* AppConfig
    const graceMillis = Duration.toMillis(config.gc.gracePeriod)
    const ttlMillis = Duration.toMillis(config.uploadTtl)

    const now = Clock.currentTimeMillis.pipe(Effect.map((ms) => new Date(ms)))

    const deleteObject = (blob: CollectableBlob) =>
      isWellFormedKey(blob.storageKey)
        ? store.delete(blob.storageKey)
        : Effect.logWarning("tombstone with a malformed storage key; leaving the object").pipe(
          Effect.annotateLogs({ digest: blob.digest, storage_key: blob.storageKey })
        )

    /** Leftover staging objects: older than the upload TTL, and their session finished or missing. */
    const staleStaging = (cutoff: Date) =>
      Effect.gen(function*() {
        const old = (yield* store.listStagingObjects).filter((o) => o.lastModified.getTime() < cutoff.getTime())
        const sessions = yield* repo.sessionsByStagingKey(old.map((o) => o.key))
        const stateOf = new Map(sessions.map((s) => [s.stagingKey, s.state]))
        return old.filter((o) => {
          const state = stateOf.get(o.key)
          return state === undefined || FINISHED.has(state)
        })
      })

    /** Orphaned multipart uploads: older than the upload TTL, and no session accepting parts owns them. */
    const orphanMultipart = (cutoff: Date) =>
      Effect.gen(function*() {
        const listed = yield* store.listMultipartUploads
        if (Option.isNone(listed)) return Option.none<ReadonlyArray<MultipartUploadInfo>>()
        const old = listed.value.filter((u) => u.initiated.getTime() < cutoff.getTime())
        const sessions = yield* repo.sessionsByUploadId(old.map((u) => u.uploadId))
        const stateOf = new Map(sessions.map((s) => [s.storageUploadId, s.state]))
        return Option.some(old.filter((u) => {
          const state = stateOf.get(u.uploadId)
          return state === undefined || !ACCEPTING_PARTS.has(state)
        }))
      })

    const sumBytes = (objects: ReadonlyArray<ObjectInfo>) => objects.reduce((n, o) => n + o.sizeBytes, 0)

    const dryRun = Effect.gen(function*() {
      const startedAt = yield* now
      const pending = yield* repo.tombstones
      const candidates = yield* repo.candidates(graceMillis)
      yield* Metric.set(gcCandidates, candidates.length)
      const cutoff = new Date(startedAt.getTime() - ttlMillis)
      const staging = yield* staleStaging(cutoff)
      const multipart = yield* orphanMultipart(cutoff)
      return {
        dryRun: true,
        startedAt,
        finishedAt: yield* now,
        gracePeriodMillis: graceMillis,
        blobs: candidates.length,
        bytes: candidates.reduce((n, b) => n + b.sizeBytes, 0),
        stagingObjects: staging.length,
        stagingBytes: sumBytes(staging),
        multipartUploads: Option.match(multipart, { onNone: () => 0, onSome: (m) => m.length }),
        multipartListingSupported: Option.isSome(multipart),
        pendingDeletions: pending.length
      } satisfies GcReport
    })

    const collectNow = Effect.gen(function*() {
      const startedAt = yield* now
      // 1. What an interrupted run left half-done: the rows are gone, the objects may not be.
      const pending = yield* repo.tombstones
      for (const blob of pending) {
        yield* deleteObject(blob)
        yield* repo.deleteTombstone(blob.digest)
      }
      // 2. The blobs, one transaction each (the protocol above), the object after the commit.
      const candidates = yield* repo.candidates(graceMillis)
      yield* Metric.set(gcCandidates, candidates.length)
      let blobs = 0
      let bytes = 0
      for (const candidate of candidates) {
        const collected = yield* repo.collect(candidate.digest, graceMillis)
        if (Option.isNone(collected)) continue
        yield* deleteObject(collected.value)
        yield* repo.deleteTombstone(collected.value.digest)
        blobs += 1
        bytes += collected.value.sizeBytes
        yield* Metric.increment(gcReclaimedBlobs)
        yield* Metric.incrementBy(gcReclaimedBytes, collected.value.sizeBytes)
      }
      yield* repo.pruneReleases
      // 3. Upload leftovers.
      const cutoff = new Date(startedAt.getTime() - ttlMillis)
      const staging = yield* staleStaging(cutoff)
      for (const object of staging) yield* store.delete(object.key)
      const multipart = yield* orphanMultipart(cutoff)
      if (Option.isSome(multipart)) {
        for (const upload of multipart.value) {
          yield* store.abortMultipartUpload(upload.key, upload.uploadId).pipe(
            Effect.catchTag("BlobNotFound", () => Effect.void)
          )
        }
      }
      return {
        dryRun: false,
        startedAt,
        finishedAt: yield* now,
        gracePeriodMillis: graceMillis,
        blobs,
        bytes,
        stagingObjects: staging.length,
        stagingBytes: sumBytes(staging),
        multipartUploads: Option.match(multipart, { onNone: () => 0, onSome: (m) => m.length }),
        multipartListingSupported: Option.isSome(multipart),
        pendingDeletions: pending.length
      } satisfies GcReport
    })

    const count = (outcome: GcRunOutcome) => Metric.increment(Metric.tagged(gcRuns, "outcome", outcome))

    const run = (options: GcRunOptions) =>
      Effect.gen(function*() {
        if (options.dryRun) return yield* dryRun
        return yield* Effect.scoped(Effect.gen(function*() {
          if (!(yield* repo.acquireRunLock)) return yield* new GcAlreadyRunning()
          return yield* collectNow
        }))
      }).pipe(
        Effect.tap((report) =>
          Effect.zipRight(
            count(report.dryRun ? "dry_run" : "completed"),
            Effect.logInfo(report.dryRun ? "garbage collection dry run" : "garbage collection run").pipe(
              // The report as the API answers it, so the log line and the answer read the same.
              Effect.annotateLogs({
                trigger: options.trigger,
                ...reportToWire(report),
                duration_ms: report.finishedAt.getTime() - report.startedAt.getTime()
              })
            )
          )
        ),
        // Defects count too: a failing database is one (the repository is the SQL boundary).
        Effect.tapErrorCause((cause) => {
          if (Cause.isInterruptedOnly(cause)) return Effect.void
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure) && failure.value._tag === "GcAlreadyRunning") return count("skipped")
          return Effect.zipRight(
            count("failed"),
            Effect.logError("garbage collection run failed").pipe(
              Effect.annotateLogs({ trigger: options.trigger, error: Cause.squash(cause) })
            )
          )
        }),
        Effect.withSpan("gc.run", { attributes: { "imgsrv.gc.dry_run": options.dryRun } }),
        Effect.annotateLogs({ component: "gc" })
      )

    return GarbageCollector.of({ run })
  })
)
