import { Effect, Logger, LogLevel, ManagedRuntime } from "effect"
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ImgsrvApi } from "../../src/api.js"
import { makeHttpMetrics } from "../../src/platform/http/access-log.js"
import { answerCached, type CachedDocument, makeCachedDocuments } from "../../src/platform/http/cached-documents.js"
import { makeRouteTable } from "../../src/platform/http/routes.js"
import type { ProductsDocument } from "../../src/streams/schema.js"
import { expectStatus, publishVersion } from "../catalog/fixtures.js"
import { seedBlob, withDatabase } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"

/**
 * The Simple Streams documents kept rendered (streams/cache.ts) and served by the listener
 * (platform/http/cached-documents.ts), on two replicas sharing one database: a change made
 * through one replica, or by SQL behind both, reaches the other within a second through
 * the catalog generation (migrations/0006); a replica never goes back to a document once
 * it has served a newer one; ETag and 304 behave like the app's.
 */

const encoder = new TextEncoder()

const images = async (app: TestApp, headers: Record<string, string> = {}) => {
  const response = await app.request("GET", "/streams/v1/images.json", { headers })
  const text = await response.text()
  return { response, text, etag: response.headers.get("etag") }
}

/** Polls `probe` until it returns true; the time it took (ms), or throws after `timeoutMs`. */
const within = async (timeoutMs: number, probe: () => Promise<boolean>): Promise<number> => {
  const started = performance.now()
  while (performance.now() - started < timeoutMs) {
    if (await probe()) return performance.now() - started
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`not within ${timeoutMs} ms`)
}

const published = async (app: TestApp, token: string, name: string) => {
  const bytes = (label: string) => encoder.encode(`${name} ${label} ${randomBytes(4).toString("hex")}`)
  const meta = await seedBlob(app, bytes("metadata"))
  const disk = await seedBlob(app, bytes("disk"))
  return publishVersion(app, token, {
    name,
    version: "1.0",
    artifacts: [{ blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] }]
  })
}

describe("Simple Streams documents on two replicas of one database", () => {
  let a: TestApp
  let b: TestApp
  let token: string

  beforeAll(async () => {
    a = await startTestApp()
    // A replica shares the database and the blob store: either may run the other's publish job.
    b = await startTestApp({ databaseUrl: a.databaseUrl, dataDir: a.dataDir })
    token = await a.tokenFor("content-writer")
  })
  afterAll(async () => {
    await b?.close()
    await a?.close()
  })

  it("show a publish on A in B's images.json within a second", async () => {
    const before = await images(b)
    expect(before.text).not.toContain("replicated:1.0")
    await published(a, token, "replicated")
    // The publish job has succeeded (committed) when publishVersion returns.
    await within(1000, async () => (await images(b)).text.includes("\"replicated:1.0:amd64:default\""))
    // The writer's own replica shows it on the very next request.
    expect((await images(a)).text).toContain("\"replicated:1.0:amd64:default\"")
  })

  it("let a client read its own alias write on the next request of the same replica", async () => {
    await published(a, token, "own-writes")
    for (const alias of ["one", "two", "three"]) {
      const put = await a.request("PUT", `/v1/images/own-writes/aliases/${alias}`, {
        token,
        json: { version: "1.0" }
      })
      await expectStatus(put, 200)
      const document = JSON.parse((await images(a)).text) as ProductsDocument
      expect(document.products["own-writes:1.0:amd64:default"]!.aliases.split(",")).toContain(`own-writes/${alias}`)
    }
  })

  it("never serve the older document again once a newer generation was seen (changes made by SQL)", async () => {
    await published(a, token, "by-sql")
    await within(1000, async () => (await images(b)).text.includes("\"by-sql:1.0:amd64:default\""))
    for (let round = 0; round < 5; round++) {
      const title = `Title ${round} ${randomBytes(3).toString("hex")}`
      await withDatabase(
        a,
        (client) => client.query("UPDATE images SET display_name = $1 WHERE name = 'by-sql'", [title])
      )
      // From the first response that shows the change on, every response shows it.
      let seen = false
      await within(1000, async () => {
        const { text } = await images(b)
        const shows = text.includes(`"release_title": "${title}"`)
        if (seen) expect(shows).toBe(true)
        seen ||= shows
        return seen
      })
      for (let i = 0; i < 20; i++) expect((await images(b)).text).toContain(`"release_title": "${title}"`)
    }
  })

  it("keep polling the generation when the notification connection is gone", async () => {
    // Cut B's (and A's) LISTEN connections: changes then arrive through the poll.
    await withDatabase(a, (client) =>
      client.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'imgsrv-listen' " +
          "AND datname = current_database()"
      ))
    const title = `Polled ${randomBytes(3).toString("hex")}`
    await published(a, token, "polled")
    await withDatabase(
      a,
      (client) => client.query("UPDATE images SET display_name = $1 WHERE name = 'polled'", [title])
    )
    await within(2500, async () => (await images(b)).text.includes(`"release_title": "${title}"`))
  })

  it("answer If-None-Match with 304 and the same ETag, on both replicas, and a new ETag after a change", async () => {
    await published(a, token, "etags")
    await within(1000, async () => (await images(b)).text.includes("\"etags:1.0:amd64:default\""))
    const fromA = await images(a)
    const fromB = await images(b)
    expect(fromA.etag).toMatch(/^"[0-9a-f]{64}"$/)
    expect(fromB.etag).toBe(fromA.etag)
    expect(fromA.text).toBe(fromB.text)
    expect(fromA.response.headers.get("content-length")).toBe(String(Buffer.byteLength(fromA.text)))
    expect(fromA.response.headers.get("cache-control")).toBe("no-cache")

    const conditional = await images(b, { "if-none-match": fromA.etag! })
    expect(conditional.response.status).toBe(304)
    expect(conditional.text).toBe("")
    expect(conditional.etag).toBe(fromA.etag)
    expect(conditional.response.headers.get("x-request-id")).toBeTruthy()
    const weak = await images(b, { "if-none-match": `"nope", W/${fromA.etag!}` })
    expect(weak.response.status).toBe(304)

    const head = await b.request("HEAD", "/streams/v1/images.json")
    expect(head.status).toBe(200)
    expect(head.headers.get("etag")).toBe(fromA.etag)
    expect(head.headers.get("content-length")).toBe(fromA.response.headers.get("content-length"))

    const put = await a.request("PUT", "/v1/images/etags/aliases/stable", { token, json: { version: "1.0" } })
    await expectStatus(put, 200)
    await within(1000, async () => (await images(b)).etag !== fromA.etag)
    const changed = await images(b, { "if-none-match": fromA.etag! })
    expect(changed.response.status).toBe(200)
    expect(changed.text).toContain("etags/stable")
  })

  it("serve many concurrent requests during a change, each the old or the new document, never a mix", async () => {
    await published(a, token, "concurrent")
    const put = a.request("PUT", "/v1/images/concurrent/aliases/burst", { token, json: { version: "1.0" } })
    const answers = await Promise.all(Array.from({ length: 40 }, () => images(b)))
    await expectStatus(await put, 200)
    for (const answer of answers) {
      expect(answer.response.status).toBe(200)
      expect(() => JSON.parse(answer.text) as unknown).not.toThrow()
    }
    await within(1000, async () => (await images(b)).text.includes("concurrent/burst"))
  })
})

