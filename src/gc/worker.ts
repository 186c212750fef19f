import { Duration, Effect } from "effect"
import { AppConfig } from "../platform/config/config.js"
import { workerLayer } from "../platform/worker.js"
import { GarbageCollector } from "./service.js"

/**
 * The background collector: one run at start-up and then every `--gc-interval`, on every
 * replica with `--gc-enabled`; the run lock makes one of them collect and the others skip.
 * A failed run is retried with the runner's backoff (its tombstones are finished first).
 */

export const GC_JOB = "gc"

export const GcWorkerLive = workerLayer(Effect.gen(function*() {
  const config = yield* AppConfig
  const collector = yield* GarbageCollector
  return {
    name: GC_JOB,
    nodeName: config.nodeName,
    settings: {
      enabled: config.gc.enabled,
      pollInterval: config.gc.interval,
      errorBackoff: Duration.seconds(5),
      errorBackoffMax: Duration.min(config.gc.interval, Duration.minutes(5)),
      circuitBreakerFailures: 10,
      circuitBreakerCooldown: Duration.minutes(5),
      // Unused: the run holds an advisory lock, not a lease.
      lease: Duration.minutes(1)
    },
    // Always `idle`: the loop then waits the interval before the next run.
    runOnce: () =>
      collector.run({ dryRun: false, trigger: "schedule" }).pipe(
        Effect.catchTag("GcAlreadyRunning", () => Effect.void),
        Effect.as("idle" as const)
      )
  }
}))
