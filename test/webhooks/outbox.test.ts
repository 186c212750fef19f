import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { retryDelayMillis } from "../../src/webhooks/delivery-worker.js"
import { recordEvent } from "../../src/webhooks/outbox.js"
import { WebhookRepository, WebhookRepositoryLive } from "../../src/webhooks/repository.js"
import { type EventType, SubscriptionId } from "../../src/webhooks/schema.js"
import { generateSecret, sign } from "../../src/webhooks/signing.js"
import { TestDatabaseLive } from "../support/harness.js"

/**
 * The outbox and the delivery queue at the SQL level: events commit or roll back with the
 * change, readers never see an event overtaken by one committed later, and the claim keeps
 * each endpoint's order without holding up the others.
 */

const RepositoryLive = WebhookRepositoryLive.pipe(Layer.provideMerge(TestDatabaseLive))

const subscription = (events: ReadonlyArray<EventType>, images: ReadonlyArray<string> = []) =>
  Effect.flatMap(WebhookRepository, (repo) =>
    repo.insertSubscription({
      id: SubscriptionId.make(randomUUID()),
      url: "http://receiver.test/hook",
      eventTypes: events,
      imageNames: images,
      description: null,
      secret: generateSecret(),
      createdBy: "test"
    }))

const counts = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ events: number; deliveries: number }>`
    SELECT (SELECT count(*)::int FROM events) AS events, (SELECT count(*)::int FROM webhook_deliveries) AS deliveries`
  return row!
})

const aliasEvent = (image: string) => ({
  type: "alias.updated" as const,
  imageName: image,
  data: { image, url: `/v1/images/${image}/aliases/x` }
})

const clean = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`TRUNCATE webhook_deliveries, webhook_subscriptions, events`.pipe(Effect.asVoid)
)

