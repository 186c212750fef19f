import { Schema } from "effect"
import { ImageName } from "../catalog/schema.js"
import { optionalTimestamp, parsedTimestamp, present } from "../contract/optional-members.js"
import { nextCursorField, PgTimestampText } from "../contract/pagination.js"
import { nonBlank, strictBody, TEXT_LIMITS, UuidId, UuidString } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"

/**
 * Events, webhook subscriptions and deliveries (issue 14, docs/webhooks.md): the wire
 * shapes, the rows, and the event types with the payload each one carries.
 */

// ---------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------

/** A webhook subscription (`/v1/webhooks/{webhook_id}`). */
export const SubscriptionId = UuidId("SubscriptionId", "webhook id")
export type SubscriptionId = typeof SubscriptionId.Type
/** An event: the feed's `after` cursor and every delivery's `webhook-id` header. */
export const EventId = UuidId("EventId", "event id")
export type EventId = typeof EventId.Type
/** One delivery of an event to one subscription. */
export const DeliveryId = UuidId("DeliveryId", "delivery id")
export type DeliveryId = typeof DeliveryId.Type

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
  readonly subscriptionId?: SubscriptionId
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

/** An event as the feed and the delivery worker read it (`events`). */
export const EventRow = Schema.Struct({
  id: EventId,
  type: Schema.String,
  payload: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  occurred_at: Schema.DateFromSelf
})
export type EventRow = typeof EventRow.Type

/** The wire event (webhook body and feed entry) of an event row. */
export const EventFromRow = Schema.transform(EventRow, EventJson, {
  strict: true,
  decode: (row) => ({ id: row.id, type: row.type, timestamp: formatTimestamp(row.occurred_at), data: row.payload }),
  encode: (wire) => ({
    id: EventId.make(wire.id),
    type: wire.type,
    payload: wire.data,
    occurred_at: new Date(wire.timestamp)
  })
})

export const eventToWire: (row: EventRow) => EventJson = Schema.decodeSync(EventFromRow)

/** The feed's `after` cursor: an event id, refused as "after must be a UUID". */
export const EventIdParam = UuidId("EventId", "after")

export const FEED_LIMIT = { default: 100, max: 1000 } as const

// ---------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------

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

/** A subscription row (`webhook_subscriptions`): the domain type of a subscription. */
export const SubscriptionRow = Schema.Struct({
  id: SubscriptionId,
  url: Schema.String,
  event_types: Schema.Array(EventType),
  image_names: Schema.Array(Schema.String),
  description: Schema.NullOr(Schema.String),
  secret: Schema.String,
  previous_secret: Schema.NullOr(Schema.String),
  previous_secret_expires_at: Schema.NullOr(Schema.DateFromSelf),
  enabled: Schema.Boolean,
  disabled_reason: Schema.NullOr(Schema.String),
  disabled_at: Schema.NullOr(Schema.DateFromSelf),
  failing_since: Schema.NullOr(Schema.DateFromSelf),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})
export type SubscriptionRow = typeof SubscriptionRow.Type

/** A listed subscription with its `created_at` as PostgreSQL text (microseconds), the cursor's sort key. */
export const SubscriptionPageRow = Schema.Struct({ ...SubscriptionRow.fields, created_at_key: Schema.String })
export type SubscriptionPageRow = typeof SubscriptionPageRow.Type

/** What the API shows of a subscription (never its secrets). */
const ShownSubscription = SubscriptionRow.pick(
  "id",
  "url",
  "event_types",
  "image_names",
  "description",
  "enabled",
  "disabled_reason",
  "disabled_at",
  "failing_since",
  "previous_secret_expires_at",
  "created_at",
  "updated_at"
)

const shownSubscription = (row: typeof ShownSubscription.Type): Webhook => ({
  id: row.id,
  url: row.url,
  events: row.event_types,
  images: row.image_names,
  ...present("description", row.description),
  enabled: row.enabled,
  ...present("disabled_reason", row.disabled_reason),
  ...optionalTimestamp("disabled_at", row.disabled_at),
  ...optionalTimestamp("failing_since", row.failing_since),
  ...optionalTimestamp("previous_secret_expires_at", row.previous_secret_expires_at),
  created_at: formatTimestamp(row.created_at),
  updated_at: formatTimestamp(row.updated_at)
})

const subscriptionShown = (wire: Webhook): typeof ShownSubscription.Type => ({
  id: SubscriptionId.make(wire.id),
  url: wire.url,
  event_types: wire.events,
  image_names: wire.images,
  description: wire.description ?? null,
  enabled: wire.enabled,
  disabled_reason: wire.disabled_reason ?? null,
  disabled_at: parsedTimestamp(wire.disabled_at),
  failing_since: parsedTimestamp(wire.failing_since),
  previous_secret_expires_at: parsedTimestamp(wire.previous_secret_expires_at),
  created_at: new Date(wire.created_at),
  updated_at: new Date(wire.updated_at)
})

