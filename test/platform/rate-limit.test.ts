import { Duration } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeTokenBuckets } from "../../src/platform/http/rate-limit.js"
import { expectStatus, publishVersion } from "../catalog/fixtures.js"
import { counterOf, scrapeExposition } from "../observability/exposition.js"
import { seedBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { freePort } from "../support/process.js"
import { beginUpload, getUpload, sha256Digest } from "../support/uploads.js"

/**
 * Rate limits (rate-limit.ts): failed authentications per client address, on by default,
 * and an optional general request rate, both answered with 429 problem+json and
 * Retry-After before anything reads the request. Client addresses come from
 * X-Forwarded-For, believed from 127.0.0.1 here (`--trusted-proxies`).
 */

describe("token buckets", () => {
  const rate = { burst: 3, period: Duration.seconds(3) } // one token a second

  it("allow a burst, then say how long until the next token, and refill at the rate", () => {
    const buckets = makeTokenBuckets(rate)
    expect([0, 0, 0].map(() => buckets.take("a", 0))).toEqual([0, 0, 0])
    expect(buckets.take("a", 0)).toBe(1000)
    expect(buckets.wait("a", 400)).toBe(600)
    expect(buckets.take("a", 1000)).toBe(0)
    expect(buckets.take("a", 1000)).toBe(1000)
    // Another key is untouched; waiting takes nothing.
    expect(buckets.wait("b", 1000)).toBe(0)
    expect(buckets.take("b", 1000)).toBe(0)
    // Refilled, never beyond the burst.
    expect([0, 0, 0, 0].map(() => buckets.take("a", 60_000))).toEqual([0, 0, 0, 1000])
  })

  it("keep memory bounded: full buckets are dropped, and the least recently used beyond the limit", () => {
    const buckets = makeTokenBuckets(rate, 100)
    for (let i = 0; i < 1000; i++) buckets.take(`spent-${i}`, 0)
    expect(buckets.size()).toBe(100)
    // The most recent ones are still counted.
    expect(buckets.wait("spent-999", 0)).toBe(0)
    buckets.take("spent-999", 0)
    buckets.take("spent-999", 0)
    expect(buckets.take("spent-999", 0)).toBe(1000)
    // Time passes: buckets full again are dropped as new ones come in.
    for (let i = 0; i < 50; i++) buckets.take(`later-${i}`, 10_000)
    expect(buckets.size()).toBeLessThanOrEqual(50)
  })
})

/** A request from `address` (via the trusted proxy 127.0.0.1). */
const from = (address: string, headers: Record<string, string> = {}) => ({
  headers: { "x-forwarded-for": address, ...headers }
})

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

const BAD = "imgsrv_at_AAAAAAAAAAAAAAAAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAA"

describe("failed authentication per client address", () => {
  let app: TestApp
  let writer: string
  let metricsPort = 0
  beforeAll(async () => {
    metricsPort = await freePort()
    app = await startTestApp({
      settings: {
        "trusted-proxies": "127.0.0.1",
        "rate-limit-auth-failures": "3/1m",
        "metrics-listen": `127.0.0.1:${metricsPort}`
      }
    })
    writer = await app.tokenFor("content-writer")
  })
  afterAll(async () => app?.close())

  const createImage = (address: string, token: string, name: string) =>
    app.request("POST", "/v1/images", { ...from(address, bearer(token)), json: { name } })

  it("answers 429 with Retry-After once an address has spent its failures, even to a good token", async () => {
    for (let i = 0; i < 3; i++) expect((await createImage("198.51.100.1", BAD, "x")).status).toBe(401)
    const refused = await createImage("198.51.100.1", BAD, "x")
    expect(refused.status).toBe(429)
    expect(refused.headers.get("content-type")).toBe("application/problem+json")
    const retryAfter = Number(refused.headers.get("retry-after"))
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 20).toBe(true)
    expect(await refused.json()).toEqual({
      type: "about:blank",
      title: "Too Many Requests",
      status: 429,
      detail: `too many failed authentication attempts from this address; retry after ${retryAfter} s`
    })
    const good = await createImage("198.51.100.1", writer, "from-a-blocked-address")
    expect(good.status).toBe(429)
    const scraped = await scrapeExposition(`http://127.0.0.1:${metricsPort}/metrics`)
    expect(counterOf(scraped, "imgsrv_rate_limited_requests_total", { limit: "auth_failures" })).toBe(2)
    await good.arrayBuffer()
    // Nothing was created by the refused request.
    expect((await app.request("GET", "/v1/images/from-a-blocked-address/versions")).status).toBe(404)
  })

  it("leaves other addresses and anonymous routes alone", async () => {
    for (let i = 0; i < 4; i++) await (await createImage("198.51.100.2", BAD, "x")).arrayBuffer()
    expect((await createImage("198.51.100.2", BAD, "x")).status).toBe(429)
    // A good token from another address works; a bad one there is still a plain 401.
    await expectStatus(await createImage("198.51.100.3", writer, "from-another-address"), 201)
    expect((await createImage("198.51.100.4", BAD, "x")).status).toBe(401)
    // The blocked address still reads anonymously.
    const read = await app.request("GET", "/streams/v1/index.json", from("198.51.100.2"))
    expect(read.status).toBe(200)
    await read.arrayBuffer()
  })

  it("refuses a part upload without reading its body or touching the upload", async () => {
    const bytes = new Uint8Array(6 * 1024 * 1024).fill(7)
    const begun = await beginUpload(app, writer, {
      expected_digest: sha256Digest(bytes),
      expected_size_bytes: bytes.byteLength
    })
    for (let i = 0; i < 4; i++) await (await createImage("198.51.100.5", BAD, "x")).arrayBuffer()
    const refused = await app.request("PUT", `/v1/uploads/${begun.session.id}/parts/1`, {
      ...from("198.51.100.5", bearer(writer)),
      body: bytes
    })
    expect(refused.status).toBe(429)
    expect(refused.headers.get("connection")).toBe("close")
    await refused.arrayBuffer()
    const session = await getUpload(app, begun.session.id)
    expect(session).toMatchObject({ state: "created", parts: [] })
  })

  it("refills: after Retry-After the address may try again", async () => {
    const refill = await startTestApp({
      settings: { "trusted-proxies": "127.0.0.1", "rate-limit-auth-failures": "2/1s" }
    })
    try {
      const attempt = () => refill.request("POST", "/v1/images", { ...from("192.0.2.1", bearer(BAD)), json: {} })
      expect([(await attempt()).status, (await attempt()).status]).toEqual([401, 401])
      const refused = await attempt()
      expect(refused.status).toBe(429)
      await new Promise((resolve) => setTimeout(resolve, Number(refused.headers.get("retry-after")) * 1000))
      expect((await attempt()).status).toBe(401)
    } finally {
      await refill.close()
    }
  })

  it("cannot be dodged with X-Forwarded-For when no proxy is trusted", async () => {
    const direct = await startTestApp({ settings: { "rate-limit-auth-failures": "2/1m" } })
    try {
      const statuses = []
      for (let i = 0; i < 4; i++) {
        const response = await direct.request("POST", "/v1/images", {
          ...from(`203.0.113.${i}`, bearer(BAD)),
          json: {}
        })
        statuses.push(response.status)
        await response.arrayBuffer()
      }
      expect(statuses).toEqual([401, 401, 429, 429])
    } finally {
      await direct.close()
    }
  })
})

