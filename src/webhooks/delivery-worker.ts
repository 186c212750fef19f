import { Clock, Duration, Effect, Metric, Option, Random } from "effect"
import { buildInfo } from "../build-info.js"
import { AppConfig, type WebhookSettings } from "../platform/config/config.js"
import { databaseFailure } from "../platform/storage/sql-errors.js"
import { type Job, leaseHeartbeat, type RunOutcome, workerLayer } from "../platform/worker.js"
import type { SendFailed } from "./errors.js"
import { attemptDuration, deliveryAttempts, deliveryOutcomes, subscriptionsDisabled } from "./metrics.js"
import { WebhookRepository } from "./repository.js"
import { boundedReason, type ClaimedDelivery, eventToWire } from "./schema.js"
import { postWebhook } from "./sender.js"
import { DeliveryWake, loggableTarget } from "./service.js"
import { signatureHeader } from "./signing.js"

/**
 * The webhook delivery worker (issue 14 §3): claims one due delivery, POSTs the event
 * with the Standard Webhooks headers, and records the outcome.
 *
 * - At-least-once: a claim is `FOR UPDATE SKIP LOCKED` plus a lease that a heartbeat
 *   renews while the request runs; a replica that dies mid-request leaves a lease that
 *   runs out, and the delivery is sent again (same `webhook-id`, so receivers dedupe).
 *   Outcomes are fenced on (locked_by, attempts): a worker that lost its claim writes nothing.
 * - Order: deliveries of one subscription go out in event order; while the head fails
 *   (and is retried) the ones behind it wait — other subscriptions are not held up, since
 *   each loop takes whatever else is due and a replica runs `--webhook-concurrency` loops.
 * - Retries: 2xx is delivered; anything else (a 3xx too: redirects are not followed),
 *   a timeout or a refused address is retried after `retryDelays[attempt - 1]` (the last
 *   repeating) ±20% jitter, until the delivery's retry window is spent: then `failed`.
 * - A subscription all of whose attempts have failed for `disableAfter` is disabled, with
 *   the reason.
 *
 * The unit of work is `makeDeliveryRunOnce(settings)(workerId)`: an effect that reports `worked`
 * or `idle` to the runner (platform/worker.ts); settings are `WebhookSettings`.
 * `webhookDeliveryJob` declares it as a `Job` with `--webhook-concurrency` loops.
 */

export const WEBHOOK_DELIVERY_JOB = "webhook-delivery"

/** The delay before the attempt after `attempt` (1-based), jittered by `factor` (0.8–1.2). */
export const retryDelayMillis = (delays: ReadonlyArray<Duration.Duration>, attempt: number, factor: number) => {
  const base = delays[Math.min(Math.max(attempt, 1), delays.length) - 1] ?? Duration.seconds(5)
  return Math.max(1, Math.round(Duration.toMillis(base) * factor))
}

const ATTEMPT_RESULTS = ["success", "http_error", "timeout", "network_error", "refused"] as const
type AttemptResult = (typeof ATTEMPT_RESULTS)[number]

const resultOf = (failure: SendFailed): AttemptResult =>
  failure.kind === "http"
    ? "http_error"
    : failure.kind === "network"
    ? "network_error"
    : failure.kind

/** The JSON body and the headers of one attempt (signed with every current secret). */
export const buildRequest = (claim: ClaimedDelivery, timestampSeconds: number) => {
  const body = JSON.stringify(eventToWire({
    id: claim.event_id,
    type: claim.event_type,
    payload: claim.payload,
    occurred_at: claim.occurred_at
  }))
  const secrets = claim.previous_secret === null ? [claim.secret] : [claim.secret, claim.previous_secret]
  return {
    body,
    headers: {
      "content-type": "application/json",
      "user-agent": `imgsrv-webhooks/${buildInfo.version}`,
      "webhook-id": claim.event_id,
      "webhook-timestamp": String(timestampSeconds),
      "webhook-signature": signatureHeader(secrets, claim.event_id, timestampSeconds, body)
    }
  }
}

