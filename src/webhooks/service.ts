import { SqlClient } from "@effect/sql"
import { Context, Duration, Effect, Layer, Option } from "effect"
import type { Principal } from "../auth/schema.js"
import { AppConfig } from "../platform/config/config.js"
import { freshUuid } from "../platform/fresh-ids.js"
import { InvalidRequest } from "../platform/http/problem.js"
import { makeWakeSignal, type WakeSignal } from "../platform/worker.js"
import { checkTargetUrl } from "./address-guard.js"
import type { WebhookUrlRefused } from "./errors.js"
import { DeliveryInProgress, DeliveryNotFound, WebhookDisabled, WebhookNotFound } from "./errors.js"
import { recordEvent } from "./outbox.js"
import { WebhookRepository } from "./repository.js"
import type { SubscriptionPatch } from "./repository.js"
import {
  type CreateWebhookRequest,
  type DeliveryId,
  type DeliveryListKey,
  type DeliveryPageRow,
  type DeliveryRow,
  type EventId,
  type EventRow,
  PING_EVENT_TYPE,
  SubscriptionId,
  type SubscriptionPageRow,
  type SubscriptionRow,
  type UpdateWebhookRequest,
  type WebhookListKey
} from "./schema.js"
import { generateSecret } from "./signing.js"

/**
 * The rules of webhook subscriptions (issue 14 §2, §4, §6): who may be called (the URL
 * checks), the secret shown once and rotated with a 24 h overlap, pings, the delivery log
 * and redelivery, and the event feed. Sending is the delivery worker's.
 */

/** How long the previous secret keeps signing after a rotation. */
export const SECRET_OVERLAP = Duration.hours(24)

/** Wakes this process's delivery loops (a ping or a redelivery is due at once). */
export class DeliveryWake extends Context.Tag("imgsrv/webhooks/DeliveryWake")<DeliveryWake, WakeSignal>() {}

export const DeliveryWakeLive = Layer.effect(DeliveryWake, makeWakeSignal)

