import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck, Layer, ManagedRuntime, Redacted, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import { readdirSync } from "node:fs"
import { rm } from "node:fs/promises"
import * as http from "node:http"
import { digestFromHex, type Sha256Digest } from "../../src/contract/digest.js"
import { makeHttpMetrics, serverMiddleware } from "../../src/platform/http/access-log.js"
import { apiMiddleware } from "../../src/platform/http/api-middleware.js"
import { ifRangeMatches, isNotModified, parseRange, serveBlob } from "../../src/platform/http/download.js"
import { apiOf, makeRouteTable } from "../../src/platform/http/routes.js"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { makeFilesystemBlobStore } from "../../src/platform/storage/blob-store/filesystem.js"
import { casKey, stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { makeS3BlobStore } from "../../src/platform/storage/blob-store/s3.js"
import { createBucket, tempDir } from "../support/harness.js"

describe("parseRange", () => {
  it("serves the forms bytes=S-E, bytes=S- and bytes=-N, clamping the end", () => {
    expect(parseRange(undefined, 10)).toEqual({ _tag: "Full" })
    expect(parseRange("bytes=0-0", 10)).toEqual({ _tag: "Partial", start: 0, end: 0 })
    expect(parseRange("bytes=2-5", 10)).toEqual({ _tag: "Partial", start: 2, end: 5 })
    expect(parseRange("bytes=2-500", 10)).toEqual({ _tag: "Partial", start: 2, end: 9 })
    expect(parseRange("bytes=7-", 10)).toEqual({ _tag: "Partial", start: 7, end: 9 })
    expect(parseRange("bytes=-4", 10)).toEqual({ _tag: "Partial", start: 6, end: 9 })
    expect(parseRange("bytes=-40", 10)).toEqual({ _tag: "Partial", start: 0, end: 9 })
    expect(parseRange("  bytes=1-2  ", 10)).toEqual({ _tag: "Partial", start: 1, end: 2 })
  })

  it("answers 416 (never 400) for every other form", () => {
    for (
      const header of [
        "items=0-1",
        "bytes=",
        "bytes=0-1,3-4",
        "bytes=a-b",
        "bytes=10-",
        "bytes=10-12",
        "bytes=5-4",
        "bytes=-0",
        "bytes=--1",
        "bytes=1",
        "bytes=0x1-2",
        "bytes=1.5-2"
      ]
    ) {
      expect(parseRange(header, 10), header).toEqual({ _tag: "Unsatisfiable" })
    }
    expect(parseRange("bytes=0-0", 0)).toEqual({ _tag: "Unsatisfiable" })
    expect(parseRange("bytes=-1", 0)).toEqual({ _tag: "Unsatisfiable" })
  })

  it("always yields a non-empty range inside the object", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 1, max: 1_000_000 }),
        FastCheck.oneof(
          FastCheck.tuple(FastCheck.nat(2_000_000), FastCheck.option(FastCheck.nat(2_000_000)))
            .map(([s, e]) => `bytes=${s}-${e ?? ""}`),
          FastCheck.nat(2_000_000).map((n) => `bytes=-${n}`),
          FastCheck.string()
        ),
        (size, header) => {
          const r = parseRange(header, size)
          return r._tag !== "Partial" || (r.start >= 0 && r.start <= r.end && r.end < size)
        }
      )
    )
  })
})

describe("conditional requests", () => {
  const etag = "\"sha256:" + "a".repeat(64) + "\""
  const modified = new Date("2026-05-14T09:12:03.481Z")

  it("If-None-Match matches strongly or weakly, in lists, and *", () => {
    expect(isNotModified({ ifNoneMatch: etag }, etag, modified)).toBe(true)
    expect(isNotModified({ ifNoneMatch: `W/${etag}` }, etag, modified)).toBe(true)
    expect(isNotModified({ ifNoneMatch: `"x", ${etag}` }, etag, modified)).toBe(true)
    expect(isNotModified({ ifNoneMatch: "*" }, etag, modified)).toBe(true)
    expect(isNotModified({ ifNoneMatch: "\"other\"" }, etag, modified)).toBe(false)
  })

  it("a non-matching If-None-Match disables If-Modified-Since", () => {
    const later = "Fri, 15 May 2026 00:00:00 GMT"
    expect(isNotModified({ ifModifiedSince: later }, etag, modified)).toBe(true)
    expect(isNotModified({ ifNoneMatch: "\"other\"", ifModifiedSince: later }, etag, modified)).toBe(false)
    expect(isNotModified({ ifNoneMatch: "  ", ifModifiedSince: later }, etag, modified)).toBe(true)
  })

  it("If-Modified-Since compares whole seconds and ignores garbage", () => {
    expect(isNotModified({ ifModifiedSince: "Thu, 14 May 2026 09:12:03 GMT" }, etag, modified)).toBe(true)
    expect(isNotModified({ ifModifiedSince: "Thu, 14 May 2026 09:12:02 GMT" }, etag, modified)).toBe(false)
    expect(isNotModified({ ifModifiedSince: "yesterday" }, etag, modified)).toBe(false)
  })

  it("If-Range compares entity tags strongly (W/ never matches) and dates by seconds", () => {
    expect(ifRangeMatches(undefined, etag, modified)).toBe(true)
    expect(ifRangeMatches(etag, etag, modified)).toBe(true)
    expect(ifRangeMatches(`W/${etag}`, etag, modified)).toBe(false)
    expect(ifRangeMatches("\"other\"", etag, modified)).toBe(false)
    expect(ifRangeMatches("Thu, 14 May 2026 09:12:03 GMT", etag, modified)).toBe(true)
    expect(ifRangeMatches("Thu, 14 May 2026 09:12:02 GMT", etag, modified)).toBe(false)
    expect(ifRangeMatches("not a date", etag, modified)).toBe(false)
  })
})

