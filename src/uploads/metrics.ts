import { Effect, Layer, Metric, MetricBoundaries, Option } from "effect"
import { registerCollector, type Sample } from "../platform/observability/metrics.js"
import { databaseFailure } from "../platform/storage/sql-errors.js"
import { UploadRepository } from "./repository.js"

/**
 * Upload and CAS metrics. Labels are bounded: results, outcomes, failure reasons,
 * states — never an upload id or a digest.
 */

export const uploadsBegun = Metric.counter("imgsrv_uploads_begun_total", {
  description: "Upload sessions begun, by result (created, or ready for an already trusted digest).",
  incremental: true
})

export const uploadsCompleted = Metric.counter("imgsrv_uploads_completed_total", {
  description: "Upload sessions completed (assembled in staging and queued for promotion).",
  incremental: true
})

export const uploadsFailed = Metric.counter("imgsrv_uploads_failed_total", {
  description: "Upload sessions promotion refused, by reason (digest_mismatch, size_mismatch, staged_object_missing).",
  incremental: true
})

export const uploadsPromoted = Metric.counter("imgsrv_uploads_promoted_total", {
  description: "Upload sessions promoted into CAS (state ready), by how the CAS object was obtained (moved, reused).",
  incremental: true
})

export const uploadsAborted = Metric.counter("imgsrv_uploads_aborted_total", {
  description: "Upload sessions aborted, by trigger (client, expired).",
  incremental: true
})

export const partsReceived = Metric.counter("imgsrv_upload_parts_total", {
  description: "Part uploads, by outcome (accepted, rejected).",
  incremental: true
})

export const partBytesReceived = Metric.counter("imgsrv_upload_part_bytes_received_total", {
  description: "Bytes of part bodies received from clients (including parts later rejected).",
  incremental: true
})

/** 10 ms · 2^k for k = 0..15: the last finite bucket is ~5.5 min (a 48 TiB object would exceed it). */
export const promotionDuration = Metric.histogram(
  "imgsrv_cas_promotion_duration_seconds",
  MetricBoundaries.exponential({ start: 0.01, factor: 2, count: 16 }),
  "Time from claim to recorded outcome of one promotion attempt, by outcome (ready, failed, retry, lease_lost)."
)

export const promotionVerifications = Metric.counter("imgsrv_cas_promotion_verifications_total", {
  description:
    "Staged objects verified, by mode: received (hashed while the parts arrived in order) or streamed (read back and hashed).",
  incremental: true
})

export const promotionVerifiedBytes = Metric.counter("imgsrv_cas_promotion_verified_bytes_total", {
  description: "Bytes hashed by the promotion worker (staged objects, and existing CAS objects it had to re-check).",
  incremental: true
})

/**
 * The reference's durable-state gauges (domain.md §7.2), computed from PostgreSQL at
 * scrape time. Per-state series exist only for states that have rows; the age gauges
 * only when there is such a job.
 */
export const UploadMetricsLive = Layer.effectDiscard(Effect.gen(function*() {
  const repo = yield* UploadRepository
  const gauge = (name: string, help: string, value: number, labels?: Record<string, string>): Sample => ({
    name,
    help,
    type: "gauge",
    value,
    ...(labels ? { labels } : {})
  })
  yield* registerCollector(
    "uploads",
    Effect.gen(function*() {
      const [sessions, jobs, ages, blobs] = yield* Effect.all(
        [repo.sessionsByState, repo.jobsByState, repo.oldestJobAges, repo.blobTotals],
        { concurrency: 2 }
      ).pipe(databaseFailure)
      return [
        ...sessions.map((s) =>
          gauge("imgsrv_upload_sessions", "Upload sessions by state.", s.value, { state: s.label })
        ),
        ...jobs.map((s) =>
          gauge("imgsrv_cas_ingest_jobs", "CAS ingest (promotion) jobs by state.", s.value, { state: s.label })
        ),
        ...Option.toArray(ages.queued).map((age) =>
          gauge("imgsrv_cas_ingest_oldest_queued_age_seconds", "Age of the oldest due queued promotion job.", age)
        ),
        ...Option.toArray(ages.running).map((age) =>
          gauge(
            "imgsrv_cas_ingest_oldest_running_age_seconds",
            "Time since the oldest running promotion job was claimed.",
            age
          )
        ),
        gauge("imgsrv_cas_blobs", "Verified CAS blobs.", blobs.count),
        gauge("imgsrv_cas_blob_bytes", "Total size of verified CAS blobs, in bytes.", blobs.bytes)
      ]
    })
  )
}))
