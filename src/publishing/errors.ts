import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Data, Schema } from "effect"

/** Publishing refused synchronously: the version is not a draft, or its manifest cannot be published (412). */
export class PublishPreconditionFailed extends Schema.TaggedError<PublishPreconditionFailed>()(
  "PublishPreconditionFailed",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `publish failed precondition: ${this.reason}`
  }
}

export class PublishJobNotFound extends Schema.TaggedError<PublishJobNotFound>()(
  "PublishJobNotFound",
  { jobId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `publish not found: publish job ${this.jobId} not found`
  }
}

/** Retry needs a failed job whose version is still publishing and a failed step (412). */
export class PublishJobNotRetryable extends Schema.TaggedError<PublishJobNotRetryable>()(
  "PublishJobNotRetryable",
  { jobId: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `publish failed precondition: job ${this.jobId} cannot be retried: ${this.reason}`
  }
}

/**
 * A step could not do its work; the message becomes the step's and the job's
 * `failure_message` (visible to content writers through `GET /v1/publish-jobs/{id}`).
 */
export class StepFailed extends Data.TaggedError("StepFailed")<{ readonly message: string }> {}

/** Only a failed job can be abandoned (409). */
export class PublishJobNotAbandonable extends Schema.TaggedError<PublishJobNotAbandonable>()(
  "PublishJobNotAbandonable",
  { jobId: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `publish conflict: job ${this.jobId} cannot be abandoned: ${this.reason}`
  }
}
