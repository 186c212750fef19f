import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Metric, MetricState, Option, Ref, TestClock } from "effect"
import type { WorkerLoopSettings } from "../../src/platform/config/config.js"
import { leaseHeartbeat, LeaseLost, makeWakeSignal, type RunOutcome, runWorkerLoop } from "../../src/platform/worker.js"

const settings: WorkerLoopSettings = {
  enabled: true,
  pollInterval: Duration.seconds(5),
  errorBackoff: Duration.seconds(1),
  errorBackoffMax: Duration.seconds(4),
  circuitBreakerFailures: 4,
  circuitBreakerCooldown: Duration.seconds(60),
  lease: Duration.seconds(30)
}

/** Runs the loop with a scripted `runOnce`, recording the virtual time of each attempt. */
const scripted = (name: string, script: (attempt: number) => Effect.Effect<RunOutcome, string>) =>
  Effect.gen(function*() {
    const times = yield* Ref.make<Array<number>>([])
    const wake = yield* makeWakeSignal
    const runOnce = Effect.gen(function*() {
      const now = yield* TestClock.currentTimeMillis
      const attempt = yield* Ref.modify(times, (t) => [t.length, [...t, now]])
      return yield* script(attempt)
    })
    const fiber = yield* Effect.fork(runWorkerLoop({ name, workerId: "test/worker", settings, runOnce, wake }))
    return { times, wake, fiber }
  })

const step = (seconds: number) => TestClock.adjust(Duration.seconds(seconds))

/** A counter's value from the registry, found by name and `job` tag. */
const counterValue = (name: string, job: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const pair = pairs.find((p) =>
      p.metricKey.name === name && p.metricKey.tags.some((t) => t.key === "job" && t.value === job)
    )
    return pair && MetricState.isCounterState(pair.metricState) ? Number(pair.metricState.count) : 0
  })

describe("runWorkerLoop", () => {
  it.effect("drains work at once, then sleeps the poll interval unless woken", () =>
    Effect.gen(function*() {
      const { times, wake, fiber } = yield* scripted("t1", (n) => Effect.succeed(n < 3 ? "worked" : "idle"))
      yield* step(0)
      expect(yield* Ref.get(times)).toEqual([0, 0, 0, 0])
      yield* step(5)
      expect((yield* Ref.get(times)).length).toBe(5)
      yield* step(1)
      yield* wake.wake
      yield* step(0)
      expect(yield* Ref.get(times)).toEqual([0, 0, 0, 0, 5000, 6000])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("backs off exponentially up to the ceiling, then opens the circuit breaker for the cooldown", () =>
    Effect.gen(function*() {
      const { times, fiber } = yield* scripted("t2", (n) => n < 6 ? Effect.fail("store down") : Effect.succeed("idle"))
      for (let i = 0; i < 80; i++) yield* step(1)
      // Failures at 0, +1s, +2s, +4s (4th failure opens the breaker: 60 s pause), then 64, 65.
      expect((yield* Ref.get(times)).slice(0, 7)).toEqual([0, 1000, 3000, 7000, 67000, 68000, 70000])
      expect(yield* counterValue("imgsrv_background_job_circuit_open_total", "t2")).toBe(1)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("survives a defect in a unit of work: it is logged, counted as an error and the loop goes on", () =>
    Effect.gen(function*() {
      const { times, fiber } = yield* scripted(
        "t3",
        (n) => n === 0 ? Effect.die(new Error("bug")) : Effect.succeed("idle")
      )
      yield* step(0)
      yield* step(1)
      expect(yield* Ref.get(times)).toEqual([0, 1000])
      expect(yield* counterValue("imgsrv_background_job_errors_total", "t3")).toBe(1)
      yield* Fiber.interrupt(fiber)
    }))
})

describe("leaseHeartbeat", () => {
  it.effect("renews every third of the lease, rides out a failed renewal, and fails once the lease is gone", () =>
    Effect.gen(function*() {
      const renewals = yield* Ref.make<Array<number>>([])
      // Held, a database hiccup, held, then gone.
      const answers: ReadonlyArray<Effect.Effect<boolean, string>> = [
        Effect.succeed(true),
        Effect.fail("connection reset"),
        Effect.succeed(true),
        Effect.succeed(false)
      ]
      const renew = Effect.gen(function*() {
        const now = yield* TestClock.currentTimeMillis
        const n = yield* Ref.modify(renewals, (r) => [r.length, [...r, now]])
        return yield* answers[n]!
      })
      const fiber = yield* Effect.fork(leaseHeartbeat(Duration.seconds(30), renew, { job: "t4" }))
      yield* step(9)
      expect(yield* Ref.get(renewals)).toEqual([])
      for (let i = 0; i < 4; i++) yield* step(10)
      expect(yield* Ref.get(renewals)).toEqual([10_000, 20_000, 30_000, 40_000])
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : exit).toBeInstanceOf(
        LeaseLost
      )
    }))
})
