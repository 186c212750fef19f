import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { decodeVersionPath } from "../catalog/schema.js"
import { decodeParam } from "../contract/params.js"
import { apiOf } from "../platform/http/routes.js"
import { PublishGroup } from "./api.js"
import { JobId, jobToWire } from "./schema.js"
import { Publishing } from "./service.js"

/** Handlers of the publish group: validate path parameters, call the service, encode. */
export const PublishHandlersLive = HttpApiBuilder.group(
  apiOf(PublishGroup),
  "publish",
  (handlers) =>
    Effect.gen(function*() {
      const publishing = yield* Publishing
      return handlers
        .handle("publish", ({ path }) =>
          decodeVersionPath(path).pipe(
            Effect.flatMap(([name, version]) => publishing.publish(name, version)),
            Effect.map(jobToWire)
          ))
        .handle("getPublishJob", ({ path }) =>
          decodeParam(JobId, path.job_id).pipe(
            Effect.flatMap(publishing.getJob),
            Effect.map(jobToWire)
          ))
        .handle("retryPublishJob", ({ path }) =>
          decodeParam(JobId, path.job_id).pipe(
            Effect.flatMap(publishing.retry),
            Effect.map(jobToWire)
          ))
        .handle("abandonPublishJob", ({ path }) =>
          decodeParam(JobId, path.job_id).pipe(
            Effect.flatMap(publishing.abandon),
            Effect.map(jobToWire)
          ))
    })
)
