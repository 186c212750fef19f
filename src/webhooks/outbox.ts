import { type SqlClient, SqlSchema } from "@effect/sql"
import { Effect, Schema } from "effect"
import { freshUuid } from "../platform/fresh-ids.js"
import { EventId, type NewEvent } from "./schema.js"

/**
 * The outbox: `recordEvent` writes an event, and one pending delivery per enabled
 * subscription that wants it, with the SqlClient of the transaction that makes the change
 * the event describes. Both commit with the change or roll back with it, so no event is
 * lost (the change committed: the event is there) and none is invented (the change rolled
 * back: so did the event). The delivery worker and the feed only read committed rows.
 *
 * Callers run it inside their own `sql.withTransaction(...)`: @effect/sql routes every
 * statement of the fiber to the transaction's connection, so passing the same SqlClient
 * is all it takes. Called outside a transaction it is its own (atomic) statement pair.
 *
 * It is the events' SQL boundary: a failing database is a defect (it rolls the caller's
 * transaction back like any failure; a worker that tolerates a failing database turns it
 * back into a failure with `databaseFailure`).
 */
export interface RecordedEvent {
  readonly id: EventId
  /** Deliveries queued for it (subscriptions that match its type and image). */
  readonly deliveries: number
}

export const recordEvent = (
  sql: SqlClient.SqlClient,
  event: NewEvent
): Effect.Effect<RecordedEvent> =>
  Effect.gen(function*() {
    const id = EventId.make(yield* freshUuid)
    const subscriptionId = event.subscriptionId ?? null
    // One statement: the event and its fan-out cannot be separated even without a transaction.
    const fanned = SqlSchema.single({
      Request: Schema.Void,
      Result: Schema.Struct({ n: Schema.Number }),
      execute: () =>
        sql`
      WITH inserted AS (
        INSERT INTO events (id, type, image_name, payload, subscription_id)
        VALUES (${id}, ${event.type}, ${event.imageName}, ${JSON.stringify(event.data)}::jsonb, ${subscriptionId})
        RETURNING id, tx, seq
      ), fanned AS (
        INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_tx, event_seq, ordered, next_attempt_at)
        SELECT gen_random_uuid(), s.id, i.id, i.tx, i.seq, ${subscriptionId === null}, now()
        FROM inserted i, webhook_subscriptions s
        WHERE s.enabled
          AND CASE WHEN ${subscriptionId}::uuid IS NOT NULL
                   THEN s.id = ${subscriptionId}::uuid
                   ELSE ${event.type} = ANY (s.event_types)
                        AND (cardinality(s.image_names) = 0 OR ${event.imageName}::text = ANY (s.image_names))
              END
        RETURNING id
      )
      SELECT count(*)::int AS n FROM fanned`
    })
    // count(*) always answers one row: none at all is a defect like a failing database.
    const { n } = yield* fanned(undefined).pipe(Effect.orDie)
    return { id, deliveries: n }
  })