export class Webhooks extends Context.Tag("imgsrv/Webhooks")<Webhooks, {
  readonly create: (
    request: CreateWebhookRequest,
    actor: Principal
  ) => Effect.Effect<SubscriptionRow, WebhookUrlRefused>
  /** At most `limit` subscriptions after the key, oldest first. */
  readonly list: (
    after: Option.Option<WebhookListKey>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<SubscriptionPageRow>>
  readonly get: (id: SubscriptionId) => Effect.Effect<SubscriptionRow, WebhookNotFound>
  readonly update: (
    id: SubscriptionId,
    request: UpdateWebhookRequest
  ) => Effect.Effect<SubscriptionRow, WebhookNotFound | WebhookUrlRefused>
  readonly remove: (id: SubscriptionId) => Effect.Effect<void, WebhookNotFound>
  /** A new secret; the previous one keeps signing for `SECRET_OVERLAP`. */
  readonly rotateSecret: (id: SubscriptionId) => Effect.Effect<SubscriptionRow, WebhookNotFound>
  /** Queues a `webhook.ping` for this subscription only (not ordered behind its other deliveries). */
  readonly ping: (id: SubscriptionId) => Effect.Effect<DeliveryRow, WebhookNotFound | WebhookDisabled>
  /** At most `limit` deliveries of the log after the key, newest first. */
  readonly deliveries: (
    id: SubscriptionId,
    after: Option.Option<DeliveryListKey>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<DeliveryPageRow>, WebhookNotFound>
  readonly redeliver: (
    id: SubscriptionId,
    deliveryId: DeliveryId
  ) => Effect.Effect<DeliveryRow, WebhookNotFound | DeliveryNotFound | DeliveryInProgress | WebhookDisabled>
  /** Public events after `after` (an event id) in order; 400 when `after` names no event. */
  readonly feed: (after: EventId | undefined, limit: number) => Effect.Effect<ReadonlyArray<EventRow>, InvalidRequest>
}>() {}

/** What is logged of a target: scheme and host only (paths and queries may carry tokens). */
export const loggableTarget = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}`
  } catch {
    return "(invalid url)"
  }
}

export const WebhooksLive = Layer.effect(
  Webhooks,
  Effect.gen(function*() {
    const repo = yield* WebhookRepository
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const wake = yield* DeliveryWake
    const allowPrivate = config.webhooks.allowPrivateNetworks

    const find = (id: SubscriptionId) =>
      repo.findSubscription(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new WebhookNotFound({ webhookId: id })),
          onSome: Effect.succeed
        }))
      )

    const dedupe = <A>(values: ReadonlyArray<A>): ReadonlyArray<A> => [...new Set(values)]

    return Webhooks.of({
      create: (request, actor) =>
        Effect.gen(function*() {
          const url = yield* checkTargetUrl(request.url, allowPrivate)
          const row = yield* repo.insertSubscription({
            id: SubscriptionId.make(yield* freshUuid),
            url: url.href,
            eventTypes: dedupe(request.events),
            imageNames: dedupe(request.images ?? []),
            description: request.description ?? null,
            secret: generateSecret(),
            createdBy: actor.id
          })
          yield* Effect.logInfo("webhook subscription created").pipe(
            Effect.annotateLogs({ webhook_id: row.id, target: loggableTarget(row.url), actor: actor.id })
          )
          return row
        }).pipe(Effect.withSpan("webhooks.create")),

      list: (after, limit) => repo.listSubscriptions(after, limit).pipe(Effect.withSpan("webhooks.list")),

      get: (id) => find(id).pipe(Effect.withSpan("webhooks.get")),

      update: (id, request) =>
        Effect.gen(function*() {
          yield* find(id)
          const url = request.url === undefined ? undefined : (yield* checkTargetUrl(request.url, allowPrivate)).href
          const patch: SubscriptionPatch = {
            ...(url !== undefined ? { url } : {}),
            ...(request.events !== undefined ? { eventTypes: dedupe(request.events) } : {}),
            ...(request.images !== undefined ? { imageNames: dedupe(request.images) } : {}),
            ...(request.description !== undefined ? { description: request.description } : {}),
            ...(request.enabled === undefined
              ? {}
              : request.enabled
              ? { enabled: { value: true } as const }
              : { enabled: { value: false, reason: "disabled through the API" } as const })
          }
          const updated = yield* repo.updateSubscription(id, patch)
          if (Option.isNone(updated)) return yield* new WebhookNotFound({ webhookId: id })
          if (request.enabled === true) yield* wake.wake
          return updated.value
        }).pipe(Effect.withSpan("webhooks.update")),

      remove: (id) =>
        Effect.gen(function*() {
          const deleted = yield* repo.deleteSubscription(id)
          if (!deleted) return yield* new WebhookNotFound({ webhookId: id })
          yield* Effect.logInfo("webhook subscription deleted").pipe(Effect.annotateLogs({ webhook_id: id }))
        }).pipe(Effect.withSpan("webhooks.delete")),

      rotateSecret: (id) =>
        Effect.gen(function*() {
          const rotated = yield* repo.rotateSecret(id, generateSecret(), Duration.toMillis(SECRET_OVERLAP))
          if (Option.isNone(rotated)) return yield* new WebhookNotFound({ webhookId: id })
          yield* Effect.logInfo("webhook secret rotated").pipe(Effect.annotateLogs({ webhook_id: id }))
          return rotated.value
        }).pipe(Effect.withSpan("webhooks.rotateSecret")),

      ping: (id) =>
        Effect.gen(function*() {
          const subscription = yield* find(id)
          if (!subscription.enabled) return yield* new WebhookDisabled({ webhookId: id })
          const event = yield* recordEvent(sql, {
            type: PING_EVENT_TYPE,
            imageName: null,
            subscriptionId: id,
            data: { webhook_id: id, url: `/v1/webhooks/${id}` }
          })
          const delivery = yield* repo.findDeliveryOfEvent(id, event.id)
          // Disabled (or deleted) between the two statements.
          if (Option.isNone(delivery)) return yield* new WebhookDisabled({ webhookId: id })
          yield* wake.wake
          return delivery.value
        }).pipe(Effect.withSpan("webhooks.ping")),

      deliveries: (id, after, limit) =>
        find(id).pipe(
          Effect.zipRight(repo.listDeliveries(id, after, limit)),
          Effect.withSpan("webhooks.deliveries")
        ),

      redeliver: (id, deliveryId) =>
        Effect.gen(function*() {
          const subscription = yield* find(id)
          if (!subscription.enabled) return yield* new WebhookDisabled({ webhookId: id })
          const requeued = yield* repo.requeueDelivery(id, deliveryId)
          if (Option.isSome(requeued)) {
            yield* wake.wake
            return requeued.value
          }
          const existing = yield* repo.findDelivery(id, deliveryId)
          if (Option.isNone(existing)) return yield* new DeliveryNotFound({ webhookId: id, deliveryId })
          return yield* new DeliveryInProgress({ deliveryId })
        }).pipe(Effect.withSpan("webhooks.redeliver")),

      feed: (after, limit) =>
        Effect.gen(function*() {
          if (after !== undefined && !(yield* repo.feedEventExists(after))) {
            return yield* new InvalidRequest({ detail: `after: no event ${after}` })
          }
          return yield* repo.feed(after, limit)
        }).pipe(Effect.withSpan("webhooks.feed"))
    })
  })
)
