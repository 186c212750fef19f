import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { RequireAuthManage, RequireContentWrite } from "../auth/api.js"
import { InvalidPageRequest, PageParams } from "../contract/pagination.js"
import { UuidString } from "../contract/params.js"
import { InvalidRequest, Problem } from "../contract/problem.js"
import { DeliveryInProgress, DeliveryNotFound, WebhookDisabled, WebhookNotFound, WebhookUrlRefused } from "./errors.js"
import {
  CreateWebhookRequest,
  Delivery,
  DeliveryList,
  EventPage,
  UpdateWebhookRequest,
  Webhook,
  WebhookList,
  WebhookWithSecret
} from "./schema.js"

/**
 * `/v1/webhooks/*` (subscriptions, the delivery log; `auth.manage`) and `/v1/events` (the
 * feed; `content.write`). Path and query parameters are plain strings validated by the
 * handlers, so a malformed one is a 400 that names it (after 401/403).
 */

const WebhookPath = Schema.Struct({ webhook_id: UuidString })
const DeliveryPath = Schema.Struct({ webhook_id: UuidString, delivery_id: UuidString })

export class WebhooksGroup extends HttpApiGroup.make("webhooks")
  // Every route needs `auth.manage`; on the group, it still runs before any decoding (401/403 first).
  .middleware(RequireAuthManage)
  // Any route answers 400 to a malformed path, query, body or header (api.md §1.9).
  .addError(Problem(InvalidRequest))
  .add(
    HttpApiEndpoint.post("createWebhook", "/v1/webhooks")
      .setPayload(CreateWebhookRequest)
      .addSuccess(WebhookWithSecret, { status: 201 })
      .addError(Problem(WebhookUrlRefused))
      .annotate(
        OpenApi.Description,
        "Subscribes an http(s) URL to event types (optionally only about some images). The answer holds the " +
          "signing secret (`whsec_…`) — the only time it is shown. Loopback, private, link-local and metadata " +
          "addresses are refused unless --webhook-allow-private-networks."
      )
  )
  .add(
    HttpApiEndpoint.get("listWebhooks", "/v1/webhooks")
      .setUrlParams(PageParams)
      .addSuccess(WebhookList)
      .addError(Problem(InvalidPageRequest))
      .annotate(
        OpenApi.Description,
        "Every subscription, oldest first (secrets are never listed). Paginated like `GET /v1/images`."
      )
  )
  .add(
    HttpApiEndpoint.get("getWebhook", "/v1/webhooks/:webhook_id")
      .setPath(WebhookPath)
      .addSuccess(Webhook)
      .addError(Problem(WebhookNotFound))
  )
  .add(
    HttpApiEndpoint.patch("updateWebhook", "/v1/webhooks/:webhook_id")
      .setPath(WebhookPath)
      .setPayload(UpdateWebhookRequest)
      .addSuccess(Webhook)
      .addError(Problem(WebhookUrlRefused))
      .addError(Problem(WebhookNotFound))
      .annotate(
        OpenApi.Description,
        "Changes the URL, event types, image filter or description; `enabled: true` re-enables a disabled " +
          "subscription, `false` pauses it (its deliveries wait)."
      )
  )
  .add(
    HttpApiEndpoint.del("deleteWebhook", "/v1/webhooks/:webhook_id")
      .setPath(WebhookPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(WebhookNotFound))
      .annotate(OpenApi.Description, "Deletes the subscription and its delivery log.")
  )
  .add(
    HttpApiEndpoint.post("rotateWebhookSecret", "/v1/webhooks/:webhook_id/rotate-secret")
      .setPath(WebhookPath)
      .addSuccess(WebhookWithSecret)
      .addError(Problem(WebhookNotFound))
      .annotate(
        OpenApi.Description,
        "A new signing secret, shown once. For 24 h deliveries carry two signatures: one with the new secret, " +
          "one with the previous one. No body."
      )
  )
  .add(
    HttpApiEndpoint.post("pingWebhook", "/v1/webhooks/:webhook_id/ping")
      .setPath(WebhookPath)
      .addSuccess(Delivery, { status: 202 })
      .addError(Problem(WebhookNotFound))
      .addError(Problem(WebhookDisabled))
      .annotate(
        OpenApi.Description,
        "Queues a `webhook.ping` event for this subscription only (not behind its other deliveries). No body."
      )
  )
  .add(
    HttpApiEndpoint.get("listWebhookDeliveries", "/v1/webhooks/:webhook_id/deliveries")
      .setPath(WebhookPath)
      .setUrlParams(PageParams)
      .addSuccess(DeliveryList)
      .addError(Problem(InvalidPageRequest))
      .addError(Problem(WebhookNotFound))
      .annotate(
        OpenApi.Description,
        "The delivery log, newest first: status, attempts, last response code or error, next attempt. " +
          "Paginated like `GET /v1/images`."
      )
  )
  .add(
    HttpApiEndpoint.post("redeliverWebhook", "/v1/webhooks/:webhook_id/deliveries/:delivery_id/redeliver")
      .setPath(DeliveryPath)
      .addSuccess(Delivery, { status: 202 })
      .addError(Problem(WebhookNotFound))
      .addError(Problem(DeliveryNotFound))
      .addError(Problem(DeliveryInProgress))
      .addError(Problem(WebhookDisabled))
      .annotate(
        OpenApi.Description,
        "Sends the delivery again now, with the same webhook-id and a fresh retry window (a delivered or failed " +
          "one is sent out of order). 409 while it is being sent. No body."
      )
  )
  .annotate(OpenApi.Description, "Webhook subscriptions and their deliveries")
{}

export class EventsGroup extends HttpApiGroup.make("events")
  // Any route answers 400 to a malformed path, query, body or header (api.md §1.9).
  .addError(Problem(InvalidRequest))
  .add(
    HttpApiEndpoint.get("listEvents", "/v1/events")
      .middleware(RequireContentWrite)
      .setUrlParams(Schema.Struct({ after: Schema.optional(Schema.String), limit: Schema.optional(Schema.String) }))
      .addSuccess(EventPage)
      .annotate(
        OpenApi.Description,
        "Events in order, oldest first, after the event `after` (its id; omitted: from the start), at most " +
          "`limit` (default 100, at most 1000). Pass `next_after` back to continue; an empty page means caught up. " +
          "When more events follow already, `Link: <…>; rel=\"next\"` names the next page."
      )
  )
  .annotate(OpenApi.Description, "The event feed")
{}
