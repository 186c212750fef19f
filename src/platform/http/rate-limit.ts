import type { HttpServerResponse } from "@effect/platform"
import { Duration, Metric, MetricLabel, Option } from "effect"
import { createHash } from "node:crypto"
import { problemResponse } from "./problem.js"

/**
 * Request rate limits, answered with `429` problem+json and `Retry-After` before anything
 * else runs (no body read, no database or store call):
 *
 * - failed authentication per client address (on by default): every `401` spends a token
 *   of the address's bucket; while the bucket is empty, every request of that address to a
 *   route that needs a principal is refused — a good credential too, so guessing cannot go
 *   on. Other addresses and anonymous routes are not affected.
 * - optionally, all requests per credential (the `Authorization` value) or, without one,
 *   per client address. Health and readiness probes are exempt.
 *
 * Token buckets, in memory: each replica counts on its own. Memory is bounded: a bucket
 * that has filled up again is the same as none and is dropped, and past `MAX_BUCKETS` the
 * least recently used buckets go first.
 */

/** A token-bucket rate: up to `burst` requests at once, refilled at `burst` per `period`. */
export interface Rate {
  readonly burst: number
  readonly period: Duration.Duration
}

export interface RateLimitSettings {
  /** Failed authentications (401s) per client address. */
  readonly authFailures: Option.Option<Rate>
  /** All requests per credential, or per client address without one. */
  readonly requests: Option.Option<Rate>
}

/** Buckets kept per limit at most (a few MiB); the least recently used go first. */
export const MAX_BUCKETS = 65_536

export interface TokenBuckets {
  /** Milliseconds until `key` has a whole token; 0 when it has one now. Takes nothing. */
  readonly wait: (key: string, now: number) => number
  /** Takes a token of `key`: 0 when taken, else the milliseconds until one is there (nothing taken). */
  readonly take: (key: string, now: number) => number
  /** Buckets held now (for tests of the memory bound). */
  readonly size: () => number
}

interface Bucket {
  tokens: number
  at: number
}

export const makeTokenBuckets = (rate: Rate, maxBuckets: number = MAX_BUCKETS): TokenBuckets => {
  const perMs = rate.burst / Math.max(1, Duration.toMillis(rate.period))
  // A Map iterates in insertion order; re-inserting on every use makes it an LRU.
  const buckets = new Map<string, Bucket>()
  const level = (bucket: Bucket, now: number) => Math.min(rate.burst, bucket.tokens + (now - bucket.at) * perMs)
  const waitFor = (tokens: number) => tokens >= 1 ? 0 : Math.ceil((1 - tokens) / perMs)
  /** Drops the least recently used buckets that are full again, and any beyond the bound. */
  const sweep = (now: number) => {
    for (let i = 0; i < 2; i++) {
      const oldest = buckets.entries().next()
      if (oldest.done || level(oldest.value[1], now) < rate.burst) break
      buckets.delete(oldest.value[0])
    }
    while (buckets.size > maxBuckets) buckets.delete(buckets.keys().next().value!)
  }
  return {
    wait: (key, now) => {
      const bucket = buckets.get(key)
      return bucket === undefined ? 0 : waitFor(level(bucket, now))
    },
    take: (key, now) => {
      const existing = buckets.get(key)
      const tokens = existing === undefined ? rate.burst : level(existing, now)
      if (tokens < 1) return waitFor(tokens)
      buckets.delete(key)
      buckets.set(key, { tokens: tokens - 1, at: now })
      sweep(now)
      return 0
    },
    size: () => buckets.size
  }
}

/** What the limits look at in a request, before anything reads it. */
export interface RateLimitedRequest {
  readonly clientAddress: string
  readonly authorization: string | undefined
  /** The route needs a principal (failed-auth limit applies). */
  readonly protected: boolean
  /** Health and readiness probes: never limited. */
  readonly exempt: boolean
  /** The request carries a body, which the 429 leaves unread (the connection is closed). */
  readonly hasBody: boolean
}

export interface RateLimiter {
  /** The `429` to answer instead of running the request, or undefined to go on. */
  readonly admit: (request: RateLimitedRequest) => HttpServerResponse.HttpServerResponse | undefined
  /** Accounts for the answer: a `401` spends one of the client address's failed-auth tokens. */
  readonly settle: (clientAddress: string, status: number) => void
}

const refusedTotal = Metric.counter("imgsrv_rate_limited_requests_total", {
  description: "Requests answered 429 by a rate limit, by limit (auth_failures, requests).",
  incremental: true
})
const refusedLabels = {
  auth_failures: [MetricLabel.make("limit", "auth_failures")],
  requests: [MetricLabel.make("limit", "requests")]
} as const

const tooMany = (limit: keyof typeof refusedLabels, detail: string, waitMs: number, hasBody: boolean) => {
  // admit runs before any fiber exists for the request, hence the unsafe (synchronous) update.
  refusedTotal.unsafeUpdate(1, refusedLabels[limit])
  const seconds = Math.max(1, Math.ceil(waitMs / 1000))
  return problemResponse(429, `${detail}; retry after ${seconds} s`, {
    headers: {
      "retry-after": String(seconds),
      // Reading the body only to drop it is what the limit is there to spare.
      ...(hasBody ? { connection: "close" } : {})
    }
  })
}

/** The general limit counts a credential without keeping it: a digest of it is the key. */
const credentialKey = (authorization: string) =>
  `t:${createHash("sha256").update(authorization).digest("base64url").slice(0, 22)}`

export const makeRateLimiter = (settings: RateLimitSettings, now: () => number): RateLimiter => {
  const failures = Option.map(settings.authFailures, (rate) => makeTokenBuckets(rate))
  const requests = Option.map(settings.requests, (rate) => makeTokenBuckets(rate))
  return {
    admit: (request) => {
      if (request.exempt) return undefined
      if (request.protected && Option.isSome(failures)) {
        const wait = failures.value.wait(request.clientAddress, now())
        if (wait > 0) {
          return tooMany(
            "auth_failures",
            "too many failed authentication attempts from this address",
            wait,
            request.hasBody
          )
        }
      }
      if (Option.isSome(requests)) {
        const key = request.authorization === undefined
          ? `a:${request.clientAddress}`
          : credentialKey(request.authorization)
        const wait = requests.value.take(key, now())
        if (wait > 0) return tooMany("requests", "too many requests", wait, request.hasBody)
      }
      return undefined
    },
    settle: (clientAddress, status) => {
      if (status === 401 && Option.isSome(failures)) failures.value.take(clientAddress, now())
    }
  }
}
