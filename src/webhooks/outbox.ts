import type { SqlClient, SqlError } from "@effect/sql"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import type { NewEvent } from "./schema.js"

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
 */
export interface RecordedEvent {
  readonly id: string
  /** Deliveries queued for it (subscriptions that match its type and image). */
  readonly deliveries: number
}

export const recordEvent = (
  sql: SqlClient.SqlClient,
  event: NewEvent
): Effect.Effect<RecordedEvent, SqlError.SqlError> =>
  Effect.gen(function*() {
    const id = randomUUID()
    const subscriptionId = event.subscriptionId ?? null
    // One statement: the event and its fan-out cannot be separated even without a transaction.
    const rows = yield* sql<{ n: number }>`
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
    return { id, deliveries: Number(rows[0]?.n ?? 0) }
  })
