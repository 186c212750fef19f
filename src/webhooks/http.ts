import { HttpApiBuilder, HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { CurrentPrincipal } from "../auth/middleware.js"
import { decodeParam } from "../contract/params.js"
import { apiOf } from "../platform/http/routes.js"
import { EventsGroup, WebhooksGroup } from "./api.js"
import {
  DELIVERY_LOG_LIMIT,
  DeliveryIdParam,
  deliveryToWire,
  EventIdParam,
  eventToWire,
  FEED_LIMIT,
  WebhookIdParam,
  webhookToWire,
  webhookWithSecret
} from "./schema.js"
import { Webhooks } from "./service.js"

/** Handlers of `/v1/webhooks/*` and `/v1/events`: validate parameters, call the service, encode. */

/** Responses carrying a signing secret must never be stored by a cache. */
const noStore = HttpApp.appendPreResponseHandler((_request, response) =>
  Effect.succeed(HttpServerResponse.setHeader(response, "cache-control", "no-store"))
)

const limitOf = (text: string | undefined, bounds: { readonly default: number; readonly max: number }) =>
  text === undefined
    ? Effect.succeed(bounds.default)
    : decodeParam(
      Schema.NumberFromString.pipe(
        Schema.filter((n) => Number.isInteger(n) && n >= 1 && n <= bounds.max, {
          message: () => `limit must be a whole number between 1 and ${bounds.max}`
        })
      ).annotations({ message: () => `limit must be a whole number between 1 and ${bounds.max}` }),
      text
    )

export const WebhooksHandlersLive = HttpApiBuilder.group(
  apiOf(WebhooksGroup),
  "webhooks",
  (handlers) =>
    Effect.gen(function*() {
      const webhooks = yield* Webhooks
      const idOf = (path: { readonly webhook_id: string }) => decodeParam(WebhookIdParam, path.webhook_id)
      return handlers
        .handle("createWebhook", ({ payload }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            const created = yield* webhooks.create(payload, actor)
            yield* noStore
            return webhookWithSecret(created)
          }))
        .handle("listWebhooks", () => Effect.map(webhooks.list, (rows) => ({ webhooks: rows.map(webhookToWire) })))
        .handle("getWebhook", ({ path }) => idOf(path).pipe(Effect.flatMap(webhooks.get), Effect.map(webhookToWire)))
        .handle("updateWebhook", ({ path, payload }) =>
          idOf(path).pipe(
            Effect.flatMap((id) => webhooks.update(id, payload)),
            Effect.map(webhookToWire)
          ))
        .handle("deleteWebhook", ({ path }) => idOf(path).pipe(Effect.flatMap(webhooks.remove)))
        .handle("rotateWebhookSecret", ({ path }) =>
          Effect.gen(function*() {
            const rotated = yield* webhooks.rotateSecret(yield* idOf(path))
            yield* noStore
            return webhookWithSecret(rotated)
          }))
        .handle("pingWebhook", ({ path }) => idOf(path).pipe(Effect.flatMap(webhooks.ping), Effect.map(deliveryToWire)))
        .handle("listWebhookDeliveries", ({ path, urlParams }) =>
          Effect.gen(function*() {
            const id = yield* idOf(path)
            const limit = yield* limitOf(urlParams.limit, DELIVERY_LOG_LIMIT)
            const rows = yield* webhooks.deliveries(id, limit)
            return { deliveries: rows.map(deliveryToWire) }
          }))
        .handle("redeliverWebhook", ({ path }) =>
          Effect.gen(function*() {
            const id = yield* idOf(path)
            const deliveryId = yield* decodeParam(DeliveryIdParam, path.delivery_id)
            return deliveryToWire(yield* webhooks.redeliver(id, deliveryId))
          }))
    })
)

export const EventsHandlersLive = HttpApiBuilder.group(
  apiOf(EventsGroup),
  "events",
  (handlers) =>
    Effect.gen(function*() {
      const webhooks = yield* Webhooks
      return handlers.handle("listEvents", ({ urlParams }) =>
        Effect.gen(function*() {
          const after = urlParams.after === undefined ? undefined : yield* decodeParam(EventIdParam, urlParams.after)
          const limit = yield* limitOf(urlParams.limit, FEED_LIMIT)
          const rows = yield* webhooks.feed(after, limit)
          const last = rows[rows.length - 1]
          const nextAfter = last?.id ?? after
          return { events: rows.map(eventToWire), ...(nextAfter !== undefined ? { next_after: nextAfter } : {}) }
        }))
    })
)
