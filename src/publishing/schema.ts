import { Schema } from "effect"
import { UuidParam, UuidString } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"
import type { RootFtype } from "../streams/schema.js"

/**
 * Publish jobs and their steps (api.md §2.1 PublishJob/PublishJobStep, §2.9, §3.3).
 * A job is created by `POST .../publish` with three blocking steps that the publish
 * worker runs strictly in sequence order.
 */

export const PublishJobIdParam = UuidParam("publish job id")

/** `abandoned`: a failed job given up on (its version went back to draft); it never changes again. */
export const JobState = Schema.Literal("queued", "running", "succeeded", "failed", "abandoned")
export type JobState = typeof JobState.Type

export const StepState = Schema.Literal("queued", "running", "succeeded", "failed", "skipped")
export type StepState = typeof StepState.Type

export const StepName = Schema.Literal("validate_catalog", "incus_index", "finalize_publish")
export type StepName = typeof StepName.Type

/** The steps of every job, with their sequence numbers (10, 20, 30 — not 1, 2, 3). */
export const PUBLISH_STEPS: ReadonlyArray<{ readonly name: StepName; readonly sequence: number }> = [
  { name: "validate_catalog", sequence: 10 },
  { name: "incus_index", sequence: 20 },
  { name: "finalize_publish", sequence: 30 }
]

export const PublishJobStep = Schema.Struct({
  id: UuidString,
  job_id: UuidString,
  name: StepName,
  state: StepState,
  blocking: Schema.Boolean,
  sequence: Schema.Number,
  attempt_count: Schema.Number,
  started_at: Schema.optional(TimestampString),
  finished_at: Schema.optional(TimestampString),
  failure_message: Schema.optional(Schema.String),
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "PublishJobStep" })
export type PublishJobStep = typeof PublishJobStep.Type

export const PublishJob = Schema.Struct({
  id: UuidString,
  /** Same as `id`: the tutorial reads `.job_id`. */
  job_id: UuidString,
  version_id: UuidString,
  image_name: Schema.String,
  version: Schema.String,
  state: JobState,
  started_at: Schema.optional(TimestampString),
  finished_at: Schema.optional(TimestampString),
  failure_message: Schema.optional(Schema.String),
  /** Name of the first failed step, when the job failed. */
  failed_step: Schema.optional(StepName),
  /** Same as `failure_message`. */
  reason: Schema.optional(Schema.String),
  created_at: TimestampString,
  updated_at: TimestampString,
  steps: Schema.Array(PublishJobStep)
}).annotations({ identifier: "PublishJob" })
export type PublishJob = typeof PublishJob.Type

// ---------------------------------------------------------------------------------
// Rows.
// ---------------------------------------------------------------------------------

export interface JobRow {
  readonly id: string
  readonly version_id: string
  readonly state: JobState
  readonly started_at: Date | null
  readonly finished_at: Date | null
  readonly failure_message: string | null
  readonly created_at: Date
  readonly updated_at: Date
  /** Joined from the version and its image. */
  readonly image_name: string
  readonly version: string
}

export interface StepRow {
  readonly id: string
  readonly job_id: string
  readonly name: StepName
  readonly state: StepState
  readonly blocking: boolean
  readonly sequence: number
  readonly attempt_count: number
  readonly started_at: Date | null
  readonly finished_at: Date | null
  readonly failure_message: string | null
  readonly created_at: Date
  readonly updated_at: Date
}

export interface JobWithSteps {
  readonly job: JobRow
  readonly steps: ReadonlyArray<StepRow>
}

/** A step a worker has just claimed: the lease it holds and what the step works on. */
export interface ClaimedStep {
  readonly id: string
  readonly job_id: string
  readonly name: StepName
  readonly sequence: number
  /** Fencing token together with the worker id: a re-claim increments it. */
  readonly attempt_count: number
  readonly trace_parent: string | null
  readonly version_id: string
  readonly image_name: string
  readonly version: string
}

/**
 * One Simple Streams row computed by `incus_index` (incus_projection_items): an Incus
 * image, i.e. a metadata tarball and a root file (VM disk or container rootfs).
 */
export interface ProjectionRow {
  readonly artifactId: string
  readonly versionId: string
  readonly metadataAttachmentId: string
  readonly metadataPath: string
  readonly rootFtype: RootFtype
  readonly rootPath: string
  readonly metadataSha256: string
  readonly metadataSizeBytes: number
  readonly rootSha256: string
  readonly rootSizeBytes: number
  /** sha256(metadata ‖ root): the image's fingerprint. */
  readonly combinedSha256: string
}

// ---------------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------------

const optionalTimestamp = <K extends string>(key: K, value: Date | null) =>
  (value === null ? {} : { [key]: formatTimestamp(value) }) as Partial<Record<K, string>>

export const stepToWire = (row: StepRow): PublishJobStep => ({
  id: row.id,
  job_id: row.job_id,
  name: row.name,
  state: row.state,
  blocking: row.blocking,
  sequence: row.sequence,
  attempt_count: row.attempt_count,
  ...optionalTimestamp("started_at", row.started_at),
  ...optionalTimestamp("finished_at", row.finished_at),
  ...(row.failure_message !== null ? { failure_message: row.failure_message } : {}),
  created_at: formatTimestamp(row.created_at),
  updated_at: formatTimestamp(row.updated_at)
})

export const jobToWire = ({ job, steps }: JobWithSteps): PublishJob => {
  const ordered = [...steps].sort((a, b) => a.sequence - b.sequence)
  const failedStep = job.state === "failed" ? ordered.find((s) => s.state === "failed") : undefined
  return {
    id: job.id,
    job_id: job.id,
    version_id: job.version_id,
    image_name: job.image_name,
    version: job.version,
    state: job.state,
    ...optionalTimestamp("started_at", job.started_at),
    ...optionalTimestamp("finished_at", job.finished_at),
    ...(job.failure_message !== null ? { failure_message: job.failure_message, reason: job.failure_message } : {}),
    ...(failedStep !== undefined ? { failed_step: failedStep.name } : {}),
    created_at: formatTimestamp(job.created_at),
    updated_at: formatTimestamp(job.updated_at),
    steps: ordered.map(stepToWire)
  }
}