describe("the listener's cached documents", () => {
  const routes = makeRouteTable(ImgsrvApi)
  let server: http.Server
  let base: string
  let current: CachedDocument | undefined
  const served: Array<number> = []

  beforeAll(async () => {
    const documents = makeCachedDocuments(routes)
    documents.register("/streams/v1/images.json", {
      current: () => current,
      served: (status) => void served.push(status)
    })
    const runtime = ManagedRuntime.make(Logger.minimumLogLevel(LogLevel.None))
    const answer = answerCached(
      documents,
      await runtime.runPromise(Effect.runtime<never>()),
      makeHttpMetrics(() => undefined)
    )
    server = http.createServer((request, response) => {
      if (answer(request, response)) return
      response.writeHead(418).end("app")
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it("leave a request to the app while the owner has no current document, or for another path or method", async () => {
    current = undefined
    expect((await fetch(`${base}/streams/v1/images.json`)).status).toBe(418)
    current = { body: encoder.encode("{}\n"), etag: "\"e1\"", contentType: "application/json", headers: {} }
    expect((await fetch(`${base}/streams/v1/index.json`)).status).toBe(418)
    expect((await fetch(`${base}/streams/v1/images.json`, { method: "POST", body: "x" })).status).toBe(418)
    expect((await fetch(`${base}/streams/v1/images.json/`)).status).toBe(418)
  })

  it("answer the current document, 304 for its ETag, and count what it served", async () => {
    served.length = 0
    current = {
      body: encoder.encode("{\"a\": 1}\n"),
      etag: "\"e2\"",
      contentType: "application/json",
      headers: { "cache-control": "no-cache" }
    }
    const ok = await fetch(`${base}/streams/v1/images.json?ignored=1`, { headers: { "x-request-id": "req-1" } })
    expect(ok.status).toBe(200)
    expect(await ok.text()).toBe("{\"a\": 1}\n")
    expect(ok.headers.get("etag")).toBe("\"e2\"")
    expect(ok.headers.get("x-request-id")).toBe("req-1")
    expect(ok.headers.get("cache-control")).toBe("no-cache")
    const notModified = await fetch(`${base}/streams/v1/images.json`, { headers: { "if-none-match": "\"e2\"" } })
    expect(notModified.status).toBe(304)
    expect(served).toEqual([200, 304])
  })
})
