import { Effect, Stream } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { expectProblem, expectStatus } from "../catalog/fixtures.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { beginUpload, completeUpload, getUpload, putPart, waitForUploadState } from "../support/uploads.js"
import { filesystemMultipartExists, sleep, storeOf, STORES } from "../uploads/fixtures.js"
import {
  blobOf,
  deleteDraft,
  draftCiting,
  expectDownloads,
  expectGone,
  type GcReport,
  runGc,
  upload
} from "./fixtures.js"

/**
 * Garbage collection (issue 16 item 6, docs/gc.md) through `POST /v1/admin/gc`, on a real
 * PostgreSQL and both stores. The background loop is off here (`--gc-enabled=false`) so
 * that every run is the test's own.
 */

for (const store of STORES) {
  describe(`garbage collection (${store})`, () => {
    let app: TestApp
    let writer: string
    let manager: string

    beforeAll(async () => {
      app = await startTestApp({
        store,
        settings: {
          "gc-enabled": "false",
          "gc-grace-period": "0s",
          "cas-promotion-error-backoff": "100ms",
          "cas-promotion-error-backoff-max": "200ms",
          "cas-promotion-circuit-breaker-failures": "1000"
        }
      })
      writer = await app.tokenFor("content-writer")
      manager = await app.tokenFor("auth-manager")
    })
    afterAll(() => app.close())

    it("frees unreferenced blobs after the grace period and keeps every referenced one; a dry run frees nothing and reports the same", async () => {
      const primary = blobOf(3000, 1)
      const attached = blobOf(2000, 2)
      const neverAttached = blobOf(1500, 3)
      const ofDeletedDraft = blobOf(1200, 4)
      const claimedByUpload = blobOf(1100, 5)
      for (const blob of [primary, attached, neverAttached, ofDeletedDraft]) await upload(app, writer, blob)
      await draftCiting(app, writer, "gc-keep", "1.0", primary, attached)
      await draftCiting(app, writer, "gc-keep", "2.0", ofDeletedDraft)
      await deleteDraft(app, writer, "gc-keep", "2.0")
      // An unfinished upload of a digest claims it: begun before the blob existed, still `created`.
      const pending = await beginUpload(app, writer, {
        expected_digest: claimedByUpload.digest,
        expected_size_bytes: claimedByUpload.size
      })
      expect(pending.session.state).toBe("created")
      await upload(app, writer, claimedByUpload)
      // A digest cited before its upload: nothing to collect, nothing breaks.
      await draftCiting(app, writer, "gc-keep", "3.0", blobOf(900, 6))

      const dry = await runGc(app, manager, true)
      expect(dry).toMatchObject({
        dry_run: true,
        blobs: 2,
        bytes: neverAttached.size + ofDeletedDraft.size
      })
      for (const blob of [primary, attached, neverAttached, ofDeletedDraft, claimedByUpload]) {
        await expectDownloads(app, blob)
      }

      const done = await runGc(app, manager, false)
      expect(done).toMatchObject({ dry_run: false, blobs: dry.blobs, bytes: dry.bytes, pending_deletions: 0 })
      await expectGone(app, neverAttached)
      await expectGone(app, ofDeletedDraft)
      for (const blob of [primary, attached, claimedByUpload]) await expectDownloads(app, blob)
      const objects = storeOf(app)
      try {
        expect(await objects.casSize(neverAttached.digest)).toBeUndefined()
        expect(await objects.casSize(ofDeletedDraft.digest)).toBeUndefined()
        expect(await objects.casSize(primary.digest)).toBe(primary.size)
      } finally {
        await objects.dispose()
      }
      expect(await query(app, "SELECT count(*)::int AS n FROM gc_blob_deletions")).toEqual([{ n: 0 }])
      const collected = await query<{ n: number }>(
        app,
        "SELECT count(*)::int AS n FROM events WHERE type = 'blob.collected'"
      )
      expect(collected[0]!.n).toBe(2)

      // Nothing left to collect; a collected digest uploads again like a new one.
      expect(await runGc(app, manager, false)).toMatchObject({ blobs: 0, bytes: 0 })
      const again = await beginUpload(app, writer, {
        expected_digest: neverAttached.digest,
        expected_size_bytes: neverAttached.size
      })
      expect(again.status).toBe(201)
      await upload(app, writer, neverAttached)
      await expectDownloads(app, neverAttached)
    })

    it("finishes a collection a crash left half-done first, and holds back an upload of that digest until then", async () => {
      const blob = blobOf(2500, 8)
      await upload(app, writer, blob)
      // A collector that died between its commit and the object's deletion: no row, a tombstone, the object.
      await query(
        app,
        `WITH t AS (
           INSERT INTO gc_blob_deletions (digest, storage_key, size_bytes)
           SELECT digest, storage_key, size_bytes FROM cas_blobs WHERE digest = $1 RETURNING digest
         ) DELETE FROM cas_blobs WHERE digest IN (SELECT digest FROM t)`,
        [blob.digest]
      )
      await expectGone(app, blob)
      const begun = await beginUpload(app, writer, { expected_digest: blob.digest, expected_size_bytes: blob.size })
      expect(begun.status).toBe(201)
      const part = await putPart(app, writer, begun.session.id, 1, blob.bytes)
      await completeUpload(app, writer, begun.session.id, [part])
      // The object at its key may go any moment: the upload is not recorded ready meanwhile.
      await sleep(1000)
      expect(["completed", "ingesting"]).toContain((await getUpload(app, begun.session.id)).state)

      expect(await runGc(app, manager, false)).toMatchObject({ pending_deletions: 1 })
      expect(await query(app, "SELECT count(*)::int AS n FROM gc_blob_deletions")).toEqual([{ n: 0 }])
      const ended = await waitForUploadState(app, begun.session.id, ["ready", "failed"])
      if (store === "filesystem") {
        expect(ended.state).toBe("ready")
      } else if (ended.state === "failed") {
        // s3rver ignores `If-None-Match` on copies, so the promotion's move overwrote the object
        // the collector then deleted, staged copy included: the clean failure the protocol
        // allows (real S3 refuses the copy and the upload ends ready as on the filesystem).
        expect(ended.failure_reason).toBe("staged_object_missing")
        await upload(app, writer, blob)
      }
      await expectDownloads(app, blob)
    })

    it("refuses to delete a referenced blob row, whatever SQL asks", async () => {
      const blob = blobOf(800, 7)
      await upload(app, writer, blob)
      await draftCiting(app, writer, "gc-guard", "1.0", blob)
      const client = new pg.Client({ connectionString: app.databaseUrl })
      await client.connect()
      try {
        await expect(client.query("DELETE FROM cas_blobs WHERE digest = $1", [blob.digest])).rejects.toThrow(
          /deleted only by the garbage collector/
        )
        await client.query("BEGIN")
        await client.query(
          "INSERT INTO gc_blob_deletions (digest, storage_key, size_bytes) SELECT digest, storage_key, size_bytes FROM cas_blobs WHERE digest = $1",
          [blob.digest]
        )
        await expect(client.query("DELETE FROM cas_blobs WHERE digest = $1", [blob.digest])).rejects.toThrow(
          /is referenced/
        )
        await client.query("ROLLBACK")
      } finally {
        await client.end()
      }
      await expectDownloads(app, blob)
    })
  })
}

