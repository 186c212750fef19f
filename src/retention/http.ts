import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { ImageName } from "../catalog/schema.js"
import { decodeParam } from "../contract/params.js"
import { formatTimestamp } from "../contract/timestamp.js"
import { apiOf } from "../platform/http/routes.js"
import { RetentionGroup } from "./api.js"
import { rulesToWire } from "./schema.js"
import { Retention } from "./service.js"

/** Handlers of the retention group: validate the name, call the service, encode. */
export const RetentionHandlersLive = HttpApiBuilder.group(
  apiOf(RetentionGroup),
  "retention",
  (handlers) =>
    Effect.gen(function*() {
      const retention = yield* Retention
      const nameOf = (path: { readonly name: string }) => decodeParam(ImageName, path.name)
      return handlers
        .handle("putRetention", ({ path, payload }) =>
          nameOf(path).pipe(
            Effect.flatMap((name) => retention.putRules(name, payload)),
            Effect.map(({ image, rules }) => rulesToWire(image.name, rules))
          ))
        .handle("getRetention", ({ path }) =>
          nameOf(path).pipe(
            Effect.flatMap(retention.getRules),
            Effect.map(({ image, rules }) => rulesToWire(image.name, rules))
          ))
        .handle("previewRetention", ({ path }) =>
          Effect.gen(function*() {
            const name = yield* nameOf(path)
            const plan = yield* retention.preview(name)
            return {
              image: name,
              yank: plan.yank.map(({ reason, version }) => ({
                version: version.version,
                published_at: formatTimestamp(version.published_at!),
                reason
              })),
              retire: plan.retire.map((version) => ({
                version: version.version,
                yanked_at: formatTimestamp(version.yanked_at!)
              }))
            }
          }))
    })
)
