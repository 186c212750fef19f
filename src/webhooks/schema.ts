import { Schema } from "effect"
import { ImageName } from "../catalog/schema.js"
import { nextCursorField, PgTimestampText } from "../contract/pagination.js"
import { nonBlank, strictBody, TEXT_LIMITS, UuidParam, UuidString } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"

/**
 * Events, webhook subscriptions and deliveries (issue 14, docs/webhooks.md): the wire
 * shapes, the rows, and the event types with the payload each one carries.
 */

// ---------------------------------------------------------------------------------
// Event types
// ---------------------------------------------------------------------------------

/**
 * Every event type a subscription can ask for. Emitted where the change is committed:
 * - `upload.ready`, `upload.failed`: the CAS promotion worker (uploads/promotion-worker.ts), and
 *   `upload.ready` also when an upload begins ready (its digest already trusted, uploads/service.ts);
 * - `version.published`, `publish_job.failed`: the publish worker (publishing/publish-worker.ts);
 * - `alias.updated` (created or moved), `alias.deleted`: the catalog (catalog/service.ts);
 * - `version.yanked`, `version.unyanked`, `version.retired`: the catalog (catalog/service.ts,
 *   `yankLocked`/`retireLocked`, also used by the retention worker, retention/service.ts);
 * - `blob.collected`: the garbage collector (gc/repository.ts), with the deletion of the blob row.
 */
export const EVENT_TYPES = [
  "upload.ready",
  "upload.failed",
  "version.published",
  "publish_job.failed",
  "alias.updated",
  "alias.deleted",
  "version.yanked",
  "version.unyanked",
  "version.retired",
  "blob.collected"
] as const

export const EventType = Schema.Literal(...EVENT_TYPES).annotations({
  identifier: "EventType",
  message: () => ({ message: `event type must be one of ${EVENT_TYPES.join(", ")}`, override: true })
})
export type EventType = typeof EventType.Type

/** The type of the test event `POST /v1/webhooks/{id}/ping` sends (never in the feed). */
export const PING_EVENT_TYPE = "webhook.ping"

/** An event as the outbox receives it (`recordEvent`): what happened, to what, and its public fields. */
export interface NewEvent {
  readonly type: EventType | typeof PING_EVENT_TYPE
  /** The image the event is about, for subscription filters (none for uploads and blobs). */
  readonly imageName: string | null
  /** The JSON `data` of the event: the resource's public fields and its `url`. */
  readonly data: Readonly<Record<string, unknown>>
  /** Only for pings: the one subscription the event is for. */
  readonly subscriptionId?: string
}

// ---------------------------------------------------------------------------------
// Events on the wire: the webhook body and the feed entries are the same object.
// ---------------------------------------------------------------------------------

export const EventJson = Schema.Struct({
  id: UuidString,
  type: Schema.String.annotations({ description: "One of the event types, or `webhook.ping`." }),
  timestamp: TimestampString,
  data: Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
    description: "The resource's public fields and its API `url` (a path on this server); see docs/webhooks.md."
  })
}).annotations({ identifier: "Event" })
export type EventJson = typeof EventJson.Type

export const EventPage = Schema.Struct({
  events: Schema.Array(EventJson),
  /** The id to pass as `after` for the next page (the last event's id; the cursor itself when empty). */
  next_after: Schema.optional(UuidString)
}).annotations({ identifier: "EventPage" })
export type EventPage = typeof EventPage.Type

export interface EventRow {
  readonly id: string
  readonly type: string
  readonly payload: Readonly<Record<string, unknown>>
  readonly occurred_at: Date
}

export const eventToWire = (row: EventRow): EventJson => ({
  id: row.id,
  type: row.type,
  timestamp: formatTimestamp(row.occurred_at),
  data: row.payload
})

export const EventIdParam = UuidParam("after")

export const FEED_LIMIT = { default: 100, max: 1000 } as const

// ---------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------

export const WebhookIdParam = UuidParam("webhook id")
export const DeliveryIdParam = UuidParam("delivery id")

const WebhookUrl = nonBlank("url", TEXT_LIMITS.url)

const EventTypes = Schema.Array(EventType).pipe(
  Schema.minItems(1, { message: () => "events must name at least one event type" }),
  Schema.maxItems(EVENT_TYPES.length * 2)
)