describe("garbage collection: grace period and \"unreferenced since\"", () => {
  let app: TestApp
  let writer: string
  let manager: string
  const GRACE_MS = 3000

  beforeAll(async () => {
    app = await startTestApp({ settings: { "gc-enabled": "false", "gc-grace-period": `${GRACE_MS}ms` } })
    writer = await app.tokenFor("content-writer")
    manager = await app.tokenFor("auth-manager")
  })
  afterAll(() => app.close())

  it("counts the grace period from the last reference: upload for a blob never attached, the draft's deletion for its blobs", async () => {
    const neverAttached = blobOf(700, 11)
    const ofDraft = blobOf(600, 12)
    await upload(app, writer, neverAttached)
    await upload(app, writer, ofDraft)
    await draftCiting(app, writer, "gc-grace", "1.0", ofDraft)
    expect(await runGc(app, manager, false)).toMatchObject({ blobs: 0 })

    await sleep(GRACE_MS + 300)
    // Both blobs are older than the grace period; the draft's goes unreferenced only now.
    await deleteDraft(app, writer, "gc-grace", "1.0")
    expect(await runGc(app, manager, false)).toMatchObject({ blobs: 1, bytes: neverAttached.size })
    await expectGone(app, neverAttached)
    await expectDownloads(app, ofDraft)

    await sleep(GRACE_MS + 300)
    expect(await runGc(app, manager, false)).toMatchObject({ blobs: 1, bytes: ofDraft.size })
    await expectGone(app, ofDraft)
  })
})

