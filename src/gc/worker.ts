import { Effect } from "effect"
import { AppConfig } from "../platform/config/config.js"
import { workerLayer } from "../platform/worker.js"
import { GarbageCollector } from "./service.js"

/**
 * The background collector: one run at start-up and then every `--gc-interval`, on every
 * replica with `--gc-enabled`; the run lock makes one of them collect and the others skip.
 * A failed run is retried with the `--gc-error-backoff…` settings (its tombstones are finished first).
 */

export const GC_JOB = "gc"

export const GcWorkerLive = workerLayer(Effect.gen(function*() {
  const config = yield* AppConfig
  const collector = yield* GarbageCollector
  return {
    name: GC_JOB,
    nodeName: config.nodeName,
    settings: config.gc.worker,
    // Always `idle`: the loop then waits the interval before the next run.
    runOnce: () =>
      collector.run({ dryRun: false, trigger: "schedule" }).pipe(
        Effect.catchTag("GcAlreadyRunning", () => Effect.void),
        Effect.as("idle" as const)
      )
  }
}))
