import { Schema } from "effect"
import type { ArtifactId, AttachmentId } from "../catalog/schema.js"
import { VersionId } from "../catalog/schema.js"
import { optionalTimestamp, parsedTimestamp, present } from "../contract/optional-members.js"
import { UuidId, UuidString } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"
import type { RootFtype } from "../streams/schema.js"

/**
 * Publish jobs and their steps (api.md §2.1 PublishJob/PublishJobStep, §2.9, §3.3).
 * A job is created by `POST .../publish` with three blocking steps that the publish
 * worker runs strictly in sequence order.
 */

/** A publish job's id; decoding the path parameter refuses anything else with "publish job id must be a UUID". */
export const JobId = UuidId("JobId", "publish job id")
export type JobId = typeof JobId.Type
export const StepId = UuidId("StepId", "publish step id")
export type StepId = typeof StepId.Type

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

// Rows as the repository decodes them (`SqlSchema`), and the domain type of each entity:
// a row that does not match its schema is a defect (code and database disagree).

export const JobRow = Schema.Struct({
  id: JobId,
  version_id: VersionId,
  state: JobState,
  started_at: Schema.NullOr(Schema.DateFromSelf),
  finished_at: Schema.NullOr(Schema.DateFromSelf),
  failure_message: Schema.NullOr(Schema.String),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  /** Joined from the version and its image. */
  image_name: Schema.String,
  version: Schema.String
})
export type JobRow = typeof JobRow.Type

export const StepRow = Schema.Struct({
  id: StepId,
  job_id: JobId,
  name: StepName,
  state: StepState,
  blocking: Schema.Boolean,
  sequence: Schema.Number,
  attempt_count: Schema.Number,
  started_at: Schema.NullOr(Schema.DateFromSelf),
  finished_at: Schema.NullOr(Schema.DateFromSelf),
  failure_message: Schema.NullOr(Schema.String),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})
export type StepRow = typeof StepRow.Type

export const JobWithSteps = Schema.Struct({
  job: JobRow,
  steps: Schema.Array(StepRow)
})
export type JobWithSteps = typeof JobWithSteps.Type

/** A step a worker has just claimed: the lease it holds and what the step works on. */
export const ClaimedStep = Schema.Struct({
  id: StepId,
  job_id: JobId,
  name: StepName,
  sequence: Schema.Number,
  /** Fencing token together with the worker id: a re-claim increments it. */
  attempt_count: Schema.Number,
  trace_parent: Schema.NullOr(Schema.String),
  version_id: VersionId,
  image_name: Schema.String,
  version: Schema.String
})
export type ClaimedStep = typeof ClaimedStep.Type

/**
 * One Simple Streams row computed by `incus_index` (incus_projection_items): an Incus
 * image, i.e. a metadata tarball and a root file (VM disk or container rootfs).
 */
export interface ProjectionRow {
  readonly artifactId: ArtifactId
  readonly versionId: VersionId
  readonly metadataAttachmentId: AttachmentId
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
// Encoding: the wire shapes declared as transformations of the domain types.
// ---------------------------------------------------------------------------------

/** The wire step of a step row (`failure_message`, `started_at`, `finished_at` absent when null). */
export const PublishJobStepFromRow = Schema.transform(StepRow, PublishJobStep, {
  strict: true,
  decode: (row) => ({
    id: row.id,
    job_id: row.job_id,
    name: row.name,
    state: row.state,
    blocking: row.blocking,
    sequence: row.sequence,
    attempt_count: row.attempt_count,
    ...optionalTimestamp("started_at", row.started_at),
    ...optionalTimestamp("finished_at", row.finished_at),
    ...present("failure_message", row.failure_message),
    created_at: formatTimestamp(row.created_at),
    updated_at: formatTimestamp(row.updated_at)
  }),
  encode: (wire) => ({
    id: StepId.make(wire.id),
    job_id: JobId.make(wire.job_id),
    name: wire.name,
    state: wire.state,
    blocking: wire.blocking,
    sequence: wire.sequence,
    attempt_count: wire.attempt_count,
    started_at: parsedTimestamp(wire.started_at),
    finished_at: parsedTimestamp(wire.finished_at),
    failure_message: wire.failure_message ?? null,
    created_at: new Date(wire.created_at),
    updated_at: new Date(wire.updated_at)
  })
})

/**
 * The wire job of a job with its steps: steps in sequence order, `failed_step` the first
 * failed one of a failed job, `reason` a copy of `failure_message`, `job_id` of `id`.
 */
export const PublishJobFromRows = Schema.transform(
  Schema.Struct({ job: JobRow, steps: Schema.Array(PublishJobStepFromRow) }),
  PublishJob,
  {
    strict: true,
    decode: ({ job, steps }) => {
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
        ...present("failure_message", job.failure_message),
        ...present("reason", job.failure_message),
        ...present("failed_step", failedStep?.name ?? null),
        created_at: formatTimestamp(job.created_at),
        updated_at: formatTimestamp(job.updated_at),
        steps: ordered
      }
    },
    encode: (wire) => ({
      job: {
        id: JobId.make(wire.id),
        version_id: VersionId.make(wire.version_id),
        image_name: wire.image_name,
        version: wire.version,
        state: wire.state,
        started_at: parsedTimestamp(wire.started_at),
        finished_at: parsedTimestamp(wire.finished_at),
        failure_message: wire.failure_message ?? null,
        created_at: new Date(wire.created_at),
        updated_at: new Date(wire.updated_at)
      },
      steps: wire.steps
    })
  }
)

/** A job as the API and the webhook events show it. */
export const jobToWire: (job: JobWithSteps) => PublishJob = Schema.decodeSync(PublishJobFromRows)
