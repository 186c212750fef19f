import { Layer } from "effect"
import { WebhookDeliveryWorkerLive } from "./delivery-worker.js"
import { EventsHandlersLive, WebhooksHandlersLive } from "./http.js"
import { WebhookMetricsLive } from "./metrics.js"
import { WebhookRepositoryLive } from "./repository.js"
import { DeliveryWakeLive, WebhooksLive } from "./service.js"

/**
 * How the webhooks concern plugs into the app (`src/app.ts`). Both halves need
 * `DeliveryWake` — the same instance, so a ping wakes this process's delivery loops —
 * plus the SqlClient and AppConfig. Events are recorded by the other concerns with
 * `recordEvent` (outbox.ts), in their own transactions; nothing here is needed for that.
 */

/** The `webhooks` and `events` handler groups with their service. */
export const WebhooksApiLive = Layer.merge(WebhooksHandlersLive, EventsHandlersLive).pipe(
  Layer.provide(WebhooksLive),
  Layer.provide(WebhookRepositoryLive)
)

/** Background work: the delivery loops (when enabled) and the scrape-time gauges. */
export const WebhooksBackgroundLive = Layer.merge(WebhookDeliveryWorkerLive, WebhookMetricsLive).pipe(
  Layer.provide(WebhookRepositoryLive)
)

/** The wake signal both halves share (one instance). */
export const WebhooksSharedLive = DeliveryWakeLive

export { DeliveryWakeLive }
