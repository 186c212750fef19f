import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addArtifact, createDraft, expectProblem, startPublish, waitForJob } from "../catalog/fixtures.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { beginUpload } from "../support/uploads.js"
import { sleep } from "../uploads/fixtures.js"
import { blobOf, download, expectDownloads, expectGone, upload } from "./fixtures.js"

/**
 * The collector's protocol step by step (src/gc/service.ts): a test plays the collector's
 * transaction by hand — digest lock exclusive, tombstone, row deleted, not yet committed —
 * and shows what a writer racing it gets. Deterministic versions of what the race test
 * (race.test.ts) provokes by chance.
 */

/** The collector's transaction on `digest`, left open: the caller commits (or not). */
const openCollection = async (app: TestApp, digest: string) => {
  const client = new pg.Client({ connectionString: app.databaseUrl })
  await client.connect()
  await client.query("BEGIN")
  await client.query("SELECT pg_advisory_xact_lock(26467, hashtext($1))", [digest])
  await client.query(
    `INSERT INTO gc_blob_deletions (digest, storage_key, size_bytes)
     SELECT digest, storage_key, size_bytes FROM cas_blobs WHERE digest = $1`,
    [digest]
  )
  await client.query("DELETE FROM cas_blobs WHERE digest = $1", [digest])
  return {
    commit: () => client.query("COMMIT"),
    /** What the collector does after its commit (the object is left: a later upload reuses it). */
    finish: async () => {
      await client.query("DELETE FROM gc_blob_deletions WHERE digest = $1", [digest])
      await client.end()
    }
  }
}

describe("the collector's protocol against writers racing it", () => {
  let app: TestApp
  let writer: string

  beforeAll(async () => {
    app = await startTestApp({ settings: { "gc-enabled": "false", "gc-grace-period": "0s" } })
    writer = await app.tokenFor("content-writer")
  })
  afterAll(() => app.close())

  it("an upload that would begin ready waits for the collector, then begins as a new upload", async () => {
    const blob = blobOf(1800, 51)
    await upload(app, writer, blob)
    const collection = await openCollection(app, blob.digest)
    // Begin reads the row (still visible: not committed), then its ready session waits on the lock.
    const begun = beginUpload(app, writer, { expected_digest: blob.digest, expected_size_bytes: blob.size })
    await sleep(500)
    await collection.commit()
    const answer = await begun
    expect(answer.status).toBe(201)
    expect(answer.session.state).toBe("created")
    await collection.finish()
  })

  it("an artifact written while the collector deletes its blob is like one declared before the upload", async () => {
    const blob = blobOf(1700, 52)
    await upload(app, writer, blob)
    const created = await app.request("POST", "/v1/images", { token: writer, json: { name: "gc-proto" } })
    expect(created.status).toBe(201)
    await createDraft(app, writer, "gc-proto", "1.0")
    const collection = await openCollection(app, blob.digest)
    // The artifact's trigger waits for the digest lock until the collector commits.
    const cited = addArtifact(app, writer, "gc-proto", "1.0", { blob })
    await sleep(500)
    await collection.commit()
    await cited
    await collection.finish()
    await expectGone(app, blob)
    // Publish refuses it, as for a blob never uploaded …
    await expectProblem(await app.request("POST", "/v1/images/gc-proto/versions/1.0/publish", { token: writer }), 412)
    // … until it is uploaded again.
    expect((await download(app, blob.digest)).status).toBe(404)
    await upload(app, writer, blob)
    const job = await startPublish(app, writer, "gc-proto", "1.0")
    expect((await waitForJob(app, writer, job.id)).state).toBe("succeeded")
    await expectDownloads(app, blob)
  })

  it("a collection that meets an artifact not yet committed waits for it, sees it, and keeps the blob", async () => {
    const manager = await app.tokenFor("auth-manager")
    const blob = blobOf(1600, 53)
    await upload(app, writer, blob)
    const created = await app.request("POST", "/v1/images", { token: writer, json: { name: "gc-proto-2" } })
    expect(created.status).toBe(201)
    await createDraft(app, writer, "gc-proto-2", "1.0")
    const writerTx = new pg.Client({ connectionString: app.databaseUrl })
    await writerTx.connect()
    try {
      await writerTx.query("BEGIN")
      await writerTx.query(
        `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
           primary_blob_digest, primary_blob_size_bytes, primary_media_type)
         SELECT gen_random_uuid(), v.id, 'linux', 'x86_64', 'qcow2', $1, $2, 'application/x-qemu-disk'
         FROM image_versions v JOIN images i ON i.id = v.image_id
         WHERE i.name = 'gc-proto-2' AND v.version = '1.0'`,
        [blob.digest, blob.size]
      )
      // The collector's run blocks on the digest lock the uncommitted artifact holds.
      const run = app.request("POST", "/v1/admin/gc", { token: manager, json: { dry_run: false } })
      await sleep(500)
      await writerTx.query("COMMIT")
      const report = (await (await run).json()) as { blobs: number }
      expect(report.blobs).toBe(0)
    } finally {
      await writerTx.end()
    }
    await expectDownloads(app, blob)
  })
})
