/**
 * Complete is crash-safe (api.md §2.3 steps 7–8): when storage assembled the object but the
 * database never heard of it (a crash, a lost response), the next complete finds the
 * assembled object and finishes from it instead of failing.
 */
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { beginUpload, getUpload, putPart, sha256Digest, testBytes, type UploadPartBody } from "../support/uploads.js"
import { expireSession, storeOf, STORES } from "./fixtures.js"

for (const store of STORES) {
  describe(`complete recovery (${store} store)`, () => {
    let app: TestApp
    let token: string
    let objects: ReturnType<typeof storeOf>

    beforeAll(async () => {
      // No promotion (the staged object must stay) and no sweeping (expired sessions must stay).
      app = await startTestApp({
        store,
        settings: { "cas-promotion-enabled": "false", "upload-expiry-poll-interval": "1h" }
      })
      token = await app.tokenFor("content-writer")
      objects = storeOf(app)
    })
    afterAll(async () => {
      await objects?.dispose()
      await app?.close()
    })

    /** An upload whose multipart completion reached storage, but not the database. */
    const assembledBehindTheDatabasesBack = async (seed: number, size = 1000) => {
      const bytes = testBytes(size, seed)
      const { session } = await beginUpload(app, token, {
        expected_digest: sha256Digest(bytes),
        expected_size_bytes: size
      })
      const part = await putPart(app, token, session.id, 1, bytes)
      const [row] = await query<{ storage_upload_id: string }>(
        app,
        "SELECT storage_upload_id FROM upload_sessions WHERE id = $1",
        [session.id]
      )
      await objects.run(
        Effect.flatMap(BlobStore, (s) =>
          s.completeMultipartUpload(stagingKey(session.id), row!.storage_upload_id, [{
            partNumber: 1,
            etag: part.etag
          }]))
      )
      return { id: session.id, part }
    }

    const complete = (id: string, part: UploadPartBody, sizeBytes = part.size_bytes) =>
      app.request("POST", `/v1/uploads/${id}/complete`, {
        token,
        json: { parts: [{ number: 1, etag: part.etag, size_bytes: sizeBytes }] }
      })

    const jobCount = async (id: string) =>
      (await query<{ n: number }>(app, "SELECT count(*)::int AS n FROM cas_ingest_jobs WHERE upload_id = $1", [id]))[0]!
        .n

    it("the multipart upload is gone but the assembled object has the right size → 200 completed, one job", async () => {
      const upload = await assembledBehindTheDatabasesBack(501)
      const response = await complete(upload.id, upload.part)
      expect(response.status).toBe(200)
      expect(((await response.json()) as { state: string }).state).toBe("completed")
      expect(await jobCount(upload.id)).toBe(1)
      expect((await complete(upload.id, upload.part)).status).toBe(200)
      expect(await jobCount(upload.id)).toBe(1)
    })

    it("an expired session completes from its assembled object, and is 412 without one", async () => {
      const upload = await assembledBehindTheDatabasesBack(502)
      await expireSession(app, upload.id)
      expect((await complete(upload.id, upload.part)).status).toBe(200)
      expect((await getUpload(app, upload.id)).state).toBe("completed")

      const bytes = testBytes(1000, 503)
      const { session } = await beginUpload(app, token, {
        expected_digest: sha256Digest(bytes),
        expected_size_bytes: 1000
      })
      const part = await putPart(app, token, session.id, 1, bytes)
      await expireSession(app, session.id)
      const expired = await complete(session.id, part)
      expect(expired.status).toBe(412)
      expect(((await expired.json()) as { detail: string }).detail).toMatch(/expired at/)
      expect(await objects.stagingSize(session.id)).toBeUndefined()
    })

    it("an assembled object of another size is 412, not a completion", async () => {
      // The client declared 1000 bytes but storage assembled 1200.
      const bytes = testBytes(1200, 504)
      const { session } = await beginUpload(app, token, {
        expected_digest: sha256Digest(bytes),
        expected_size_bytes: 1000
      })
      const part = await putPart(app, token, session.id, 1, bytes)
      const [row] = await query<{ storage_upload_id: string }>(
        app,
        "SELECT storage_upload_id FROM upload_sessions WHERE id = $1",
        [session.id]
      )
      await objects.run(
        Effect.flatMap(BlobStore, (s) =>
          s.completeMultipartUpload(stagingKey(session.id), row!.storage_upload_id, [{
            partNumber: 1,
            etag: part.etag
          }]))
      )
      const response = await complete(session.id, part, 1000)
      expect(response.status).toBe(412)
      expect(((await response.json()) as { detail: string }).detail).toMatch(/assembled object is 1200 bytes/)
      expect((await getUpload(app, session.id)).state).toBe("uploading")
    })
  })
}
