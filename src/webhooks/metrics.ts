import { Effect, Layer, Metric, Option } from "effect"
import { latencyBoundaries, registerCollector, type Sample } from "../platform/observability/metrics.js"
import { databaseFailure } from "../platform/storage/sql-errors.js"
import { WebhookRepository } from "./repository.js"

const DELIVERY_STATUSES = ["pending", "sending", "delivered", "failed"] as const

/**
 * Webhook delivery metrics. Labels are bounded (results, outcomes, statuses) — never a
 * subscription id, a URL or an event id.
 */

export const deliveryAttempts = Metric.counter("imgsrv_webhook_delivery_attempts_total", {
  description:
    "Delivery attempts by result: success (2xx), http_error, timeout, network_error, refused (address check).",
  incremental: true
})

export const deliveryOutcomes = Metric.counter("imgsrv_webhook_delivery_outcomes_total", {
  description:
    "Delivery attempts by what became of the delivery: delivered, retry (scheduled again), failed (gave up), lease_lost.",
  incremental: true
})

export const subscriptionsDisabled = Metric.counter("imgsrv_webhook_subscriptions_disabled_total", {
  description: "Subscriptions disabled after failing for --webhook-disable-after.",
  incremental: true
})

export const attemptDuration = Metric.histogram(
  "imgsrv_webhook_delivery_attempt_duration_seconds",
  latencyBoundaries,
  "Time of one delivery attempt (connect, request, bounded read), by result."
)

/**
 * Queue depth and age, computed from PostgreSQL at scrape time: deliveries by status
 * (`pending` is the queue) and the age of the oldest delivery not yet delivered or failed.
 */
export const WebhookMetricsLive = Layer.effectDiscard(Effect.gen(function*() {
  const repo = yield* WebhookRepository
  yield* registerCollector(
    "webhooks",
    Effect.gen(function*() {
      // A failing database drops these series from the scrape (the collector's failure), as before.
      const [statuses, oldest] = yield* Effect.all([repo.deliveriesByStatus, repo.oldestPendingAge], {
        concurrency: 2
      }).pipe(databaseFailure)
      const samples: Array<Sample> = [
        // Every status, at 0 when it has no rows: an empty queue is a depth of 0, not a gap.
        ...DELIVERY_STATUSES.map((status): Sample => ({
          name: "imgsrv_webhook_deliveries",
          help: "Webhook deliveries by status (pending is the queue depth).",
          type: "gauge",
          labels: { status },
          value: statuses.find((r) => r.label === status)?.value ?? 0
        })),
        ...Option.toArray(oldest).map((age): Sample => ({
          name: "imgsrv_webhook_oldest_pending_age_seconds",
          help: "Age of the oldest webhook delivery of an enabled subscription that is pending or being sent.",
          type: "gauge",
          value: age
        }))
      ]
      return samples
    })
  )
}))