const ImageNames = Schema.Array(ImageName).pipe(Schema.maxItems(100, { message: () => "images: at most 100 names" }))

export const CreateWebhookRequest = Schema.Struct({
  url: WebhookUrl,
  events: EventTypes,
  images: Schema.optional(ImageNames),
  description: Schema.optional(nonBlank("description", TEXT_LIMITS.short))
}).annotations({ ...strictBody, identifier: "CreateWebhookRequest" })
export type CreateWebhookRequest = typeof CreateWebhookRequest.Type

export const UpdateWebhookRequest = Schema.Struct({
  url: Schema.optional(WebhookUrl),
  events: Schema.optional(EventTypes),
  images: Schema.optional(ImageNames),
  description: Schema.optional(Schema.NullOr(nonBlank("description", TEXT_LIMITS.short))),
  /** `true` re-enables a disabled subscription (its failure run starts over); `false` pauses it. */
  enabled: Schema.optional(Schema.Boolean)
}).annotations({ ...strictBody, identifier: "UpdateWebhookRequest" })
export type UpdateWebhookRequest = typeof UpdateWebhookRequest.Type

export const Webhook = Schema.Struct({
  id: UuidString,
  url: Schema.String,
  events: Schema.Array(EventType),
  images: Schema.Array(Schema.String),
  description: Schema.optional(Schema.String),
  enabled: Schema.Boolean,
  disabled_reason: Schema.optional(Schema.String),
  disabled_at: Schema.optional(TimestampString),
  /** Since when every attempt has failed (absent after a success). */
  failing_since: Schema.optional(TimestampString),
  /** While set, deliveries carry a second signature made with the previous secret. */
  previous_secret_expires_at: Schema.optional(TimestampString),
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "Webhook" })
export type Webhook = typeof Webhook.Type

/** The answer of create and rotate-secret: the only time the secret is shown. */
export const WebhookWithSecret = Schema.Struct({
  ...Webhook.fields,
  secret: Schema.String.annotations({
    description: "Standard Webhooks signing secret (`whsec_<base64>`); shown only in this response."
  })
}).annotations({ identifier: "WebhookWithSecret" })
export type WebhookWithSecret = typeof WebhookWithSecret.Type

export const WebhookList = Schema.Struct({ webhooks: Schema.Array(Webhook), next_cursor: nextCursorField })
  .annotations({ identifier: "WebhookList" })
/** Sort key of the subscription list (oldest first): `created_at` as PostgreSQL text, then id. */
export const WebhookListKey = Schema.Struct({ created_at: PgTimestampText, id: Schema.UUID })
export type WebhookListKey = typeof WebhookListKey.Type

export interface SubscriptionRow {
  readonly id: string
  readonly url: string
  readonly event_types: ReadonlyArray<string>
  readonly image_names: ReadonlyArray<string>
  readonly description: string | null
  readonly secret: string
  readonly previous_secret: string | null
  readonly previous_secret_expires_at: Date | null
  readonly enabled: boolean
  readonly disabled_reason: string | null
  readonly disabled_at: Date | null
  readonly failing_since: Date | null
  readonly created_at: Date
  readonly updated_at: Date
}

/** A listed subscription with its `created_at` as PostgreSQL text (microseconds), the cursor's sort key. */
export interface SubscriptionPageRow extends SubscriptionRow {
  readonly created_at_key: string
}

export const webhookToWire = (row: SubscriptionRow): Webhook => ({
  id: row.id,
  url: row.url,
  events: row.event_types as ReadonlyArray<EventType>,
  images: row.image_names,
  ...(row.description !== null ? { description: row.description } : {}),
  enabled: row.enabled,
  ...(row.disabled_reason !== null ? { disabled_reason: row.disabled_reason } : {}),
  ...(row.disabled_at !== null ? { disabled_at: formatTimestamp(row.disabled_at) } : {}),
  ...(row.failing_since !== null ? { failing_since: formatTimestamp(row.failing_since) } : {}),
  ...(row.previous_secret_expires_at !== null
    ? { previous_secret_expires_at: formatTimestamp(row.previous_secret_expires_at) }
    : {}),
  created_at: formatTimestamp(row.created_at),
  updated_at: formatTimestamp(row.updated_at)
})

