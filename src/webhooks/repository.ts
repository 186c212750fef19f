import { SqlClient, SqlSchema } from "@effect/sql"
import type { SqlError, Statement } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { dieOnSqlError } from "../platform/storage/sql-errors.js"
import type { EventType } from "./schema.js"
import {
  ClaimedDelivery,
  type DeliveryId,
  type DeliveryListKey,
  DeliveryPageRow,
  DeliveryRow,
  type EventId,
  EventRow,
  type SubscriptionId,
  SubscriptionPageRow,
  SubscriptionRow,
  type WebhookListKey
} from "./schema.js"

/**
 * SQL of events (the feed), webhook subscriptions and deliveries (the log and the work
 * queue). No rules here: the service and the delivery worker decide what to write. Rows
 * are decoded with their schemas; every method dies on infrastructure failure (a failing
 * database, a row its schema refuses) — none has an expected constraint failure to translate.
 *
 * "Stable" events: only those whose writing transaction is older than every transaction
 * still running (`tx < pg_snapshot_xmin(pg_current_snapshot())`), read in (tx, seq)
 * order — see migrations/0007_events_webhooks.sql for why.
 */

type Sql<A> = Effect.Effect<A>

export interface SubscriptionPatch {
  readonly url?: string
  readonly eventTypes?: ReadonlyArray<EventType>
  readonly imageNames?: ReadonlyArray<string>
  /** undefined: unchanged; null: cleared. */
  readonly description?: string | null
  /** Enabling clears the disabled reason and the failure run; disabling records `disabledReason`. */
  readonly enabled?: { readonly value: true } | { readonly value: false; readonly reason: string }
}

export interface AttemptFailure {
  readonly responseStatus: number | null
  readonly error: string
  /** Pending again after `delayMillis`, or `failed` for good (null). */
  readonly retryDelayMillis: number | null
}

const LabelledCount = Schema.Struct({ label: Schema.String, value: Schema.Number })
export type LabelledCount = typeof LabelledCount.Type

/** What an UPDATE … RETURNING id answers when it matched its row. */
const IdRow = Schema.Struct({ id: Schema.String })
const FoundRow = Schema.Struct({ found: Schema.Boolean })
const AgeRow = Schema.Struct({ age: Schema.NullOr(Schema.Number) })
const FailureRun = Schema.Struct({ failing_since: Schema.DateFromSelf, now: Schema.DateFromSelf })

export class WebhookRepository extends Context.Tag("imgsrv/WebhookRepository")<WebhookRepository, {
  readonly insertSubscription: (s: {
    readonly id: SubscriptionId
    readonly url: string
    readonly eventTypes: ReadonlyArray<EventType>
    readonly imageNames: ReadonlyArray<string>
    readonly description: string | null
    readonly secret: string
    readonly createdBy: string
  }) => Sql<SubscriptionRow>
  /** At most `limit` subscriptions after the key, oldest first (keyset). */
  readonly listSubscriptions: (
    after: Option.Option<WebhookListKey>,
    limit: number
  ) => Sql<ReadonlyArray<SubscriptionPageRow>>
  readonly findSubscription: (id: SubscriptionId) => Sql<Option.Option<SubscriptionRow>>
  readonly updateSubscription: (id: SubscriptionId, patch: SubscriptionPatch) => Sql<Option.Option<SubscriptionRow>>
  readonly deleteSubscription: (id: SubscriptionId) => Sql<boolean>
  /** New current secret; the old one signs beside it for `overlapMillis`. */
  readonly rotateSecret: (
    id: SubscriptionId,
    secret: string,
    overlapMillis: number
  ) => Sql<Option.Option<SubscriptionRow>>

  /** At most `limit` deliveries of the subscription after the key, newest first (keyset). */
  readonly listDeliveries: (
    subscriptionId: SubscriptionId,
    after: Option.Option<DeliveryListKey>,
    limit: number
  ) => Sql<ReadonlyArray<DeliveryPageRow>>
  readonly findDelivery: (subscriptionId: SubscriptionId, deliveryId: DeliveryId) => Sql<Option.Option<DeliveryRow>>
  readonly findDeliveryOfEvent: (subscriptionId: SubscriptionId, eventId: EventId) => Sql<Option.Option<DeliveryRow>>
  /**
   * Due now, outside the per-endpoint order, with a fresh retry window; None when there is
   * no such delivery or it is being sent.
   */
  readonly requeueDelivery: (
    subscriptionId: SubscriptionId,
    deliveryId: DeliveryId
  ) => Sql<Option.Option<DeliveryRow>>