export const makeDeliveryRunOnce = (
  settings: WebhookSettings
): Effect.Effect<(workerId: string) => Effect.Effect<RunOutcome>, never, WebhookRepository> =>
  Effect.gen(function*() {
    const repo = yield* WebhookRepository
    const leaseMillis = Duration.toMillis(settings.worker.lease)
    const windowMillis = Duration.toMillis(settings.retryWindow)

    // A renewal the database fails is logged and tried again at the next beat (the lease
    // bounds how long): the repository's defect back as a failure the heartbeat tolerates.
    const heartbeat = (claim: ClaimedDelivery) =>
      leaseHeartbeat(settings.worker.lease, databaseFailure(repo.renew(claim, leaseMillis)), {
        job: WEBHOOK_DELIVERY_JOB,
        delivery_id: claim.id
      })

    const recordFailure = (claim: ClaimedDelivery, failure: SendFailed) =>
      Effect.gen(function*() {
        const factor = yield* Random.nextRange(0.8, 1.2)
        const delay = retryDelayMillis(settings.retryDelays, claim.attempts, factor)
        const giveUp = claim.db_now.getTime() + delay > claim.retry_until.getTime()
        const recorded = yield* repo.recordFailedAttempt(claim, {
          responseStatus: failure.status ?? null,
          error: boundedReason(failure.detail),
          retryDelayMillis: giveUp ? null : delay
        })
        if (Option.isNone(recorded)) return "lease_lost" as const
        const outcome = giveUp ? "failed" as const : "retry" as const
        yield* Effect.logWarning(giveUp ? "webhook delivery failed for good" : "webhook delivery attempt failed").pipe(
          Effect.annotateLogs({
            attempt: claim.attempts,
            error: failure.detail,
            ...(giveUp ? {} : { retry_in_ms: delay })
          })
        )
        const { failingSince, now } = recorded.value
        if (now.getTime() - failingSince.getTime() >= Duration.toMillis(settings.disableAfter)) {
          const reason = boundedReason(
            `every delivery attempt failed since ${failingSince.toISOString()}; last error: ${failure.detail}`
          )
          yield* repo.disableSubscription(claim.subscription_id, reason)
          yield* Metric.increment(subscriptionsDisabled)
          yield* Effect.logWarning("webhook subscription disabled").pipe(Effect.annotateLogs({ reason }))
        }
        return outcome
      })

    const deliver = (claim: ClaimedDelivery) =>
      Effect.gen(function*() {
        const nowMillis = yield* Clock.currentTimeMillis
        const request = buildRequest(claim, Math.floor(nowMillis / 1000))
        const send = postWebhook({
          url: claim.url,
          headers: request.headers,
          body: request.body,
          timeout: settings.timeout,
          allowPrivateNetworks: settings.allowPrivateNetworks
        }).pipe(Effect.either)
        const sent = yield* Effect.raceFirst(send, heartbeat(claim)).pipe(Effect.either)
        const seconds = ((yield* Clock.currentTimeMillis) - nowMillis) / 1000
        if (sent._tag === "Left") {
          yield* Metric.increment(Metric.tagged(deliveryOutcomes, "outcome", "lease_lost"))
          yield* Effect.logWarning("webhook delivery lease lost; another worker owns it now")
          return
        }
        const result: AttemptResult = sent.right._tag === "Right" ? "success" : resultOf(sent.right.left)
        yield* Metric.increment(Metric.tagged(deliveryAttempts, "result", result))
        yield* Metric.update(Metric.tagged(attemptDuration, "result", result), seconds)
        const outcome = sent.right._tag === "Right"
          ? yield* repo.recordDelivered(claim, sent.right.right).pipe(
            Effect.map((recorded) => (recorded ? "delivered" as const : "lease_lost" as const))
          )
          : yield* recordFailure(claim, sent.right.left)
        yield* Metric.increment(Metric.tagged(deliveryOutcomes, "outcome", outcome))
        if (outcome === "delivered") {
          yield* Effect.logDebug("webhook delivered").pipe(Effect.annotateLogs({ attempt: claim.attempts }))
        }
      }).pipe(
        // Every line about a claim says which one — the target by scheme and host only
        // (a path or query may carry a token), never a secret.
        Effect.annotateLogs({
          delivery_id: claim.id,
          event_id: claim.event_id,
          webhook_id: claim.subscription_id,
          target: loggableTarget(claim.url)
        })
      )

    return (workerId: string) =>
      Effect.gen(function*() {
        const claimed = yield* repo.claim(workerId, leaseMillis, windowMillis)
        if (Option.isNone(claimed)) return "idle" as const
        yield* deliver(claimed.value)
        return "worked" as const
      }).pipe(Effect.annotateLogs({ component: WEBHOOK_DELIVERY_JOB, worker_id: workerId }))
  })

/** The delivery job: `--webhook-concurrency` loops per replica, woken by pings and redeliveries (`DeliveryWake`). */
export const webhookDeliveryJob = Effect.gen(function*() {
  const config = yield* AppConfig
  const settings = config.webhooks
  if (settings.worker.enabled) {
    // The counters exist at 0 from the start, so `increase(...) > 0` alerts also see the first one.
    for (const result of ATTEMPT_RESULTS) {
      yield* Metric.incrementBy(Metric.tagged(deliveryAttempts, "result", result), 0)
    }
    for (const outcome of ["delivered", "retry", "failed", "lease_lost"]) {
      yield* Metric.incrementBy(Metric.tagged(deliveryOutcomes, "outcome", outcome), 0)
    }
    yield* Metric.incrementBy(subscriptionsDisabled, 0)
  }
  const runOnce = yield* makeDeliveryRunOnce(settings)
  return {
    name: WEBHOOK_DELIVERY_JOB,
    nodeName: config.nodeName,
    settings: settings.worker,
    runOnce,
    wake: yield* DeliveryWake,
    concurrency: settings.concurrency,
    enabledBy: "--webhook-worker-enabled"
  } satisfies Job<never, never>
})

/** The delivery loops, when `--webhook-worker-enabled` (default true). */
export const WebhookDeliveryWorkerLive = workerLayer(webhookDeliveryJob)
