import { Effect, Layer, Logger, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MetricsServerLive, ScrapeCollectors, ScrapeCollectorsLive } from "../../src/platform/observability/metrics.js"
import { freePort } from "../support/process.js"

/** The metrics listener's own behaviour, apart from the series (test/observability). */
describe("the metrics listener", () => {
  const logged: Array<string> = []
  let runtime: ManagedRuntime.ManagedRuntime<never, unknown>
  let url = ""

  beforeAll(async () => {
    const port = await freePort()
    url = `http://127.0.0.1:${port}/metrics`
    // A collector whose query fails, as a scrape-time SQL query does when PostgreSQL is away.
    const failing = Layer.effectDiscard(
      Effect.flatMap(ScrapeCollectors, (c) => c.register("broken", Effect.fail(new Error("database is away"))))
    )
    const capture = Logger.make(({ message }) => void logged.push(String(message)))
    runtime = ManagedRuntime.make(
      MetricsServerLive({ listen: { host: "127.0.0.1", port }, path: "/metrics" }).pipe(
        Layer.provide(failing),
        Layer.provide(ScrapeCollectorsLive),
        Layer.provide(Logger.replace(Logger.defaultLogger, capture))
      )
    )
    await runtime.runPromise(Effect.void)
  })
  afterAll(() => runtime?.dispose())

  it("omits a failed collector's series and logs the failure through the app's logger", async () => {
    const response = await fetch(url)
    expect(response.status).toBe(200)
    expect(await response.text()).toContain("process_resident_memory_bytes")
    expect(logged).toContain("metrics collector failed")
  })

  it("answers 404 for any other path", async () => {
    expect((await fetch(url.replace("/metrics", "/other"))).status).toBe(404)
  })
})