// --- Through HTTP, against both real stores -------------------------------------------

const BlobGroup = HttpApiGroup.make("blobtest").add(
  HttpApiEndpoint.get("get", "/t/:name").setPath(Schema.Struct({ name: Schema.String }))
)
const TestApi = HttpApi.make("imgsrv").add(BlobGroup)
const routes = makeRouteTable(TestApi)

interface Served {
  readonly digest: Sha256Digest
  readonly bytes: Uint8Array
}

const serve = (blobs: Map<string, Served>) =>
  HttpApiBuilder.group(
    apiOf(BlobGroup),
    "blobtest",
    (handlers) =>
      handlers.handleRaw("get", ({ path }) =>
        Effect.gen(function*() {
          const blob = blobs.get(path.name)!
          return yield* serveBlob({
            key: casKey(blob.digest),
            sizeBytes: blob.bytes.length,
            digest: blob.digest,
            lastModified: new Date("2026-05-14T09:12:03.481Z"),
            contentType: "application/x-qemu-disk",
            route: "GET /t/{name}"
          })
        }).pipe(Effect.orDie))
  )

const startServer = (store: Layer.Layer<BlobStore>, blobs: Map<string, Served>) => {
  const layer = HttpApiBuilder.serve(
    serverMiddleware(routes, { tracing: false, metrics: makeHttpMetrics(() => ({ address: "127.0.0.1", port: 0 })) })
  ).pipe(
    Layer.provide(
      HttpApiBuilder.api(TestApi).pipe(
        Layer.provide(serve(blobs)),
        Layer.provide(HttpApiBuilder.middleware(apiMiddleware({ routes })))
      )
    ),
    Layer.provideMerge(store),
    Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
  )
  return ManagedRuntime.make(layer)
}

const sha = (bytes: Uint8Array) => digestFromHex(createHash("sha256").update(bytes).digest("hex"))

