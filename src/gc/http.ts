import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { apiOf } from "../platform/http/routes.js"
import { GcGroup } from "./api.js"
import { reportToWire } from "./schema.js"
import { GarbageCollector } from "./service.js"

/** Handler of `POST /v1/admin/gc`: call the collector, encode its report. */
export const GcHandlersLive = HttpApiBuilder.group(
  apiOf(GcGroup),
  "gc",
  (handlers) =>
    Effect.gen(function*() {
      const collector = yield* GarbageCollector
      return handlers.handle("runGc", ({ payload }) =>
        collector.run({ dryRun: payload.dry_run, trigger: "api" }).pipe(
          Effect.catchTag("BlobStoreError", Effect.die),
          Effect.map(reportToWire)
        ))
    })
)
