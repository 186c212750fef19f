/**
 * Hash while receiving: parts that arrive in order on one process are hashed on the way in
 * and promotion skips the read-back; anything else falls back to the streaming pass, and a
 * staged object changed after completion is never promoted on the strength of the early hash.
 */
import { Effect, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { makeReceivedHashes } from "../../src/uploads/receive-hash.js"
import { UploadId } from "../../src/uploads/schema.js"
import { query, sha256Hex } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  beginUpload,
  completeUpload,
  MiB,
  putPart,
  sha256Digest,
  testBytes,
  waitForUploadState
} from "../support/uploads.js"
import { counterValue, storeOf, STORES } from "./fixtures.js"

/** One upload id per label, so a test reads like it names its uploads. */
const ids = new Map<string, UploadId>()
const id = (label: string): UploadId => {
  const known = ids.get(label) ?? UploadId.make(randomUUID())
  ids.set(label, known)
  return known
}

describe("the receive-hash registry", () => {
  const part = (n: number, etag = `"e${n}"`, sizeBytes = 3) => ({ number: n, etag, sizeBytes })

  it("chains parts received in order and answers only for exactly those parts", () => {
    const registry = makeReceivedHashes()
    const a = new Uint8Array([1, 2, 3])
    const b = new Uint8Array([4, 5, 6])
    const first = registry.beginPart(id("u"), 1)!
    first.update(a)
    first.commit({ etag: "\"e1\"", sizeBytes: 3 })
    const second = registry.beginPart(id("u"), 2)!
    second.update(b)
    second.commit({ etag: "\"e2\"", sizeBytes: 3 })
    const both = new Uint8Array([...a, ...b])
    expect(registry.digestFor(id("u"), [part(1), part(2)])).toEqual({
      digest: `sha256:${sha256Hex(both)}`,
      sizeBytes: 6
    })
    expect(registry.digestFor(id("u"), [part(1)])).toBeUndefined()
    expect(registry.digestFor(id("u"), [part(1), part(2, "\"other\"")])).toBeUndefined()
    expect(registry.digestFor(id("u"), [part(1), part(2, "\"e2\"", 4)])).toBeUndefined()
    expect(registry.digestFor(id("other"), [part(1), part(2)])).toBeUndefined()
  })

  it("a failed part leaves the chain where it was; a retry of that part continues it", () => {
    const registry = makeReceivedHashes()
    const first = registry.beginPart(id("u"), 1)!
    first.update(new Uint8Array([9, 9]))
    first.abandon()
    const retry = registry.beginPart(id("u"), 1)!
    retry.update(new Uint8Array([1, 2, 3]))
    retry.commit({ etag: "\"e1\"", sizeBytes: 3 })
    expect(registry.digestFor(id("u"), [part(1)])?.digest).toBe(`sha256:${sha256Hex(new Uint8Array([1, 2, 3]))}`)
  })

  it("a gap, a re-PUT of an earlier part or two parts at once end the chain", () => {
    const registry = makeReceivedHashes()
    expect(registry.beginPart(id("gap"), 2)).toBeUndefined()

    registry.beginPart(id("reput"), 1)!.commit({ etag: "\"e1\"", sizeBytes: 3 })
    registry.beginPart(id("reput"), 2)!.commit({ etag: "\"e2\"", sizeBytes: 3 })
    expect(registry.beginPart(id("reput"), 2)).toBeUndefined()
    expect(registry.digestFor(id("reput"), [part(1), part(2)])).toBeUndefined()

    const one = registry.beginPart(id("parallel"), 1)!
    expect(registry.beginPart(id("parallel"), 2)).toBeUndefined()
    one.commit({ etag: "\"e1\"", sizeBytes: 3 })
    expect(registry.digestFor(id("parallel"), [part(1)])).toBeUndefined()
  })
})