for (const kind of ["filesystem", "s3"] as const) {
  describe(`serveBlob over HTTP (${kind} store)`, () => {
    const blobs = new Map<string, Served>()
    let runtime: ManagedRuntime.ManagedRuntime<BlobStore | HttpServer.HttpServer, unknown>
    let base = ""
    let root = ""
    const big = new Uint8Array(8 * 1024 * 1024).map((_, i) => (i * 31) & 255)
    const small = new TextEncoder().encode("0123456789")
    const empty = new Uint8Array(0)

    beforeAll(async () => {
      root = await tempDir()
      const store = kind === "filesystem"
        ? Layer.scoped(BlobStore, Effect.orDie(makeFilesystemBlobStore(root)))
        : Layer.scoped(
          BlobStore,
          Effect.promise(() => createBucket()).pipe(Effect.flatMap((s3) =>
            makeS3BlobStore({
              endpoint: s3.endpoint,
              bucket: s3.bucket,
              region: "",
              accessKeyId: s3.accessKeyId,
              secretAccessKey: Redacted.make(s3.secretAccessKey),
              useTls: false,
              pathStyle: true
            })
          ))
        )
      runtime = startServer(store, blobs)
      const address = await runtime.runPromise(HttpServer.HttpServer.pipe(Effect.map((s) => s.address)))
      base = `http://127.0.0.1:${address._tag === "TcpAddress" ? address.port : 0}`
      for (const [name, bytes] of [["big", big], ["small", small], ["empty", empty]] as const) {
        const digest = sha(bytes)
        blobs.set(name, { digest, bytes })
        await runtime.runPromise(Effect.gen(function*() {
          const s = yield* BlobStore
          const key = casKey(digest)
          const stage = stagingKey(`00000000-0000-4000-8000-00000000000${blobs.size}`)
          const upload = yield* s.createMultipartUpload(stage)
          const part = yield* s.putPart(stage, upload, 1, Stream.make(bytes), bytes.length)
          yield* s.completeMultipartUpload(stage, upload, [{ partNumber: 1, etag: part.etag }])
          yield* s.move(stage, key)
        }))
      }
    })
    afterAll(async () => {
      await runtime?.dispose()
      await rm(root, { recursive: true, force: true })
    })

    const get = (name: string, headers: Record<string, string> = {}, method = "GET") =>
      fetch(`${base}/t/${name}`, { method, headers })

    it("200 with the always-set headers and byte-identical content", async () => {
      const res = await get("small")
      expect(res.status).toBe(200)
      expect(res.headers.get("etag")).toBe(`"${blobs.get("small")!.digest}"`)
      expect(res.headers.get("accept-ranges")).toBe("bytes")
      expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
      expect(res.headers.get("content-type")).toBe("application/x-qemu-disk")
      expect(res.headers.get("last-modified")).toBe("Thu, 14 May 2026 09:12:03 GMT")
      expect(res.headers.get("content-length")).toBe("10")
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(small)
      const whole = await get("big")
      expect(sha(new Uint8Array(await whole.arrayBuffer()))).toBe(blobs.get("big")!.digest)
    })

    it("HEAD carries the full Content-Length and no body", async () => {
      const res = await get("big", {}, "HEAD")
      expect(res.status).toBe(200)
      expect(res.headers.get("content-length")).toBe(String(big.length))
      expect((await res.arrayBuffer()).byteLength).toBe(0)
      const partial = await get("big", { range: "bytes=-4" }, "HEAD")
      expect(partial.status).toBe(206)
      expect(partial.headers.get("content-range")).toBe(`bytes ${big.length - 4}-${big.length - 1}/${big.length}`)
      expect(partial.headers.get("content-length")).toBe("4")
    })

    it("serves the range matrix: first byte, suffix, open-ended, clamped, beyond size, multi-range, empty blob", async () => {
      const first = await get("small", { range: "bytes=0-0" })
      expect(first.status).toBe(206)
      expect(first.headers.get("content-range")).toBe("bytes 0-0/10")
      expect(await first.text()).toBe("0")
      const suffix = await get("small", { range: "bytes=-4" })
      expect([suffix.status, await suffix.text()]).toEqual([206, "6789"])
      const open = await get("small", { range: "bytes=7-" })
      expect([open.status, await open.text()]).toEqual([206, "789"])
      const clamped = await get("small", { range: "bytes=8-100" })
      expect([clamped.status, clamped.headers.get("content-range"), await clamped.text()])
        .toEqual([206, "bytes 8-9/10", "89"])
      const middle = await get("big", { range: "bytes=1048576-2097151" })
      expect(new Uint8Array(await middle.arrayBuffer())).toEqual(big.subarray(1048576, 2097152))
      for (const range of ["bytes=10-", "bytes=0-1,4-5", "bytes=x-y", "items=0-1"]) {
        const res = await get("small", { range })
        expect(res.status, range).toBe(416)
        expect(res.headers.get("content-range")).toBe("bytes */10")
        expect(res.headers.get("content-type")).toBe("application/problem+json")
        expect(((await res.json()) as { status: number }).status).toBe(416)
      }
      const emptyRange = await get("empty", { range: "bytes=0-" })
      expect([emptyRange.status, emptyRange.headers.get("content-range")]).toEqual([416, "bytes */0"])
      const emptyFull = await get("empty")
      expect([emptyFull.status, emptyFull.headers.get("content-length"), await emptyFull.text()]).toEqual([
        200,
        "0",
        ""
      ])
    })

    it("answers 304 without body, length or type, and honours If-Range", async () => {
      const etag = `"${blobs.get("small")!.digest}"`
      const notModified = await get("small", { "if-none-match": etag })
      expect(notModified.status).toBe(304)
      expect(notModified.headers.get("etag")).toBe(etag)
      expect(notModified.headers.get("content-type")).toBeNull()
      expect(notModified.headers.get("content-length")).toBeNull()
      expect((await get("small", { "if-modified-since": "Thu, 14 May 2026 09:12:03 GMT" })).status).toBe(304)
      expect(
        (await get("small", { "if-none-match": "\"x\"", "if-modified-since": "Thu, 14 May 2026 09:12:03 GMT" }))
          .status
      ).toBe(200)
      const rangeKept = await get("small", { range: "bytes=0-1", "if-range": etag })
      expect(rangeKept.status).toBe(206)
      const rangeIgnored = await get("small", { range: "bytes=0-1", "if-range": `W/${etag}` })
      expect([rangeIgnored.status, await rangeIgnored.text()]).toEqual([200, "0123456789"])
    })

    it("a client that disconnects mid-download releases the store stream", async () => {
      const fds = () => readdirSync("/proc/self/fd").length
      const before = fds()
      for (let i = 0; i < 10; i++) {
        const controller = new AbortController()
        const res = await fetch(`${base}/t/big`, { signal: controller.signal })
        const reader = res.body!.getReader()
        await reader.read()
        controller.abort()
        await reader.read().catch(() => undefined)
      }
      // Give the server a moment to observe the closed sockets and run finalizers.
      await new Promise((r) => setTimeout(r, 300))
      expect(fds()).toBeLessThanOrEqual(before + 2)
      // Still serving after the aborted downloads.
      expect((await get("small")).status).toBe(200)
    })
  })
}