  /**
   * Claims the next deliverable delivery (`FOR UPDATE SKIP LOCKED` plus a lease): due
   * (or its lease ran out), its subscription enabled, its event stable, and — when it is
   * ordered — no earlier ordered delivery of the same subscription still pending or
   * being sent. Starts its retry window on the first attempt.
   */
  readonly claim: (workerId: string, leaseMillis: number, windowMillis: number) => Sql<Option.Option<ClaimedDelivery>>
  /** Pushes the lease forward; false when the claim is no longer ours. */
  readonly renew: (claim: ClaimedDelivery, leaseMillis: number) => Sql<boolean>
  /** Delivered; the subscription's failure run ends. False when the claim was lost. */
  readonly recordDelivered: (claim: ClaimedDelivery, responseStatus: number) => Sql<boolean>
  /**
   * The attempt failed: retried later or failed for good, and the subscription's failure
   * run starts (if it had not). Returns when that run started and the database's now;
   * None when the claim was lost.
   */
  readonly recordFailedAttempt: (
    claim: ClaimedDelivery,
    failure: AttemptFailure
  ) => Sql<Option.Option<{ readonly failingSince: Date; readonly now: Date }>>
  readonly disableSubscription: (id: SubscriptionId, reason: string) => Sql<void>

  /** Whether an event of the public feed has this id. */
  readonly feedEventExists: (id: EventId) => Sql<boolean>
  /** Stable public events after `after` (or from the start), in order. */
  readonly feed: (after: EventId | undefined, limit: number) => Sql<ReadonlyArray<EventRow>>

  // Scrape-time figures.
  readonly deliveriesByStatus: Sql<ReadonlyArray<LabelledCount>>
  /**
   * Seconds since the oldest pending (or in-flight) delivery of an enabled subscription was
   * queued (a disabled one's wait on purpose); None when there is none.
   */
  readonly oldestPendingAge: Sql<Option.Option<number>>
}>() {}

type Query = Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>

/** The rows of `query` as `Result` decodes them; a failing database or a refused row is a defect. */
const all = <A, I>(Result: Schema.Schema<A, I>, query: Query): Sql<ReadonlyArray<A>> =>
  dieOnSqlError(SqlSchema.findAll({ Request: Schema.Void, Result, execute: () => query })(undefined))

/** The first row of `query`, if any, as `Result` decodes it. */
const first = <A, I>(Result: Schema.Schema<A, I>, query: Query): Sql<Option.Option<A>> =>
  dieOnSqlError(SqlSchema.findOne({ Request: Schema.Void, Result, execute: () => query })(undefined))

/** The one row `query` always answers (an aggregate, a RETURNING insert): none at all is a defect. */
const single = <A, I>(Result: Schema.Schema<A, I>, query: Query): Sql<A> =>
  SqlSchema.single({ Request: Schema.Void, Result, execute: () => query })(undefined).pipe(Effect.orDie)

/** Whether a conditional UPDATE/DELETE … RETURNING id matched its row. */
const matched = (query: Query): Sql<boolean> => first(IdRow, query).pipe(Effect.map(Option.isSome))