for (const store of STORES) {
  describe(`hash while receiving (${store} store)`, () => {
    let app: TestApp
    let token: string
    let objects: ReturnType<typeof storeOf>

    beforeAll(async () => {
      app = await startTestApp({ store })
      token = await app.tokenFor("content-writer")
      objects = storeOf(app)
    })
    afterAll(async () => {
      await objects?.dispose()
      await app?.close()
    })

    const modes = async () => ({
      received: await counterValue("imgsrv_cas_promotion_verifications_total", { mode: "received" }),
      streamed: await counterValue("imgsrv_cas_promotion_verifications_total", { mode: "streamed" }),
      bytes: await counterValue("imgsrv_cas_promotion_verified_bytes_total")
    })
    const delta = async (before: Awaited<ReturnType<typeof modes>>) => {
      const after = await modes()
      return {
        received: after.received - before.received,
        streamed: after.streamed - before.streamed,
        bytes: after.bytes - before.bytes
      }
    }
    const begin = async (bytes: Uint8Array) =>
      (await beginUpload(app, token, { expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.length }))
        .session.id

    it("parts received in order are hashed on the way in: promotion reads nothing back", async () => {
      const bytes = testBytes(5 * MiB + 777, 601)
      const before = await modes()
      const id = await begin(bytes)
      const p1 = await putPart(app, token, id, 1, bytes.subarray(0, 5 * MiB))
      const p2 = await putPart(app, token, id, 2, bytes.subarray(5 * MiB))
      await completeUpload(app, token, id, [p1, p2])
      expect((await waitForUploadState(app, id, ["ready", "failed"])).state).toBe("ready")
      expect(await delta(before)).toEqual({ received: 1, streamed: 0, bytes: 0 })
      const [job] = await query<{ received_digest: string; received_size_bytes: number }>(
        app,
        "SELECT received_digest, received_size_bytes::int AS received_size_bytes FROM cas_ingest_jobs WHERE upload_id = $1",
        [id]
      )
      expect(job).toEqual({ received_digest: sha256Digest(bytes), received_size_bytes: bytes.length })
      const download = await app.request("GET", `/v1/blobs/${sha256Digest(bytes)}`)
      expect(Buffer.from(await download.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true)
    })

    it("a wrong digest is caught from the hash taken on the way in", async () => {
      const bytes = testBytes(1000, 602)
      const before = await modes()
      const id = (await beginUpload(app, token, {
        expected_digest: sha256Digest(testBytes(1000, 603)),
        expected_size_bytes: 1000
      }))
        .session.id
      await completeUpload(app, token, id, [await putPart(app, token, id, 1, bytes)])
      expect(await waitForUploadState(app, id, ["ready", "failed"])).toMatchObject({
        failure_reason: "digest_mismatch"
      })
      expect(await delta(before)).toEqual({ received: 1, streamed: 0, bytes: 0 })
    })

    it("parts out of order, or a part sent again, fall back to the streaming pass", async () => {
      const bytes = testBytes(5 * MiB + 10, 604)
      const before = await modes()
      const outOfOrder = await begin(bytes)
      const b2 = await putPart(app, token, outOfOrder, 2, bytes.subarray(5 * MiB))
      const b1 = await putPart(app, token, outOfOrder, 1, bytes.subarray(0, 5 * MiB))
      await completeUpload(app, token, outOfOrder, [b1, b2])
      expect((await waitForUploadState(app, outOfOrder, ["ready", "failed"])).state).toBe("ready")

      const other = testBytes(5 * MiB + 20, 605)
      const resent = await begin(other)
      const c1 = await putPart(app, token, resent, 1, other.subarray(0, 5 * MiB))
      await putPart(app, token, resent, 2, testBytes(20, 606))
      const c2 = await putPart(app, token, resent, 2, other.subarray(5 * MiB))
      await completeUpload(app, token, resent, [c1, c2])
      expect((await waitForUploadState(app, resent, ["ready", "failed"])).state).toBe("ready")

      expect(await delta(before)).toEqual({ received: 0, streamed: 2, bytes: bytes.length + other.length })
    })

    it("a client that starts over from part 1 starts a new chain", async () => {
      const bytes = testBytes(5 * MiB + 40, 610)
      const before = await modes()
      const id = await begin(bytes)
      await putPart(app, token, id, 1, testBytes(5 * MiB, 611))
      await putPart(app, token, id, 2, testBytes(40, 612))
      const p1 = await putPart(app, token, id, 1, bytes.subarray(0, 5 * MiB))
      const p2 = await putPart(app, token, id, 2, bytes.subarray(5 * MiB))
      await completeUpload(app, token, id, [p1, p2])
      expect((await waitForUploadState(app, id, ["ready", "failed"])).state).toBe("ready")
      expect(await delta(before)).toEqual({ received: 1, streamed: 0, bytes: 0 })
    })

    it("parts spread over two replicas fall back to the streaming pass", async () => {
      const bytes = testBytes(5 * MiB + 30, 607)
      const shared = { databaseUrl: app.databaseUrl, dataDir: app.dataDir, ...(app.s3 ? { s3: app.s3 } : {}) }
      const replica = await startTestApp({ store, ...shared, settings: { "cas-promotion-enabled": "false" } })
      try {
        const before = await modes()
        const id = await begin(bytes)
        const p1 = await putPart(app, token, id, 1, bytes.subarray(0, 5 * MiB))
        const p2 = await putPart(replica, token, id, 2, bytes.subarray(5 * MiB))
        await completeUpload(app, token, id, [p1, p2])
        expect((await waitForUploadState(app, id, ["ready", "failed"])).state).toBe("ready")
        expect(await delta(before)).toEqual({ received: 0, streamed: 1, bytes: bytes.length })
      } finally {
        await replica.close()
      }
    })

    it("a staged object changed after completion is verified by reading it, never by the early hash", async () => {
      // Completed on an instance without a worker; the staged object is then swapped for other
      // bytes of the same size before a worker (a second instance) sees the job.
      const front = await startTestApp({ store, settings: { "cas-promotion-enabled": "false" } })
      const frontToken = await front.tokenFor("content-writer")
      const frontObjects = storeOf(front)
      let worker: TestApp | undefined
      try {
        const bytes = testBytes(4000, 608)
        const swapped = testBytes(4000, 609)
        const id =
          (await beginUpload(front, frontToken, { expected_digest: sha256Digest(bytes), expected_size_bytes: 4000 }))
            .session.id
        await completeUpload(front, frontToken, id, [await putPart(front, frontToken, id, 1, bytes)])
        const [job] = await query<{ received_digest: string | null }>(
          front,
          "SELECT received_digest FROM cas_ingest_jobs WHERE upload_id = $1",
          [id]
        )
        expect(job?.received_digest).toBe(sha256Digest(bytes))
        await frontObjects.run(Effect.gen(function*() {
          const s = yield* BlobStore
          const key = stagingKey(id)
          const upload = yield* s.createMultipartUpload(key)
          const part = yield* s.putPart(key, upload, 1, Stream.make(swapped), swapped.length)
          yield* s.completeMultipartUpload(key, upload, [{ partNumber: 1, etag: part.etag }])
        }))
        const before = await modes()
        worker = await startTestApp({
          store,
          databaseUrl: front.databaseUrl,
          dataDir: front.dataDir,
          ...(front.s3 ? { s3: front.s3 } : {}),
          settings: { "node-name": "worker" }
        })
        expect(await waitForUploadState(front, id, ["ready", "failed"])).toMatchObject({
          state: "failed",
          failure_reason: "digest_mismatch"
        })
        expect(await delta(before)).toEqual({ received: 0, streamed: 1, bytes: 4000 })
      } finally {
        await worker?.close()
        await frontObjects.dispose()
        await front.close()
      }
    })
  })
}