describe("POST /v1/admin/gc", () => {
  let app: TestApp

  beforeAll(async () => {
    app = await startTestApp({ settings: { "gc-enabled": "false" } })
  })
  afterAll(() => app.close())

  it("needs auth.manage, a strict body, and answers 409 while another run holds the lock", async () => {
    const writer = await app.tokenFor("content-writer")
    const manager = await app.tokenFor("auth-manager")
    await expectProblem(await app.request("POST", "/v1/admin/gc", { json: { dry_run: true } }), 401)
    await expectProblem(await app.request("POST", "/v1/admin/gc", { token: writer, json: { dry_run: true } }), 403)
    for (const body of [{}, { dry_run: "yes" }, { dry_run: true, extra: 1 }]) {
      await expectProblem(await app.request("POST", "/v1/admin/gc", { token: manager, json: body }), 400)
    }
    await expectProblem(
      await app.request("POST", "/v1/admin/gc", {
        token: manager,
        body: "not json",
        headers: { "content-type": "application/json" }
      }),
      400
    )

    const holder = new pg.Client({ connectionString: app.databaseUrl })
    await holder.connect()
    try {
      await holder.query("SELECT pg_advisory_lock(7596490406398950223)")
      const busy = await expectProblem(
        await app.request("POST", "/v1/admin/gc", { token: manager, json: { dry_run: false } }),
        409
      )
      expect(busy.detail).toMatch(/already running/)
      // A dry run takes no lock.
      expect((await app.request("POST", "/v1/admin/gc", { token: manager, json: { dry_run: true } })).status).toBe(
        200
      )
    } finally {
      await holder.end()
    }
    const report = await expectStatus<GcReport>(
      await app.request("POST", "/v1/admin/gc", { token: manager, json: { dry_run: false } }),
      200
    )
    expect(report).toMatchObject({ dry_run: false, blobs: 0 })
  })

  it("is in the OpenAPI document", async () => {
    const spec = await expectStatus<{ paths: Record<string, Record<string, unknown>> }>(
      await app.request("GET", "/openapi.json"),
      200
    )
    const operation = spec.paths["/v1/admin/gc"]?.["post"] as Record<string, unknown> | undefined
    expect(operation).toBeDefined()
    expect(Object.keys(operation!["responses"] as object)).toEqual(
      expect.arrayContaining(["200", "400", "401", "403", "409"])
    )
  })
})

for (const store of STORES) {
  describe(`garbage collection of upload leftovers (${store})`, () => {
    let app: TestApp
    let manager: string

    beforeAll(async () => {
      app = await startTestApp({ store, settings: { "gc-enabled": "false", "upload-ttl": "2s" } })
      manager = await app.tokenFor("auth-manager")
    })
    afterAll(() => app.close())

    it("removes staging objects and multipart uploads older than the upload TTL that no session owns", async () => {
      const objects = storeOf(app)
      try {
        const bytes = new Uint8Array(1000).fill(7)
        // What a crash leaves: an assembled staging object and a multipart upload with no session row.
        const put = (key: ReturnType<typeof stagingKey>, complete: boolean) =>
          objects.run(Effect.gen(function*() {
            const blobs = yield* BlobStore
            const id = yield* blobs.createMultipartUpload(key)
            if (!complete) return id
            const part = yield* blobs.putPart(key, id, 1, Stream.make(bytes), bytes.byteLength)
            yield* blobs.completeMultipartUpload(key, id, [{ partNumber: 1, etag: part.etag }])
            return id
          }))
        const orphanStaging = randomUUID()
        await put(stagingKey(orphanStaging), true)
        const orphanMultipart = await put(stagingKey(randomUUID()), false)
        // S3 reports LastModified in whole seconds: keep well clear of the cut-off.
        await sleep(2600)
        const youngMultipart = await put(stagingKey(randomUUID()), false)
        const youngStaging = randomUUID()
        await put(stagingKey(youngStaging), true)

        const listing = store === "filesystem"
        const dry = await runGc(app, manager, true)
        expect(dry).toMatchObject({
          staging_objects: 1,
          staging_bytes: bytes.byteLength,
          multipart_uploads: listing ? 1 : 0,
          multipart_listing_supported: listing
        })
        expect(await objects.stagingSize(orphanStaging)).toBe(bytes.byteLength)

        const done = await runGc(app, manager, false)
        expect(done).toMatchObject({
          staging_objects: 1,
          multipart_uploads: listing ? 1 : 0,
          multipart_listing_supported: listing
        })
        expect(await objects.stagingSize(orphanStaging)).toBeUndefined()
        expect(await objects.stagingSize(youngStaging)).toBe(bytes.byteLength)
        if (listing) {
          expect(filesystemMultipartExists(app, orphanMultipart)).toBe(false)
          expect(filesystemMultipartExists(app, youngMultipart)).toBe(true)
        }
      } finally {
        await objects.dispose()
      }
    })
  })
}