export const WebhookRepositoryLive = Layer.effect(
  WebhookRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const deliverySelect = (where: Statement.Fragment) =>
      first(
        DeliveryRow,
        sql`
        SELECT d.id, d.subscription_id, d.event_id, e.type AS event_type, d.status, d.attempts, d.last_attempt_at,
               d.last_response_status, d.last_error, d.next_attempt_at, d.delivered_at, d.created_at, d.updated_at
        FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
        WHERE ${where}`
      )

    const claimed = (claim: ClaimedDelivery) =>
      sql`d.id = ${claim.id} AND d.status = 'sending' AND d.locked_by = ${claim.locked_by}
          AND d.attempts = ${claim.attempts}`

    return WebhookRepository.of({
      insertSubscription: (s) =>
        single(
          SubscriptionRow,
          sql`
          INSERT INTO webhook_subscriptions (id, url, event_types, image_names, description, secret, created_by)
          VALUES (${s.id}, ${s.url}, ${s.eventTypes}::text[], ${s.imageNames}::text[], ${s.description},
                  ${s.secret}, ${s.createdBy})
          RETURNING *`
        ),

      listSubscriptions: (after, limit) =>
        all(
          SubscriptionPageRow,
          sql`
          SELECT *, created_at::text AS created_at_key FROM webhook_subscriptions
          WHERE ${
            Option.match(after, {
              onNone: () => sql.literal("TRUE"),
              onSome: (key) => sql`(created_at, id) > (${key.created_at}::timestamptz, ${key.id}::uuid)`
            })
          }
          ORDER BY created_at, id
          LIMIT ${limit}`
        ),

      findSubscription: (id) => first(SubscriptionRow, sql`SELECT * FROM webhook_subscriptions WHERE id = ${id}`),

      updateSubscription: (id, patch) => {
        const enabled = patch.enabled
        return first(
          SubscriptionRow,
          sql`
          UPDATE webhook_subscriptions SET
            url = COALESCE(${patch.url ?? null}, url),
            event_types = COALESCE(${patch.eventTypes ?? null}::text[], event_types),
            image_names = COALESCE(${patch.imageNames ?? null}::text[], image_names),
            description = CASE WHEN ${patch.description !== undefined} THEN ${patch.description ?? null}
                               ELSE description END,
            enabled = COALESCE(${enabled?.value ?? null}::boolean, enabled),
            disabled_reason = CASE WHEN ${enabled === undefined} THEN disabled_reason
                                   WHEN ${enabled?.value === true} THEN NULL
                                   WHEN enabled THEN ${enabled?.value === false ? enabled.reason : null}
                                   ELSE disabled_reason END,
            disabled_at = CASE WHEN ${enabled === undefined} THEN disabled_at
                               WHEN ${enabled?.value === true} THEN NULL
                               WHEN enabled THEN now()
                               ELSE disabled_at END,
            failing_since = CASE WHEN ${enabled?.value === true} THEN NULL ELSE failing_since END,
            updated_at = now()
          WHERE id = ${id}
          RETURNING *`
        )
      },

      deleteSubscription: (id) => matched(sql`DELETE FROM webhook_subscriptions WHERE id = ${id} RETURNING id`),

      rotateSecret: (id, secret, overlapMillis) =>
        first(
          SubscriptionRow,
          sql`
          UPDATE webhook_subscriptions
          SET previous_secret = secret, secret = ${secret},
              previous_secret_expires_at = now() + ${overlapMillis} * interval '1 millisecond', updated_at = now()
          WHERE id = ${id}
          RETURNING *`
        ),

      listDeliveries: (subscriptionId, after, limit) =>
        all(
          DeliveryPageRow,
          sql`
          SELECT d.id, d.subscription_id, d.event_id, e.type AS event_type, d.status, d.attempts, d.last_attempt_at,
                 d.last_response_status, d.last_error, d.next_attempt_at, d.delivered_at, d.created_at, d.updated_at,
                 d.created_at::text AS created_at_key, d.event_tx::text AS event_tx_key,
                 d.event_seq::text AS event_seq_key
          FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
          WHERE d.subscription_id = ${subscriptionId} AND ${
            Option.match(after, {
              onNone: () => sql.literal("TRUE"),
              onSome: (key) =>
                sql`(d.created_at, d.event_tx, d.event_seq)
                < (${key.created_at}::timestamptz, ${key.event_tx}::xid8, ${key.event_seq}::bigint)`
            })
          }
          ORDER BY d.created_at DESC, d.event_tx DESC, d.event_seq DESC
          LIMIT ${limit}`
        ),

      findDelivery: (subscriptionId, deliveryId) =>
        deliverySelect(sql`d.subscription_id = ${subscriptionId} AND d.id = ${deliveryId}`),

      findDeliveryOfEvent: (subscriptionId, eventId) =>
        deliverySelect(sql`d.subscription_id = ${subscriptionId} AND d.event_id = ${eventId}`),

      requeueDelivery: (subscriptionId, deliveryId) =>
        matched(sql`
          UPDATE webhook_deliveries
          SET ordered = CASE WHEN status = 'pending' THEN ordered ELSE false END,
              status = 'pending', next_attempt_at = now(), retry_until = NULL, updated_at = now()
          WHERE subscription_id = ${subscriptionId} AND id = ${deliveryId} AND status <> 'sending'
          RETURNING id`).pipe(
          Effect.flatMap((requeued) => requeued ? deliverySelect(sql`d.id = ${deliveryId}`) : Effect.succeedNone)
        ),

      claim: (workerId, leaseMillis, windowMillis) =>
        first(
          ClaimedDelivery,
          sql`
          WITH next AS (
            SELECT d.id FROM webhook_deliveries d
            JOIN webhook_subscriptions s ON s.id = d.subscription_id
            WHERE s.enabled
              AND ((d.status = 'pending' AND d.next_attempt_at <= now())
                   OR (d.status = 'sending' AND d.lease_expires_at <= now()))
              AND d.event_tx < pg_snapshot_xmin(pg_current_snapshot())
              AND (NOT d.ordered OR NOT EXISTS (
                SELECT 1 FROM webhook_deliveries p
                WHERE p.subscription_id = d.subscription_id AND p.ordered AND p.status IN ('pending', 'sending')
                  AND (p.event_tx, p.event_seq) < (d.event_tx, d.event_seq)
              ))
            ORDER BY d.next_attempt_at, d.event_tx, d.event_seq
            LIMIT 1
            FOR UPDATE OF d SKIP LOCKED
          ), claimed AS (
            UPDATE webhook_deliveries d
            SET status = 'sending', attempts = d.attempts + 1, locked_by = ${workerId},
                lease_expires_at = now() + ${leaseMillis} * interval '1 millisecond',
                retry_until = COALESCE(d.retry_until, now() + ${windowMillis} * interval '1 millisecond'),
                last_attempt_at = now(), updated_at = now()
            FROM next WHERE d.id = next.id
            RETURNING d.id, d.subscription_id, d.event_id, d.attempts, d.locked_by, d.retry_until
          )
          SELECT c.*, now() AS db_now, s.url, s.secret,
                 CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END AS previous_secret,
                 s.previous_secret_expires_at, e.type AS event_type, e.payload, e.occurred_at
          FROM claimed c
          JOIN webhook_subscriptions s ON s.id = c.subscription_id
          JOIN events e ON e.id = c.event_id`
        ),

      renew: (claim, leaseMillis) =>
        matched(sql`
          UPDATE webhook_deliveries d SET lease_expires_at = now() + ${leaseMillis} * interval '1 millisecond'
          WHERE ${claimed(claim)}
          RETURNING d.id`),

      recordDelivered: (claim, responseStatus) =>
        sql.withTransaction(Effect.gen(function*() {
          const delivered = yield* matched(sql`
            UPDATE webhook_deliveries d
            SET status = 'delivered', delivered_at = now(), last_response_status = ${responseStatus},
                last_error = NULL, next_attempt_at = NULL, locked_by = NULL, lease_expires_at = NULL,
                updated_at = now()
            WHERE ${claimed(claim)}
            RETURNING d.id`)
          if (!delivered) return false
          yield* sql`
            UPDATE webhook_subscriptions SET failing_since = NULL
            WHERE id = ${claim.subscription_id} AND failing_since IS NOT NULL`
          return true
        })).pipe(dieOnSqlError),

      recordFailedAttempt: (claim, failure) =>
        sql.withTransaction(Effect.gen(function*() {
          const retry = failure.retryDelayMillis
          const recorded = yield* matched(sql`
            UPDATE webhook_deliveries d
            SET status = ${retry === null ? "failed" : "pending"},
                next_attempt_at = ${retry === null ? null : sql`now() + ${retry} * interval '1 millisecond'`},
                last_response_status = ${failure.responseStatus}, last_error = ${failure.error},
                locked_by = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE ${claimed(claim)}
            RETURNING d.id`)
          if (!recorded) return Option.none()
          const run = yield* first(
            FailureRun,
            sql`
            UPDATE webhook_subscriptions SET failing_since = COALESCE(failing_since, now())
            WHERE id = ${claim.subscription_id}
            RETURNING failing_since, now() AS now`
          )
          return Option.map(run, (row) => ({ failingSince: row.failing_since, now: row.now }))
        })).pipe(dieOnSqlError),

      disableSubscription: (id, reason) =>
        sql`
          UPDATE webhook_subscriptions
          SET enabled = false, disabled_reason = ${reason}, disabled_at = now(), updated_at = now()
          WHERE id = ${id} AND enabled`.pipe(Effect.asVoid, dieOnSqlError),

      feedEventExists: (id) =>
        single(
          FoundRow,
          sql`SELECT EXISTS (SELECT 1 FROM events WHERE id = ${id} AND subscription_id IS NULL) AS found`
        ).pipe(Effect.map((row) => row.found)),

      feed: (after, limit) =>
        all(
          EventRow,
          sql`
          SELECT e.id, e.type, e.payload, e.occurred_at FROM events e
          WHERE e.subscription_id IS NULL
            AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
            ${
            after === undefined
              ? sql``
              : sql`AND (e.tx, e.seq) > (SELECT c.tx, c.seq FROM events c WHERE c.id = ${after})`
          }
          ORDER BY e.tx, e.seq
          LIMIT ${limit}`
        ),

      deliveriesByStatus: all(
        LabelledCount,
        sql`SELECT status AS label, count(*)::float8 AS value FROM webhook_deliveries GROUP BY status`
      ),

      oldestPendingAge: single(
        AgeRow,
        sql`
        SELECT EXTRACT(EPOCH FROM now() - min(d.created_at))::float8 AS age
        FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
        WHERE d.status IN ('pending', 'sending') AND s.enabled`
      ).pipe(Effect.map((row) => Option.fromNullable(row.age)))
    })
  })
)
