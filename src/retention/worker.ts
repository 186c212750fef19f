import { Effect } from "effect"
import { AppConfig } from "../platform/config/config.js"
import { workerLayer } from "../platform/worker.js"
import { initRetentionMetrics, Retention } from "./service.js"

/**
 * The retention loop (docs/lifecycle.md): every replica runs it; a run claims one due
 * image's rules FOR UPDATE SKIP LOCKED and holds that lock for its one transaction, so two
 * replicas never apply one image's rules at once, and a replica that dies mid-run leaves
 * nothing half done (the transaction rolls back; the rules stay due for the next claim).
 */
export const RETENTION_JOB = "retention"

export const RetentionWorkerLive = workerLayer(Effect.gen(function*() {
  const config = yield* AppConfig
  const retention = yield* Retention
  if (config.retention.worker.enabled) yield* initRetentionMetrics
  return {
    name: RETENTION_JOB,
    nodeName: config.nodeName,
    settings: config.retention.worker,
    runOnce: () => retention.runOnce
  }
}))