export const webhookWithSecret = (row: SubscriptionRow): WebhookWithSecret => ({
  ...webhookToWire(row),
  secret: row.secret
})

// ---------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------

export const DeliveryStatus = Schema.Literal("pending", "sending", "delivered", "failed")
export type DeliveryStatus = typeof DeliveryStatus.Type

export const Delivery = Schema.Struct({
  id: UuidString,
  webhook_id: UuidString,
  event_id: UuidString,
  event_type: Schema.String,
  status: DeliveryStatus,
  attempts: Schema.Number,
  last_attempt_at: Schema.optional(TimestampString),
  last_response_status: Schema.optional(Schema.Number),
  last_error: Schema.optional(Schema.String),
  next_attempt_at: Schema.optional(TimestampString),
  delivered_at: Schema.optional(TimestampString),
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "WebhookDelivery" })
export type Delivery = typeof Delivery.Type

export const DeliveryList = Schema.Struct({ deliveries: Schema.Array(Delivery), next_cursor: nextCursorField })
  .annotations({ identifier: "WebhookDeliveryList" })
/**
 * Sort key of the delivery log (newest first): `created_at` as PostgreSQL text, then the
 * event's position (transaction id and sequence, as text: both exceed a JavaScript number's
 * exact range in principle).
 */
export const DeliveryListKey = Schema.Struct({
  created_at: PgTimestampText,
  event_tx: Schema.String.pipe(Schema.pattern(/^\d{1,20}$/)),
  event_seq: Schema.String.pipe(Schema.pattern(/^\d{1,19}$/))
})
export type DeliveryListKey = typeof DeliveryListKey.Type

export interface DeliveryRow {
  readonly id: string
  readonly subscription_id: string
  readonly event_id: string
  readonly event_type: string
  readonly status: DeliveryStatus
  readonly attempts: number
  readonly last_attempt_at: Date | null
  readonly last_response_status: number | null
  readonly last_error: string | null
  readonly next_attempt_at: Date | null
  readonly delivered_at: Date | null
  readonly created_at: Date
  readonly updated_at: Date
}

/** A delivery of the log with its sort key as text (see `DeliveryListKey`). */
export interface DeliveryPageRow extends DeliveryRow {
  readonly created_at_key: string
  readonly event_tx_key: string
  readonly event_seq_key: string
}

export const deliveryToWire = (row: DeliveryRow): Delivery => ({
  id: row.id,
  webhook_id: row.subscription_id,
  event_id: row.event_id,
  event_type: row.event_type,
  status: row.status,
  attempts: row.attempts,
  ...(row.last_attempt_at !== null ? { last_attempt_at: formatTimestamp(row.last_attempt_at) } : {}),
  ...(row.last_response_status !== null ? { last_response_status: row.last_response_status } : {}),
  ...(row.last_error !== null ? { last_error: row.last_error } : {}),
  ...(row.status === "pending" && row.next_attempt_at !== null
    ? { next_attempt_at: formatTimestamp(row.next_attempt_at) }
    : {}),
  ...(row.delivered_at !== null ? { delivered_at: formatTimestamp(row.delivered_at) } : {}),
  created_at: formatTimestamp(row.created_at),
  updated_at: formatTimestamp(row.updated_at)
})

/** A claimed delivery with what sending it needs (the worker's unit of work). */
export interface ClaimedDelivery {
  readonly id: string
  readonly subscription_id: string
  readonly event_id: string
  readonly attempts: number
  readonly locked_by: string
  readonly retry_until: Date
  /** The database's clock at the claim (retry decisions use one clock for every replica). */
  readonly db_now: Date
  readonly url: string
  readonly secret: string
  readonly previous_secret: string | null
  readonly previous_secret_expires_at: Date | null
  readonly event_type: string
  readonly payload: Readonly<Record<string, unknown>>
  readonly occurred_at: Date
}

/** Free-text bound of `last_error` and `disabled_reason` (they are shown in listings). */
export const boundedReason = (text: string, max = 500): string => {
  const flat = text.trim().replace(/\s+/g, " ")
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}
