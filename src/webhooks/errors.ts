import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Data, Schema } from "effect"

/**
 * Expected failures of the webhooks API: unknown subscriptions or deliveries are 404, a
 * target URL imgsrv will not call is 400, an action the subscription's state does not
 * allow is 409. Each `message` is the problem `detail`.
 */

export class WebhookNotFound extends Schema.TaggedError<WebhookNotFound>()(
  "WebhookNotFound",
  { webhookId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `webhook ${this.webhookId} not found`
  }
}

export class DeliveryNotFound extends Schema.TaggedError<DeliveryNotFound>()(
  "DeliveryNotFound",
  { webhookId: Schema.String, deliveryId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `delivery ${this.deliveryId} of webhook ${this.webhookId} not found`
  }
}

/** The target URL is not one imgsrv calls (scheme, credentials, or a refused address). */
export class WebhookUrlRefused extends Schema.TaggedError<WebhookUrlRefused>()(
  "WebhookUrlRefused",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `url refused: ${this.reason}`
  }
}

/** Ping and redeliver need an enabled subscription (deliveries of a disabled one are not sent). */
export class WebhookDisabled extends Schema.TaggedError<WebhookDisabled>()(
  "WebhookDisabled",
  { webhookId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `webhook ${this.webhookId} is disabled; enable it first (PATCH {"enabled": true})`
  }
}

/** A delivery being sent right now cannot be re-queued (its attempt will be recorded). */
export class DeliveryInProgress extends Schema.TaggedError<DeliveryInProgress>()(
  "DeliveryInProgress",
  { deliveryId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `delivery ${this.deliveryId} is being sent; try again once its attempt is recorded`
  }
}

/** Why a delivery attempt did not reach a 2xx (recorded as the delivery's `last_error`). */
export class SendFailed extends Data.TaggedError("SendFailed")<{
  readonly kind: "refused" | "timeout" | "network" | "http"
  readonly detail: string
  readonly status?: number
}> {
  override get message() {
    return this.detail
  }
}
