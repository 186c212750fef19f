import { Cause, Clock, Data, Duration, Effect, Layer, Metric, Queue, Schedule, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import type { LoopSettings } from "./config/config.js"
import { untracedPoll } from "./observability/tracing.js"

/**
 * The runner shared by the background jobs (spec/domain.md §3.2): call `runOnce`
 * (at most one unit of work); `worked` loops at once to drain the queue, `idle`
 * sleeps the poll interval — or less, when something in this process signals new
 * work through `wake`; errors back off exponentially up to a ceiling, and after N
 * consecutive failures a circuit breaker pauses the loop for a cooldown.
 * A defect is logged and treated like an error: the loop never dies silently.
 *
 * The policy is written as schedules (`runWorkerLoop`): a capped exponential backoff
 * bounded by the breaker's failure count, then `Schedule.spaced(cooldown)` for the
 * breaker; the lease heartbeat is `Schedule.spaced` too. Every worker declares a `Job`
 * and runs through `workerLayer`, so all of them share this loop and its metrics.
 */
export type RunOutcome = "worked" | "idle"

export interface WakeSignal {
  /** Wakes an idle loop now (never blocks, coalesces bursts). */
  readonly wake: Effect.Effect<void>
  /** Waits for a wake-up or the timeout, whichever comes first. */
  readonly await: (timeout: Duration.DurationInput) => Effect.Effect<void>
}

export const makeWakeSignal = Effect.gen(function*() {
  const queue = yield* Queue.sliding<void>(1)
  return {
    wake: Queue.offer(queue, undefined).pipe(Effect.asVoid),
    await: (timeout) => Queue.take(queue).pipe(Effect.timeoutOption(timeout), Effect.asVoid)
  } satisfies WakeSignal
})

const attempts = Metric.counter("imgsrv_background_job_attempts_total", {
  description: "Background job attempts by outcome (worked, idle, error).",
  incremental: true
})
const errorsTotal = Metric.counter("imgsrv_background_job_errors_total", {
  description: "Failed background job attempts.",
  incremental: true
})
const circuitOpen = Metric.counter("imgsrv_background_job_circuit_open_total", {
  description: "Times a background job's circuit breaker opened.",
  incremental: true
})
const consecutiveFailures = Metric.gauge("imgsrv_background_job_consecutive_failures", {
  description: "Consecutive failed attempts (0 after a success or when the breaker opens)."
})
const lastSuccess = Metric.gauge("imgsrv_background_job_last_success_timestamp_seconds", {
  description: "Unix time of the last successful (worked or idle) attempt."
})
const lastError = Metric.gauge("imgsrv_background_job_last_error_timestamp_seconds", {
  description: "Unix time of the last failed attempt."
})

const runId = randomBytes(5).toString("hex")

/** `<node-name>/<run-id>/<job>`: the value written to lease columns (`claimed_by`). */
export const makeWorkerId = (nodeName: string, job: string): string =>
  `${nodeName.trim() || hostname() || "imgsrv"}/${runId}/${job}`

export const runWorkerLoop = <E, R>(options: {
  /** Metric label `job`, e.g. `cas-promotion` or `publish`. */
  readonly name: string
  readonly workerId: string
  readonly settings: LoopSettings
  readonly runOnce: Effect.Effect<RunOutcome, E, R>
  readonly wake: WakeSignal
}): Effect.Effect<never, never, R> => {
  const { name, settings, workerId } = options
  const tag = <Type, In, Out>(m: Metric.Metric<Type, In, Out>) => Metric.tagged(m, "job", name)
  const nowSeconds = Effect.map(Clock.currentTimeMillis, (millis) => millis / 1000)

  /** One unit of work with its accounting; fails with the whole cause (a defect is an error too). */
  const attempt: Effect.Effect<RunOutcome, Cause.Cause<E>, R> = untracedPoll(options.runOnce).pipe(
    // Idle polls leave no trace; the work a poll finds opens its own (withLinkedSpan).
    Effect.sandbox,
    Effect.tapBoth({
      onSuccess: (outcome) =>
        Effect.gen(function*() {
          yield* Metric.increment(Metric.tagged(tag(attempts), "outcome", outcome))
          yield* Metric.set(tag(consecutiveFailures), 0)
          yield* Metric.set(tag(lastSuccess), yield* nowSeconds)
        }),
      onFailure: () =>
        Effect.gen(function*() {
          yield* Metric.increment(Metric.tagged(tag(attempts), "outcome", "error"))
          yield* Metric.increment(tag(errorsTotal))
          yield* Metric.set(tag(lastError), yield* nowSeconds)
        })
    })
  )

  /**
   * After a failure: wait `errorBackoff`, doubling up to `errorBackoffMax`, and try again,
   * `circuitBreakerFailures - 1` times; the next failure is the breaker's. Each retry is
   * logged with the cause and its delay.
   */
  const breakerAt = Math.max(1, settings.circuitBreakerFailures)
  const ceiling = Duration.max(settings.errorBackoff, settings.errorBackoffMax)
  const backoff = Schedule.exponential(settings.errorBackoff, 2).pipe(
    Schedule.map((delay) => Duration.min(delay, ceiling)),
    Schedule.modifyDelay((capped) => capped),
    Schedule.intersect(Schedule.recurs(breakerAt - 1)),
    Schedule.intersect(Schedule.identity<Cause.Cause<E>>()),
    Schedule.onDecision(([[delay, retries], cause], decision) =>
      decision._tag === "Done" ? Effect.void : Effect.gen(function*() {
        yield* Metric.set(tag(consecutiveFailures), retries + 1)
        yield* Effect.logError("background job attempt failed").pipe(
          Effect.annotateLogs({ name, worker_id: workerId, retry_after_ms: Duration.toMillis(delay), cause })
        )
      })
    )
  )

  /** The breaker: after `circuitBreakerFailures` consecutive failures, pause for the cooldown, then start afresh. */
  const breaker = Schedule.spaced(settings.circuitBreakerCooldown).pipe(
    Schedule.tapInput((cause: Cause.Cause<E>) =>
      Effect.gen(function*() {
        yield* Metric.increment(tag(circuitOpen))
        yield* Metric.set(tag(consecutiveFailures), 0)
        yield* Effect.logWarning("background job circuit breaker open").pipe(
          Effect.annotateLogs({
            name,
            consecutive_failures: breakerAt,
            cooldown_ms: Duration.toMillis(settings.circuitBreakerCooldown),
            cause
          })
        )
      })
    )
  )

  /**
   * One successful attempt (after any retries); `worked` goes again at once to drain the
   * queue, `idle` waits for the poll interval or a wake-up. (A schedule's sleep cannot be cut
   * short by a signal, so the idle wait is the signal's own timed wait.)
   */
  const cycle = attempt.pipe(
    Effect.retry(backoff),
    Effect.retry(breaker),
    // Unreachable: the breaker's schedule never gives up (should it, the loop restarts below).
    Effect.orDie,
    Effect.tap((outcome) => outcome === "idle" ? options.wake.await(settings.pollInterval) : Effect.void)
  )

  const loop: Effect.Effect<never, never, R> = Effect.gen(function*() {
    yield* Effect.logInfo("background job started").pipe(Effect.annotateLogs({ name, worker_id: workerId }))
    // The counters exist at 0 from the start, so `increase(...) > 0` alerts also see the
    // first error or breaker opening (a series born at 1 has no increase to show).
    for (const outcome of ["worked", "idle", "error"] as const) {
      yield* Metric.incrementBy(Metric.tagged(tag(attempts), "outcome", outcome), 0)
    }
    yield* Metric.incrementBy(tag(errorsTotal), 0)
    yield* Metric.incrementBy(tag(circuitOpen), 0)
    return yield* Effect.repeat(cycle, Schedule.forever).pipe(Effect.zipRight(Effect.never))
  })

  // Belt and braces: should the loop machinery itself ever die, restart it after a pause.
  const supervised = loop.pipe(
    Effect.sandbox,
    Effect.retry(
      Schedule.spaced("1 second").pipe(
        Schedule.tapInput((cause: Cause.Cause<never>) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.void
            : Effect.logError("background job loop crashed; restarting", cause)
        ),
        Schedule.whileInput((cause: Cause.Cause<never>) => !Cause.isInterruptedOnly(cause))
      )
    ),
    Effect.unsandbox
  )
  return supervised.pipe(
    Effect.onInterrupt(() => Effect.logInfo("background job stopped").pipe(Effect.annotateLogs({ name })))
  )
}

/**
 * The worker no longer holds its claim's lease (it ran out and another worker took the
 * work over): whatever this worker computed is dropped.
 */
export class LeaseLost extends Data.TaggedError("LeaseLost")<{}> {}

/**
 * Keeps a claim's lease alive while its work runs (race the two): renews every third of
 * `lease`, and fails with `LeaseLost` once `renew` answers that the lease is gone. A
 * failed renewal (a database hiccup) is logged and does not cost the lease yet; the next
 * beat tries again, and the lease itself bounds how long that can go on.
 */
export const leaseHeartbeat = <E>(
  lease: Duration.Duration,
  renew: Effect.Effect<boolean, E>,
  context: { readonly job: string } & Record<string, unknown>
): Effect.Effect<never, LeaseLost> =>
  renew.pipe(
    Effect.catchAll((error) =>
      Effect.logWarning("lease renewal failed").pipe(Effect.annotateLogs({ ...context, error }), Effect.as(true))
    ),
    Effect.flatMap((held) => (held ? Effect.void : Effect.fail(new LeaseLost()))),
    // `schedule` waits first: the claim itself just set the lease.
    Effect.schedule(Schedule.spaced(Duration.millis(Math.max(10, Math.floor(Duration.toMillis(lease) / 3))))),
    // A spaced schedule never ends; only a lost lease (or interruption) stops the beat.
    Effect.zipRight(Effect.never)
  )

/**
 * One background job (issue 12): the name, the loop settings and `runOnce` — at most one
 * unit of work, given the lease-owner id of the loop that runs it. Every worker declares
 * one and is run by `workerLayer`, so they share the loop, its metrics, its error policy
 * and the `enabled` switch.
 */
export interface Job<E, R> {
  /** Metric label `job`, log name and lease-owner suffix, e.g. `cas-promotion`. */
  readonly name: string
  /** Node name written into lease columns (`--node-name`). */
  readonly nodeName: string
  readonly settings: LoopSettings
  readonly runOnce: (workerId: string) => Effect.Effect<RunOutcome, E, R>
  /** Wakes idle loops before their poll interval; without it they wake on the interval only. */
  readonly wake?: WakeSignal
  /** Loops of this job in this process (default 1), each with its own worker id. */
  readonly concurrency?: number
  /** The flag that switches the job on, named in the "disabled" log line (e.g. `--publish-worker-enabled`). */
  readonly enabledBy?: string
}

/** Runs a job's loops for the life of the layer (interrupted at shutdown). */
export const workerLayer = <E, R, E2, R2>(
  make: Effect.Effect<Job<E, R>, E2, R2>
): Layer.Layer<never, E2, Exclude<R | R2, Scope.Scope>> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const job = yield* make
    if (!job.settings.enabled) {
      yield* Effect.logInfo("background job disabled").pipe(
        Effect.annotateLogs({
          name: job.name,
          ...(job.enabledBy === undefined ? {} : { flag: `${job.enabledBy}=false` })
        })
      )
      return
    }
    const wake = job.wake ?? (yield* makeWakeSignal)
    const loops = Math.max(1, job.concurrency ?? 1)
    for (let i = 1; i <= loops; i++) {
      const workerId = makeWorkerId(job.nodeName, loops === 1 ? job.name : `${job.name}-${i}`)
      yield* Effect.forkScoped(
        runWorkerLoop({ name: job.name, workerId, settings: job.settings, runOnce: job.runOnce(workerId), wake })
      )
    }
  }))
