import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { ImageName } from "../catalog/schema.js"
import { decodeParam } from "../contract/params.js"
import { apiOf } from "../platform/http/routes.js"
import { RetentionGroup } from "./api.js"
import { previewToWire, rulesToWire } from "./schema.js"
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
          nameOf(path).pipe(
            Effect.flatMap((name) =>
              retention.preview(name).pipe(Effect.map((plan) => previewToWire({ image: name, ...plan })))
            )
          ))
    })
)