layer(RepositoryLive)("the outbox", (it) => {
  it.effect("records nothing when the change's transaction rolls back, and the event with its deliveries when it commits", () =>
    Effect.gen(function*() {
      yield* clean
      const sql = yield* SqlClient.SqlClient
      const all = yield* subscription(["alias.updated"])
      const onlyOther = yield* subscription(["alias.updated"], ["other"])
      const onlyMine = yield* subscription(["alias.updated", "alias.deleted"], ["mine"])
      yield* subscription(["version.published"])
      const disabled = yield* subscription(["alias.updated"])
      yield* sql`UPDATE webhook_subscriptions SET enabled = false WHERE id = ${disabled.id}`

      const rolledBack = yield* sql.withTransaction(
        recordEvent(sql, aliasEvent("mine")).pipe(Effect.zipRight(Effect.fail("the change failed" as const)))
      ).pipe(Effect.flip)
      expect(rolledBack).toBe("the change failed")
      expect(yield* counts).toEqual({ events: 0, deliveries: 0 })

      const recorded = yield* sql.withTransaction(recordEvent(sql, aliasEvent("mine")))
      expect(recorded.deliveries).toBe(2)
      expect(yield* counts).toEqual({ events: 1, deliveries: 2 })
      const targets = yield* sql<{ subscription_id: string }>`
        SELECT subscription_id FROM webhook_deliveries WHERE event_id = ${recorded.id} ORDER BY subscription_id`
      expect(targets.map((t) => t.subscription_id).sort()).toEqual([all.id, onlyMine.id].sort())
      expect(targets.map((t) => t.subscription_id)).not.toContain(onlyOther.id)
    }))

  it.effect("takes the event's id from FreshIds (a test can fix it)", () =>
    Effect.gen(function*() {
      yield* clean
      const sql = yield* SqlClient.SqlClient
      const fixed = "00000000-0000-4000-8000-00000000e7e1"
      const recorded = yield* recordEvent(sql, aliasEvent("fixed")).pipe(
        Effect.provideService(FreshIds, { uuid: Effect.succeed(fixed) })
      )
      expect(recorded.id).toBe(fixed)
      const [row] = yield* sql<{ id: string }>`SELECT id FROM events`
      expect(row!.id).toBe(fixed)
    }))

  it.effect("never lets a reader see an event before one an older transaction commits later", () =>
    Effect.gen(function*() {
      yield* clean
      const sql = yield* SqlClient.SqlClient
      const repo = yield* WebhookRepository
      const sub = yield* subscription(["alias.updated"])
      const written = yield* Deferred.make<string>()
      const release = yield* Deferred.make<void>()
      // A: takes its transaction id first, and commits last.
      const older = yield* sql.withTransaction(Effect.gen(function*() {
        const event = yield* recordEvent(sql, aliasEvent("a"))
        yield* Deferred.succeed(written, event.id)
        yield* Deferred.await(release)
        return event.id
      })).pipe(Effect.fork)
      yield* Deferred.await(written)
      // B: a younger transaction, committed at once.
      const younger = yield* sql.withTransaction(recordEvent(sql, aliasEvent("b")))
      // While A runs, B is neither in the feed nor deliverable: either would overtake A.
      expect(yield* repo.feed(undefined, 10)).toEqual([])
      expect(Option.isNone(yield* repo.claim("worker-1", 60_000, 3_600_000))).toBe(true)
      yield* Deferred.succeed(release, undefined)
      const olderId = yield* Fiber.join(older)
      expect((yield* repo.feed(undefined, 10)).map((e) => e.id)).toEqual([olderId, younger.id])
      expect((yield* repo.feed(olderId, 10)).map((e) => e.id)).toEqual([younger.id])
      const first = Option.getOrThrow(yield* repo.claim("worker-1", 60_000, 3_600_000))
      expect([first.event_id, first.subscription_id, first.attempts]).toEqual([olderId, sub.id, 1])
    }))

  it.effect("keeps one endpoint's deliveries in order while the head is retried, without holding up others or pings", () =>
    Effect.gen(function*() {
      yield* clean
      const sql = yield* SqlClient.SqlClient
      const repo = yield* WebhookRepository
      const slow = yield* subscription(["alias.updated"], ["slow"])
      const fast = yield* subscription(["alias.updated"], ["fast"])
      const e1 = yield* recordEvent(sql, aliasEvent("slow"))
      const e2 = yield* recordEvent(sql, aliasEvent("slow"))
      const head = Option.getOrThrow(yield* repo.claim("w1", 60_000, 3_600_000))
      expect(head.event_id).toBe(e1.id)
      // The head failed; it is due again later. The second waits behind it, while another
      // endpoint's delivery and a ping of the slow endpoint go through.
      expect(
        yield* repo.recordFailedAttempt(head, { responseStatus: 500, error: "HTTP 500", retryDelayMillis: 60_000 })
      ).toMatchObject({ _tag: "Some" })
      expect(Option.isNone(yield* repo.claim("w2", 60_000, 3_600_000))).toBe(true)
      const other = yield* recordEvent(sql, aliasEvent("fast"))
      const ping = yield* recordEvent(sql, {
        type: "webhook.ping",
        imageName: null,
        subscriptionId: slow.id,
        data: { webhook_id: slow.id }
      })
      const next = Option.getOrThrow(yield* repo.claim("w2", 60_000, 3_600_000))
      const after = Option.getOrThrow(yield* repo.claim("w3", 60_000, 3_600_000))
      expect([next.event_id, after.event_id].sort()).toEqual([other.id, ping.id].sort())
      expect([next, after].find((c) => c.event_id === other.id)!.subscription_id).toBe(fast.id)
      expect(Option.isNone(yield* repo.claim("w4", 60_000, 3_600_000))).toBe(true)
      // The head is due: it goes (attempt 2) and, delivered, lets the second through.
      yield* sql`UPDATE webhook_deliveries SET next_attempt_at = now() WHERE event_id = ${e1.id}`
      const retried = Option.getOrThrow(yield* repo.claim("w5", 60_000, 3_600_000))
      expect([retried.event_id, retried.attempts]).toEqual([e1.id, 2])
      expect(Option.isNone(yield* repo.claim("w6", 60_000, 3_600_000))).toBe(true)
      expect(yield* repo.recordDelivered(retried, 204)).toBe(true)
      const second = Option.getOrThrow(yield* repo.claim("w6", 60_000, 3_600_000))
      expect(second.event_id).toBe(e2.id)
      // A stale holder is fenced out.
      expect(yield* repo.recordDelivered(head, 200)).toBe(false)
    }))

  it.effect("re-claims a delivery whose lease ran out (a dead worker's), with the attempt counted", () =>
    Effect.gen(function*() {
      yield* clean
      const sql = yield* SqlClient.SqlClient
      const repo = yield* WebhookRepository
      yield* subscription(["alias.updated"])
      yield* recordEvent(sql, aliasEvent("x"))
      const first = Option.getOrThrow(yield* repo.claim("dead", 60_000, 3_600_000))
      expect(Option.isNone(yield* repo.claim("alive", 60_000, 3_600_000))).toBe(true)
      yield* sql`UPDATE webhook_deliveries SET lease_expires_at = now() - interval '1 second' WHERE id = ${first.id}`
      const again = Option.getOrThrow(yield* repo.claim("alive", 60_000, 3_600_000))
      expect([again.id, again.attempts, again.locked_by]).toEqual([first.id, 2, "alive"])
      expect(yield* repo.renew(first, 60_000)).toBe(false)
      expect(yield* repo.recordDelivered(again, 200)).toBe(true)
    }))
})

describe("the retry schedule", () => {
  const delays = ["5 seconds", "30 seconds", "2 minutes", "10 minutes", "1 hour"].map((d) =>
    Duration.decode(d as Duration.DurationInput)
  )

  it("follows the configured delays, repeats the last, and jitters by the given factor", () => {
    expect([1, 2, 3, 4, 5, 6, 9].map((attempt) => retryDelayMillis(delays, attempt, 1))).toEqual([
      5_000,
      30_000,
      120_000,
      600_000,
      3_600_000,
      3_600_000,
      3_600_000
    ])
    expect(retryDelayMillis(delays, 1, 0.8)).toBe(4_000)
    expect(retryDelayMillis(delays, 2, 1.2)).toBe(36_000)
  })
})

describe("signing", () => {
  it("matches the Standard Webhooks reference example", () => {
    // From the Standard Webhooks specification's test vectors (libraries' shared tests).
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    const id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    const timestamp = 1614265330
    const body = "{\"test\": 2432232314}"
    expect(sign(secret, id, timestamp, body)).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
  })
})