/** The wire subscription of a row: unset fields absent, the secrets never shown. */
export const WebhookFromRow = Schema.transform(ShownSubscription, Webhook, {
  strict: true,
  decode: shownSubscription,
  encode: subscriptionShown
})

/** The answer of create and rotate-secret: the subscription with its (current) secret. */
export const WebhookWithSecretFromRow = Schema.transform(
  Schema.Struct({ ...ShownSubscription.fields, secret: Schema.String }),
  WebhookWithSecret,
  {
    strict: true,
    decode: (row) => ({ ...shownSubscription(row), secret: row.secret }),
    encode: (wire) => ({ ...subscriptionShown(wire), secret: wire.secret })
  }
)

export const webhookToWire: (row: SubscriptionRow) => Webhook = Schema.decodeSync(WebhookFromRow)

export const webhookWithSecret: (row: SubscriptionRow) => WebhookWithSecret = Schema.decodeSync(
  WebhookWithSecretFromRow
)

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

/** A delivery with its event's type (`webhook_deliveries` joined with `events`). */
export const DeliveryRow = Schema.Struct({
  id: DeliveryId,
  subscription_id: SubscriptionId,
  event_id: EventId,
  event_type: Schema.String,
  status: DeliveryStatus,
  attempts: Schema.Number,
  last_attempt_at: Schema.NullOr(Schema.DateFromSelf),
  last_response_status: Schema.NullOr(Schema.Number),
  last_error: Schema.NullOr(Schema.String),
  next_attempt_at: Schema.NullOr(Schema.DateFromSelf),
  delivered_at: Schema.NullOr(Schema.DateFromSelf),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})
export type DeliveryRow = typeof DeliveryRow.Type

/** A delivery of the log with its sort key as text (see `DeliveryListKey`). */
export const DeliveryPageRow = Schema.Struct({
  ...DeliveryRow.fields,
  created_at_key: Schema.String,
  event_tx_key: Schema.String,
  event_seq_key: Schema.String
})
export type DeliveryPageRow = typeof DeliveryPageRow.Type

/** The wire delivery of a row: `webhook_id` is the subscription; `next_attempt_at` only while pending. */
export const DeliveryFromRow = Schema.transform(DeliveryRow, Delivery, {
  strict: true,
  decode: (row) => ({
    id: row.id,
    webhook_id: row.subscription_id,
    event_id: row.event_id,
    event_type: row.event_type,
    status: row.status,
    attempts: row.attempts,
    ...optionalTimestamp("last_attempt_at", row.last_attempt_at),
    ...present("last_response_status", row.last_response_status),
    ...present("last_error", row.last_error),
    ...optionalTimestamp("next_attempt_at", row.status === "pending" ? row.next_attempt_at : null),
    ...optionalTimestamp("delivered_at", row.delivered_at),
    created_at: formatTimestamp(row.created_at),
    updated_at: formatTimestamp(row.updated_at)
  }),
  encode: (wire) => ({
    id: DeliveryId.make(wire.id),
    subscription_id: SubscriptionId.make(wire.webhook_id),
    event_id: EventId.make(wire.event_id),
    event_type: wire.event_type,
    status: wire.status,
    attempts: wire.attempts,
    last_attempt_at: parsedTimestamp(wire.last_attempt_at),
    last_response_status: wire.last_response_status ?? null,
    last_error: wire.last_error ?? null,
    next_attempt_at: parsedTimestamp(wire.next_attempt_at),
    delivered_at: parsedTimestamp(wire.delivered_at),
    created_at: new Date(wire.created_at),
    updated_at: new Date(wire.updated_at)
  })
})

export const deliveryToWire: (row: DeliveryRow) => Delivery = Schema.decodeSync(DeliveryFromRow)

/** A claimed delivery with what sending it needs (the worker's unit of work). */
export const ClaimedDelivery = Schema.Struct({
  id: DeliveryId,
  subscription_id: SubscriptionId,
  event_id: EventId,
  attempts: Schema.Number,
  locked_by: Schema.String,
  retry_until: Schema.DateFromSelf,
  /** The database's clock at the claim (retry decisions use one clock for every replica). */
  db_now: Schema.DateFromSelf,
  url: Schema.String,
  secret: Schema.String,
  previous_secret: Schema.NullOr(Schema.String),
  previous_secret_expires_at: Schema.NullOr(Schema.DateFromSelf),
  event_type: Schema.String,
  payload: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  occurred_at: Schema.DateFromSelf
})
export type ClaimedDelivery = typeof ClaimedDelivery.Type

/** Free-text bound of `last_error` and `disabled_reason` (they are shown in listings). */
export const boundedReason = (text: string, max = 500): string => {
  const flat = text.trim().replace(/\s+/g, " ")
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}