describe("the general request rate (off by default)", () => {
  let publisher: TestApp
  let limited: TestApp
  beforeAll(async () => {
    publisher = await startTestApp()
    // A second replica on the same catalog, with the limit.
    limited = await startTestApp({
      databaseUrl: publisher.databaseUrl,
      dataDir: publisher.dataDir,
      settings: { "trusted-proxies": "127.0.0.1", "rate-limit-requests": "3/1m" }
    })
  })
  afterAll(async () => {
    await limited?.close()
    await publisher?.close()
  })

  const statusesOf = async (count: number, request: () => Promise<Response>) => {
    const statuses = []
    for (let i = 0; i < count; i++) {
      const response = await request()
      statuses.push(response.status)
      await response.arrayBuffer()
    }
    return statuses
  }

  it("is off unless configured", async () => {
    expect(await statusesOf(10, () => publisher.request("GET", "/streams/v1/index.json"))).not.toContain(429)
  })

  it("counts per client address, and per credential when there is one", async () => {
    const anonymous = () => limited.request("GET", "/streams/v1/index.json", from("198.51.100.10"))
    expect(await statusesOf(4, anonymous)).toEqual([200, 200, 200, 429])
    expect(await statusesOf(1, () => limited.request("GET", "/streams/v1/index.json", from("198.51.100.11"))))
      .toEqual([200])
    // One token's requests share one bucket, from any address; another token has its own.
    const writer = await limited.tokenFor("content-writer")
    const other = await limited.tokenFor("content-writer")
    const upload = (token: string, address: string) => () =>
      limited.request("GET", "/v1/images/none/versions", from(address, bearer(token)))
    expect([
      ...await statusesOf(2, upload(writer, "192.0.2.20")),
      ...await statusesOf(2, upload(writer, "192.0.2.21"))
    ]).toEqual([404, 404, 404, 429])
    expect(await statusesOf(1, upload(other, "192.0.2.20"))).toEqual([404])
    // Probes are never limited.
    expect(await statusesOf(6, () => limited.request("GET", "/healthz", from("198.51.100.10")))).toEqual(
      Array(6).fill(204)
    )
  })

  it("applies to published manifests answered from memory too", async () => {
    const writer = await publisher.tokenFor("content-writer")
    const blob = await seedBlob(publisher, new TextEncoder().encode("limited manifest disk"))
    await publishVersion(publisher, writer, { name: "limited", version: "1.0", artifacts: [{ blob }] })
    const manifest = () => limited.request("GET", "/v1/images/limited/versions/1.0", from("198.51.100.30"))
    const statuses = await statusesOf(4, manifest)
    expect(statuses).toEqual([200, 200, 200, 429])
    // The last two were answered from memory (the first one put the manifest there).
    expect(limited.immutableResponses().lookup("/v1/images/limited/versions/1.0")).toBeDefined()
  })
})
