import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Schema } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { makeHttpMetrics, serverMiddleware } from "../../src/platform/http/access-log.js"
import { apiMiddleware } from "../../src/platform/http/api-middleware.js"
import { answerImmutable, ImmutableResponses } from "../../src/platform/http/fast-path.js"
import { apiOf, makeRouteTable } from "../../src/platform/http/routes.js"

/**
 * A request without a usable `X-Request-ID` gets a fresh one from `FreshIds` (conventions:
 * randomness behind a service, so a test can fix it) on both request paths: the Effect app's
 * server middleware and the listener's answer from memory.
 */

const FIXED = "11111111-2222-4333-8444-555555555555"
const fixedIds = { uuid: Effect.succeed(FIXED) }
const metrics = () => makeHttpMetrics(() => ({ address: "127.0.0.1", port: 0 }))

const PingGroup = HttpApiGroup.make("ping").add(HttpApiEndpoint.get("ping", "/ping").addSuccess(Schema.String))
const TestApi = HttpApi.make("imgsrv").add(PingGroup)
const routes = makeRouteTable(TestApi)

describe("request ids in the app's server middleware", () => {
  let runtime: ManagedRuntime.ManagedRuntime<HttpServer.HttpServer, unknown>
  let base = ""

  beforeAll(async () => {
    const layer = HttpApiBuilder.serve(serverMiddleware(routes, { tracing: false, metrics: metrics() })).pipe(
      Layer.provide(
        HttpApiBuilder.api(TestApi).pipe(
          Layer.provide(
            HttpApiBuilder.group(apiOf(PingGroup), "ping", (h) => h.handle("ping", () => Effect.succeed("pong")))
          ),
          Layer.provide(HttpApiBuilder.middleware(apiMiddleware({ routes })))
        )
      ),
      Layer.provide(Layer.succeed(FreshIds, fixedIds)),
      Layer.provide(Logger.minimumLogLevel(LogLevel.None)),
      Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
    )
    runtime = ManagedRuntime.make(layer)
    const address = await runtime.runPromise(HttpServer.HttpServer.pipe(Effect.map((s) => s.address)))
    base = `http://127.0.0.1:${address._tag === "TcpAddress" ? address.port : 0}`
  })
  afterAll(() => runtime.dispose())

  it("take a missing or unusable id from FreshIds, and echo a usable one", async () => {
    const missing = await fetch(`${base}/ping`)
    expect(missing.status).toBe(200)
    expect(missing.headers.get("x-request-id")).toBe(FIXED)
    const tooLong = await fetch(`${base}/ping`, { headers: { "x-request-id": "x".repeat(129) } })
    expect(tooLong.headers.get("x-request-id")).toBe(FIXED)
    const mine = await fetch(`${base}/ping`, { headers: { "x-request-id": "mine-1" } })
    expect(mine.headers.get("x-request-id")).toBe("mine-1")
  })
})

describe("request ids in the listener's answer from memory", () => {
  let server: http.Server
  let base = ""

  beforeAll(async () => {
    const body = new TextEncoder().encode("{}")
    const responses = ImmutableResponses.of({
      lookup: (pathname) =>
        pathname === "/v1/things/a"
          ? { body, contentType: "application/json", route: "GET /v1/things/{name}" }
          : undefined
    })
    const runtime = Effect.runSync(
      Effect.runtime<never>().pipe(
        Effect.provideService(FreshIds, fixedIds),
        Effect.provide(Logger.minimumLogLevel(LogLevel.None))
      )
    )
    const early = answerImmutable(responses, runtime, metrics())
    server = http.createServer((request, response) => {
      if (!early(request, response)) response.writeHead(404).end()
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it("take a missing id from the runtime's FreshIds, and echo a usable one", async () => {
    const missing = await fetch(`${base}/v1/things/a`)
    expect(missing.status).toBe(200)
    expect(missing.headers.get("x-request-id")).toBe(FIXED)
    const mine = await fetch(`${base}/v1/things/a`, { headers: { "x-request-id": "mine-2" } })
    expect(mine.headers.get("x-request-id")).toBe("mine-2")
  })
})
