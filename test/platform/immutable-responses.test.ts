import { HttpApi, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Clock, Deferred, Effect, Fiber, Logger, LogLevel, Option } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { RequireContentWrite } from "../../src/auth/middleware.js"
import { CatalogGroup } from "../../src/catalog/api.js"
import { makePublishedManifests } from "../../src/catalog/manifest-cache.js"
import { ImageId, type Manifest, type ManifestRows, manifestToWire, VersionId } from "../../src/catalog/schema.js"
import { makeHttpMetrics } from "../../src/platform/http/access-log.js"
import { answerImmutable, ImmutableResponses } from "../../src/platform/http/fast-path.js"
import { API_ID, apiOf, makeRouteTable, type RouteTable } from "../../src/platform/http/routes.js"
import { addArtifact, createDraft, expectStatus, publishVersion } from "../catalog/fixtures.js"
import { counterOf, scrapeExposition } from "../observability/exposition.js"
import { seedBlob, type SeededBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { startOtlpReceiver } from "../support/otlp-receiver.js"
import { freePort } from "../support/process.js"

/**
 * Immutable responses (platform/http/fast-path.ts): a published manifest, once the app has read
 * it into the manifest cache (catalog/manifest-cache.ts), is answered by the listener from
 * memory. These tests pin down that this path is taken, and that a client and an operator
 * cannot tell it from the app: same status, body and headers, HEAD, X-Request-ID, access-log
 * line and HTTP metrics; and that nothing that can change (drafts, alias refs) or that is
 * another spelling or route is answered.
 */

const encoder = new TextEncoder()

const catalogRoutes = makeRouteTable(apiOf(CatalogGroup))
const at = new Date("2026-01-02T03:04:05.000Z")
const rowsOf = (name: string, version: string, state: "draft" | "published"): ManifestRows => ({
  image: {
    id: ImageId.make("6f1c2a34-0000-4000-8000-000000000001"),
    name,
    display_name: null,
    description: null,
    created_at: at,
    updated_at: at
  },
  version: {
    id: VersionId.make("6f1c2a34-0000-4000-8000-000000000002"),
    image_id: ImageId.make("6f1c2a34-0000-4000-8000-000000000001"),
    version,
    state,
    published_at: state === "published" ? at : null,
    yanked_at: null,
    yank_reason: null,
    created_at: at,
    updated_at: at
  },
  artifacts: []
})

/** The cache over stored rows (name/version → rows), counting the loads that reach them. */
const cacheOver = (stored: ReadonlyArray<ManifestRows>, options: { capacity?: number; routes?: RouteTable } = {}) => {
  const loads: Array<string> = []
  let gate: Deferred.Deferred<void> | undefined
  const built = Effect.runSync(makePublishedManifests({
    routes: options.routes ?? catalogRoutes,
    capacity: options.capacity ?? 16,
    loadPublished: (name, version) =>
      Effect.gen(function*() {
        loads.push(`${name}/${version}`)
        if (gate !== undefined) yield* Deferred.await(gate)
        const rows = stored.find((r) => r.image.name === name && r.version.version === version)
        return rows?.version.state === "published" ? Option.some(rows) : Option.none()
      })
  }))
  return { ...built, loads, hold: (deferred: Deferred.Deferred<void>) => (gate = deferred) }
}

describe("the published-manifest cache", () => {
  it("answers the manifest paths of a cached published version, a ref naming it too, never a draft", () => {
    const published = rowsOf("fixed", "1.0", "published")
    const { loads, manifests, responses } = cacheOver([published, rowsOf("fixed", "2.0", "draft")])
    expect(responses.lookup("/v1/images/fixed/versions/1.0")).toBeUndefined()

    const loaded = Effect.runSync(manifests.get("fixed", "1.0"))
    const body = encoder.encode(JSON.stringify(manifestToWire(published)))
    expect(Option.map(loaded, (m) => m.body)).toEqual(Option.some(body))
    expect(Effect.runSync(manifests.get("fixed", "1.0"))).toEqual(loaded)
    expect(loads).toEqual(["fixed/1.0"])
    expect(responses.lookup("/v1/images/fixed/versions/1.0")).toEqual({
      body,
      contentType: "application/json",
      route: "GET /v1/images/{name}/versions/{version}"
    })
    expect(responses.lookup("/v1/images/fixed/refs/1.0")).toEqual({
      body,
      contentType: "application/json",
      route: "GET /v1/images/{name}/refs/{ref}"
    })
    // The encoding handed to the app is the cached one.
    expect(manifests.bodyOf(Option.getOrThrow(loaded).rows)).toBe(Option.getOrThrow(loaded).body)
    expect(manifests.bodyOf(published)).toEqual(body)

    // Another spelling, another route or another image: left to the app.
    for (
      const path of [
        "/v1/images/fixed/versions/1%2E0",
        "/v1/images/fixed/versions/1.0/",
        "/v1/images/fixed/versions/1.0/artifacts",
        "/v1/images/other/versions/1.0",
        "/v1/images/fixed"
      ]
    ) {
      expect(responses.lookup(path), path).toBeUndefined()
    }

    // A draft is loaded each time and never cached.
    expect(Effect.runSync(manifests.get("fixed", "2.0"))).toEqual(Option.none())
    expect(Effect.runSync(manifests.get("fixed", "2.0"))).toEqual(Option.none())
    expect(manifests.peek("fixed", "2.0")).toBeUndefined()
    expect(responses.lookup("/v1/images/fixed/versions/2.0")).toBeUndefined()
    expect(loads).toEqual(["fixed/1.0", "fixed/2.0", "fixed/2.0"])
  })

  it("forgets a miss at once: a version published within the same millisecond reads as published", () => {
    // A clock that never moves: the whole test happens within one millisecond.
    const frozen = Effect.withClock({
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => at.getTime(),
      currentTimeMillis: Effect.succeed(at.getTime()),
      unsafeCurrentTimeNanos: () => BigInt(at.getTime()) * 1_000_000n,
      currentTimeNanos: Effect.succeed(BigInt(at.getTime()) * 1_000_000n),
      sleep: () => Effect.void
    })
    const stored = [rowsOf("soon", "1.0", "draft")]
    const { loads, manifests } = cacheOver(stored)
    expect(Effect.runSync(frozen(manifests.get("soon", "1.0")))).toEqual(Option.none())
    const published = rowsOf("soon", "1.0", "published")
    stored[0] = published
    expect(Option.map(Effect.runSync(frozen(manifests.get("soon", "1.0"))), (m) => m.rows)).toEqual(
      Option.some(published)
    )
    expect(loads).toEqual(["soon/1.0", "soon/1.0"])
  })

  it("answers only anonymous routes", () => {
    const guarded = makeRouteTable(
      HttpApi.make(API_ID).add(
        HttpApiGroup.make("catalog").add(
          HttpApiEndpoint.get("getManifest", "/v1/images/:name/versions/:version").middleware(RequireContentWrite)
        )
      )
    )
    const { manifests, responses } = cacheOver([rowsOf("fixed", "1.0", "published")], { routes: guarded })
    expect(Option.isSome(Effect.runSync(manifests.get("fixed", "1.0")))).toBe(true)
    expect(responses.lookup("/v1/images/fixed/versions/1.0")).toBeUndefined()
  })

  it("stays within its entry bound", () => {
    const stored = ["a", "b", "c", "d", "e"].map((name) => rowsOf(name, "1", "published"))
    const { manifests } = cacheOver(stored, { capacity: 2 })
    for (const rows of stored) Effect.runSync(manifests.get(rows.image.name, "1"))
    expect(stored.filter((rows) => manifests.peek(rows.image.name, "1") !== undefined).length).toBeLessThanOrEqual(2)
    expect(manifests.peek("e", "1")).toBeDefined()
  })

  it("forgets everything when cleared, and a load in flight then does not land", async () => {
    const { hold, manifests, responses } = cacheOver([rowsOf("a", "1", "published"), rowsOf("b", "1", "published")])
    Effect.runSync(manifests.get("a", "1"))
    expect(responses.lookup("/v1/images/a/versions/1")).toBeDefined()
    Effect.runSync(manifests.clear)
    expect(responses.lookup("/v1/images/a/versions/1")).toBeUndefined()
    expect(manifests.peek("a", "1")).toBeUndefined()

    const gate = Effect.runSync(Deferred.make<void>())
    hold(gate)
    const loading = Effect.runFork(manifests.get("b", "1"))
    await new Promise((resolve) => setTimeout(resolve, 10))
    Effect.runSync(manifests.clear)
    Effect.runSync(Deferred.succeed(gate, undefined))
    // The request that loaded it gets it; the cache read next does not have it.
    expect(Option.isSome(await Effect.runPromise(Fiber.join(loading)))).toBe(true)
    expect(manifests.peek("b", "1")).toBeUndefined()
  })

  it("shares one load between concurrent requests, and one going away does not end it for the others", async () => {
    const { hold, loads, manifests } = cacheOver([rowsOf("shared", "1", "published")])
    const gate = Effect.runSync(Deferred.make<void>())
    hold(gate)
    const first = Effect.runFork(manifests.get("shared", "1"))
    await new Promise((resolve) => setTimeout(resolve, 10))
    const second = Effect.runFork(manifests.get("shared", "1"))
    await new Promise((resolve) => setTimeout(resolve, 10))
    await Effect.runPromise(Fiber.interrupt(first))
    Effect.runSync(Deferred.succeed(gate, undefined))
    expect(Option.isSome(await Effect.runPromise(Fiber.join(second)))).toBe(true)
    expect(loads).toEqual(["shared/1"])
    expect(manifests.peek("shared", "1")).toBeDefined()
  })
})

/** node:http, since fetch refuses a GET with a body. */
const send = (method: string, url: string, body?: string) =>
  new Promise<string>((resolve, reject) => {
    const headers = body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) }
    const req = http.request(url, { method, headers }, (res) => {
      let text = ""
      res.setEncoding("utf8").on("data", (c: string) => (text += c)).on("end", () => resolve(text))
    })
    req.on("error", reject)
    req.end(body)
  })

