import { HttpApiBuilder, HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { CurrentPrincipal } from "../auth/middleware.js"
import { decodeParam } from "../contract/params.js"
import { cursorField, linkNext, paginate } from "../platform/http/pagination.js"
import { apiOf } from "../platform/http/routes.js"
import { EventsGroup, WebhooksGroup } from "./api.js"
import {
  DeliveryId,
  DeliveryListKey,
  type DeliveryPageRow,
  deliveryToWire,
  EventIdParam,
  eventToWire,
  FEED_LIMIT,
  SubscriptionId,
  type SubscriptionPageRow,
  WebhookListKey,
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
      const idOf = (path: { readonly webhook_id: string }) => decodeParam(SubscriptionId, path.webhook_id)
      return handlers
        .handle("createWebhook", ({ payload }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            const created = yield* webhooks.create(payload, actor)
            yield* noStore
            return webhookWithSecret(created)
          }))
        .handle("listWebhooks", () =>
          Effect.map(
            paginate(
              WebhookListKey,
              (row: SubscriptionPageRow) => ({ created_at: row.created_at_key, id: row.id }),
              webhooks.list
            ),
            ({ items, next_cursor }) => ({ webhooks: items.map(webhookToWire), ...cursorField(next_cursor) })
          ))
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
        .handle("listWebhookDeliveries", ({ path }) =>
          Effect.gen(function*() {
            const id = yield* idOf(path)
            const { items, next_cursor } = yield* paginate(
              DeliveryListKey,
              (row: DeliveryPageRow) => ({
                created_at: row.created_at_key,
                event_tx: row.event_tx_key,
                event_seq: row.event_seq_key
              }),
              (after, limit) => webhooks.deliveries(id, after, limit)
            )
            return { deliveries: items.map(deliveryToWire), ...cursorField(next_cursor) }
          }))
        .handle("redeliverWebhook", ({ path }) =>
          Effect.gen(function*() {
            const id = yield* idOf(path)
            const deliveryId = yield* decodeParam(DeliveryId, path.delivery_id)
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
          // One more than asked says whether more events follow now (then `Link: rel="next"`).
          const fetched = yield* webhooks.feed(after, limit + 1)
          const rows = fetched.slice(0, limit)
          const last = rows[rows.length - 1]
          const nextAfter = last?.id ?? after
          // The feed keeps its own keyset cursor, `after` (an event id, also `next_after` on an
          // empty page, so a tailing client resumes where it is): the link carries it.
          if (fetched.length > limit) yield* linkNext({ after: last!.id, limit: String(limit) })
          return { events: rows.map(eventToWire), ...(nextAfter !== undefined ? { next_after: nextAfter } : {}) }
        }))
    })
)
