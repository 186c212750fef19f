import { Schema } from "effect"
import { strictBody } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"

/** Wire shapes of `POST /v1/admin/gc` (docs/gc.md) and the collector's report. */

export const GcRequest = Schema.Struct({
  dry_run: Schema.Boolean.annotations({
    description: "`true`: report what a collection would free and change nothing."
  })
}).annotations({ ...strictBody, identifier: "GcRequest" })
export type GcRequest = typeof GcRequest.Type

export const GcReportJson = Schema.Struct({
  dry_run: Schema.Boolean,
  started_at: TimestampString,
  finished_at: TimestampString,
  grace_period_seconds: Schema.Number,
  blobs: Schema.Int.annotations({
    description: "CAS blobs deleted (dry run: that would be deleted now)."
  }),
  bytes: Schema.Int.annotations({ description: "Their total size in bytes." }),
  staging_objects: Schema.Int.annotations({
    description: "Leftover staging objects older than the upload TTL removed (dry run: that would be)."
  }),
  staging_bytes: Schema.Int,
  multipart_uploads: Schema.Int.annotations({
    description: "Orphaned multipart uploads older than the upload TTL aborted (dry run: that would be)."
  }),
  multipart_listing_supported: Schema.Boolean.annotations({
    description: "false when the object store cannot list multipart uploads (then none were looked at)."
  }),
  pending_deletions: Schema.Int.annotations({
    description: "Collections an earlier, interrupted run left half-done (row gone, object not yet) finished now."
  })
}).annotations({ identifier: "GcReport" })
export type GcReportJson = typeof GcReportJson.Type

export interface GcReport {
  readonly dryRun: boolean
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly gracePeriodMillis: number
  readonly blobs: number
  readonly bytes: number
  readonly stagingObjects: number
  readonly stagingBytes: number
  readonly multipartUploads: number
  readonly multipartListingSupported: boolean
  readonly pendingDeletions: number
}

export const reportToWire = (report: GcReport): GcReportJson => ({
  dry_run: report.dryRun,
  started_at: formatTimestamp(report.startedAt),
  finished_at: formatTimestamp(report.finishedAt),
  grace_period_seconds: report.gracePeriodMillis / 1000,
  blobs: report.blobs,
  bytes: report.bytes,
  staging_objects: report.stagingObjects,
  staging_bytes: report.stagingBytes,
  multipart_uploads: report.multipartUploads,
  multipart_listing_supported: report.multipartListingSupported,
  pending_deletions: report.pendingDeletions
})