describe("the listener's early answer", () => {
  /** A Node server answering from `responses` first, counting what reaches the "app". */
  const serve = async () => {
    const body = encoder.encode("{\"a\":1}")
    const responses = ImmutableResponses.of({
      lookup: (pathname) =>
        pathname === "/v1/things/a"
          ? { body, contentType: "application/json", route: "GET /v1/things/{name}" }
          : undefined
    })
    const runtime = Effect.runSync(Effect.runtime<never>().pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))))
    const early = answerImmutable(responses, runtime, makeHttpMetrics(() => ({ address: "127.0.0.1", port: 0 })))
    let reachedApp = 0
    const server = http.createServer((request, response) => {
      if (early(request, response)) return
      reachedApp++
      request.resume()
      request.on("end", () => response.end("app"))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    return { base, reachedApp: () => reachedApp, close: () => new Promise((r) => server.close(r)) }
  }

  it("answers GET and HEAD of a remembered path from memory, and leaves everything else to the app", async () => {
    const s = await serve()
    try {
      const got = await fetch(`${s.base}/v1/things/a?ignored=1`, { headers: { "x-request-id": "mine" } })
      expect(got.status).toBe(200)
      expect(got.headers.get("content-type")).toBe("application/json")
      expect(got.headers.get("content-length")).toBe("7")
      expect(got.headers.get("x-request-id")).toBe("mine")
      expect(await got.text()).toBe("{\"a\":1}")
      const head = await fetch(`${s.base}/v1/things/a`, { method: "HEAD" })
      expect(head.headers.get("content-length")).toBe("7")
      expect(head.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
      expect(await head.text()).toBe("")
      expect(s.reachedApp()).toBe(0)

      for (
        const [method, path, body] of [
          ["GET", "/v1/things/b", undefined],
          ["GET", "/v1/things/a/", undefined],
          ["POST", "/v1/things/a", undefined],
          ["GET", "/v1/things/a", "a body"]
        ] as const
      ) {
        expect(await send(method, `${s.base}${path}`, body), `${method} ${path}`).toBe("app")
      }
      expect(s.reachedApp()).toBe(4)
    } finally {
      await s.close()
    }
  })
})

