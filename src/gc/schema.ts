import { Schema } from "effect"
import { Sha256Digest } from "../contract/digest.js"
import { strictBody } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"

/**
 * Rows the collector reads (each decoded from its snake_case columns by the repository's
 * `SqlSchema`), the collector's report, and the wire shapes of `POST /v1/admin/gc`
 * (docs/gc.md), the wire report declared as a transformation of the report.
 */

// ---------------------------------------------------------------------------------
// Domain
// ---------------------------------------------------------------------------------

const column = <A, I>(schema: Schema.Schema<A, I>, key: string) =>
  Schema.propertySignature(schema).pipe(Schema.fromKey(key))

/** A blob the collector may delete (a `cas_blobs` row), or deleted (a `gc_blob_deletions` tombstone). */
export const CollectableBlob = Schema.Struct({
  digest: Sha256Digest,
  sizeBytes: column(Schema.Number, "size_bytes"),
  storageKey: column(Schema.String, "storage_key")
})
export type CollectableBlob = typeof CollectableBlob.Type

/** What a staging object or multipart upload belongs to: an `upload_sessions` row, by its keys. */
export const SessionClaim = Schema.Struct({
  stagingKey: column(Schema.String, "staging_key"),
  storageUploadId: column(Schema.String, "storage_upload_id"),
  state: Schema.String
})
export type SessionClaim = typeof SessionClaim.Type

/** One run's outcome (a dry run's: what it would do). */
export const GcReport = Schema.Struct({
  dryRun: Schema.Boolean,
  startedAt: Schema.DateFromSelf,
  finishedAt: Schema.DateFromSelf,
  gracePeriodMillis: Schema.Number,
  blobs: Schema.Number,
  bytes: Schema.Number,
  stagingObjects: Schema.Number,
  stagingBytes: Schema.Number,
  multipartUploads: Schema.Number,
  multipartListingSupported: Schema.Boolean,
  pendingDeletions: Schema.Number
})
export type GcReport = typeof GcReport.Type

// ---------------------------------------------------------------------------------
// Wire
// ---------------------------------------------------------------------------------

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

/** The wire report of a run: snake_case, timestamps as `formatTimestamp` writes them, the grace in seconds. */
export const GcReportFromDomain = Schema.transform(GcReport, GcReportJson, {
  strict: true,
  decode: (report) => ({
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
  }),
  encode: (wire) => ({
    dryRun: wire.dry_run,
    startedAt: new Date(wire.started_at),
    finishedAt: new Date(wire.finished_at),
    gracePeriodMillis: wire.grace_period_seconds * 1000,
    blobs: wire.blobs,
    bytes: wire.bytes,
    stagingObjects: wire.staging_objects,
    stagingBytes: wire.staging_bytes,
    multipartUploads: wire.multipart_uploads,
    multipartListingSupported: wire.multipart_listing_supported,
    pendingDeletions: wire.pending_deletions
  })
})

/** A run's report as `POST /v1/admin/gc` answers it. */
export const reportToWire: (report: GcReport) => GcReportJson = Schema.decodeSync(GcReportFromDomain)
