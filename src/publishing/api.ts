import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { RequireContentWrite } from "../auth/api.js"
import { VersionPath } from "../catalog/api.js"
import { VersionNotFound } from "../catalog/errors.js"
import { UuidString } from "../contract/params.js"
import { InvalidRequest, Problem } from "../contract/problem.js"
import {
  PublishJobNotAbandonable,
  PublishJobNotFound,
  PublishJobNotRetryable,
  PublishPreconditionFailed
} from "./errors.js"
import { PublishJob } from "./schema.js"

/** Publish and publish jobs (api.md §2.9). Every route needs `content.write`. */
export const PublishGroup = HttpApiGroup.make("publish")
  // Every route needs `content.write`; on the group, it still runs before any decoding (401/403 first).
  .middleware(RequireContentWrite)
  // Any route answers 400 to a malformed path, query, body or header (api.md §1.9).
  .addError(Problem(InvalidRequest))
  .add(
    HttpApiEndpoint.post("publish", "/v1/images/:name/versions/:version/publish")
      .setPath(VersionPath)
      .addSuccess(PublishJob, { status: 202 })
      .addError(Problem(VersionNotFound))
      .addError(Problem(PublishPreconditionFailed))
      .annotate(
        OpenApi.Description,
        "Freezes a publishable draft and queues its publish job (validate_catalog, incus_index, " +
          "finalize_publish). 412 when the version is not a draft, has no artifacts, or cites a blob " +
          "that is not verified with exactly the declared size. No body."
      )
  )
  .add(
    HttpApiEndpoint.get("getPublishJob", "/v1/publish-jobs/:job_id")
      .setPath(Schema.Struct({ job_id: UuidString }))
      .addSuccess(PublishJob)
      .addError(Problem(PublishJobNotFound))
      .annotate(OpenApi.Description, "A publish job and its steps (poll until succeeded or failed).")
  )
  .add(
    HttpApiEndpoint.post("retryPublishJob", "/v1/publish-jobs/:job_id/retry")
      .setPath(Schema.Struct({ job_id: UuidString }))
      .addSuccess(PublishJob, { status: 202 })
      .addError(Problem(PublishJobNotFound))
      .addError(Problem(PublishJobNotRetryable))
      .annotate(
        OpenApi.Description,
        "Re-queues a failed job from its first failed step; steps that succeeded are not re-run. No body."
      )
  )
  .add(
    HttpApiEndpoint.post("abandonPublishJob", "/v1/publish-jobs/:job_id/abandon")
      .setPath(Schema.Struct({ job_id: UuidString }))
      .addSuccess(PublishJob)
      .addError(Problem(PublishJobNotFound))
      .addError(Problem(PublishJobNotAbandonable))
      .annotate(
        OpenApi.Description,
        "Gives up on a failed job: the job becomes abandoned and its version a draft again, editable and " +
          "publishable anew. 409 unless the job failed. No body."
      )
  )
  .annotate(OpenApi.Description, "Durable publishing")