describe("published manifests answered from memory", () => {
  let app: TestApp
  let metricsUrl = ""
  let writer: string
  let blob: SeededBlob
  const logLines: Array<string> = []

  beforeAll(async () => {
    const port = await freePort()
    app = await startTestApp({ settings: { "metrics-listen": `127.0.0.1:${port}`, "verbosity": "info" } })
    metricsUrl = `http://127.0.0.1:${port}/metrics`
    writer = await app.tokenFor("content-writer")
    blob = await seedBlob(app, encoder.encode("remembered disk"))
    const write = process.stderr.write
    vi.spyOn(process.stderr, "write").mockImplementation(
      ((chunk: unknown, ...rest: Array<unknown>) => {
        if (typeof chunk === "string" && chunk.includes("\"msg\":\"http request\"")) logLines.push(chunk)
        return Reflect.apply(write, process.stderr, [chunk, ...rest]) as boolean
      }) as typeof process.stderr.write
    )
  })
  afterAll(async () => {
    vi.restoreAllMocks()
    await app?.close()
  })

  const accessLogOf = (requestId: string) => {
    const line = logLines.find((l) => l.includes(`"request_id":"${requestId}"`))
    expect(line, `access log of ${requestId}`).toBeDefined()
    const { time: _time, duration_ms, ...rest } = JSON.parse(line!) as Record<string, unknown>
    expect(typeof duration_ms).toBe("number")
    return rest
  }

  const requestsCounted = async (method: string) =>
    counterOf(await scrapeExposition(metricsUrl), "imgsrv_http_requests_total", {
      http_request_method: method,
      http_route: "GET /v1/images/{name}/versions/{version}",
      http_response_status_code: "200"
    })

  it("look exactly like the app's answer: body, headers, HEAD, request id, access log and metrics", async () => {
    await publishVersion(app, writer, { name: "fixed", version: "1.0", artifacts: [{ blob }] })
    const path = "/v1/images/fixed/versions/1.0"
    const answers = []
    for (const id of ["first", "second", "third"]) {
      const res = await app.request("GET", `${path}?token=secret-value`, {
        headers: { "x-request-id": id, "user-agent": "manifest-reader/1.0" }
      })
      answers.push({
        status: res.status,
        headers: [...res.headers.entries()].filter(([name]) => name !== "date"),
        body: await res.text()
      })
    }
    expect(answers[1]).toEqual({
      ...answers[0],
      headers: answers[0]!.headers.map(([n, v]) => [n, n === "x-request-id" ? "second" : v])
    })
    expect(answers[2]!.body).toBe(answers[0]!.body)
    expect((JSON.parse(answers[0]!.body) as Manifest).version.state).toBe("published")

    const head = await app.request("HEAD", path, {
      headers: { "x-request-id": "head", "user-agent": "manifest-reader/1.0" }
    })
    expect(head.status).toBe(200)
    expect(head.headers.get("content-length")).toBe(String(encoder.encode(answers[0]!.body).byteLength))
    expect(await head.text()).toBe("")
    const generated = await app.request("GET", path)
    expect(generated.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
    await generated.arrayBuffer()

    const logged = accessLogOf("first")
    expect(logged).toEqual({
      level: "info",
      msg: "http request",
      request_id: "first",
      method: "GET",
      route: "GET /v1/images/{name}/versions/{version}",
      path: "/v1/images/fixed/versions/1.0?token=REDACTED",
      status: 200,
      response_bytes: encoder.encode(answers[0]!.body).byteLength,
      client_addr: "127.0.0.1",
      remote_addr: "127.0.0.1",
      user_agent: "manifest-reader/1.0"
    })
    expect(accessLogOf("second")).toEqual({ ...logged, request_id: "second" })
    expect(accessLogOf("head")).toEqual({
      ...logged,
      request_id: "head",
      method: "HEAD",
      path: "/v1/images/fixed/versions/1.0",
      response_bytes: 0
    })

    const counted = await requestsCounted("GET")
    await (await app.request("GET", path)).arrayBuffer()
    expect(await requestsCounted("GET")).toBe(counted + 1)
    expect(await requestsCounted("HEAD")).toBe(1)
    // Every request has finished: the gauge is back to zero (it counts, it is not set).
    const scraped = await scrapeExposition(metricsUrl)
    for (const method of ["GET", "HEAD"]) {
      const gauges = scraped.samples.filter((s) =>
        s.name === "http_server_active_requests" && s.labels["http_request_method"] === method
      )
      // One series per listener that ever served in this process; none has a request in flight.
      expect(gauges.length, method).toBeGreaterThan(0)
      expect(gauges.every((g) => g.value === 0), method).toBe(true)
    }
  })

  it("answer refs naming the version itself, never drafts, alias refs or another spelling of the path", async () => {
    await publishVersion(app, writer, { name: "moving", version: "1", artifacts: [{ blob }] })
    await publishVersion(app, writer, { name: "moving", version: "2", artifacts: [{ blob }] })
    const v1 = await app.request("GET", "/v1/images/moving/versions/1").then((r) => r.text())
    for (let i = 0; i < 2; i++) {
      expect(await app.request("GET", "/v1/images/moving/refs/1").then((r) => r.text())).toBe(v1)
    }

    await app.request("PUT", "/v1/images/moving/aliases/stable", { token: writer, json: { version: "1" } })
      .then((r) => expectStatus(r, 200))
    expect(
      (await app.request("GET", "/v1/images/moving/refs/stable").then((r) => expectStatus<Manifest>(r, 200))).version
        .version
    )
      .toBe("1")
    await app.request("PUT", "/v1/images/moving/aliases/stable", { token: writer, json: { version: "2" } })
      .then((r) => expectStatus(r, 200))
    expect(
      (await app.request("GET", "/v1/images/moving/refs/stable").then((r) => expectStatus<Manifest>(r, 200))).version
        .version
    )
      .toBe("2")

    await createDraft(app, writer, "moving", "3")
    expect(
      (await app.request("GET", "/v1/images/moving/versions/3").then((r) => expectStatus<Manifest>(r, 200))).artifacts
    )
      .toHaveLength(0)
    await addArtifact(app, writer, "moving", "3", { blob })
    expect(
      (await app.request("GET", "/v1/images/moving/versions/3").then((r) => expectStatus<Manifest>(r, 200))).artifacts
    )
      .toHaveLength(1)

    // What the listener remembered: the published version's paths, never an alias or a draft.
    const remembered = app.immutableResponses()
    expect(remembered.lookup("/v1/images/moving/versions/1")?.body).toEqual(encoder.encode(v1))
    expect(remembered.lookup("/v1/images/moving/refs/1")).toBeDefined()
    expect(remembered.lookup("/v1/images/moving/refs/stable")).toBeUndefined()
    expect(remembered.lookup("/v1/images/moving/versions/3")).toBeUndefined()

    // The routing rules still apply to a remembered path.
    const slash = await app.request("GET", "/v1/images/moving/versions/1/")
    expect(slash.status).toBe(404)
    expect(await slash.text()).toBe("404 page not found\n")
    const post = await app.request("POST", "/v1/images/moving/versions/1")
    expect(post.status).toBe(405)
    await post.arrayBuffer()
    expect(await app.request("GET", "/v1/images/moving/versions/1?any=query").then((r) => r.text())).toBe(v1)
  })
})

describe("with tracing on", () => {
  it("every request runs in the app, so each gets its span and X-Trace-ID", async () => {
    const receiver = await startOtlpReceiver()
    const app = await startTestApp({
      settings: { "otel-endpoint": receiver.endpoint, "otel-service-name": "imgsrv-test" }
    })
    try {
      const writer = await app.tokenFor("content-writer")
      const blob = await seedBlob(app, encoder.encode("traced disk"))
      await publishVersion(app, writer, { name: "traced", version: "1", artifacts: [{ blob }] })
      for (let i = 0; i < 3; i++) {
        const res = await app.request("GET", "/v1/images/traced/versions/1")
        expect(res.status).toBe(200)
        expect(res.headers.get("x-trace-id")).toMatch(/^[0-9a-f]{32}$/)
        await res.arrayBuffer()
      }
    } finally {
      await app.close()
      await receiver.close()
    }
  })
})
