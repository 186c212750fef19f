import { existsSync } from "node:fs"
import { readdir } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { sha256Digest, testBytes } from "../support/uploads.js"

/**
 * Begin creates the storage multipart upload first and then records the session; when the
 * database refuses the record (a real failure: the table is renamed away), the multipart
 * upload is aborted again instead of being left for the garbage collector. The repository
 * turns a failing database into a defect, so the cleanup must run on defects too.
 */
describe("begin when the database fails to record the session", () => {
  let app: TestApp
  let writer: string
  beforeAll(async () => {
    app = await startTestApp({ store: "filesystem" })
    writer = await app.tokenFor("content-writer")
  })
  afterAll(() => app.close())

  const multipartUploads = async () => {
    if (app.config.storage._tag !== "filesystem") throw new Error("filesystem store expected")
    const dir = path.join(app.config.storage.root, ".imgsrv", "multipart")
    return existsSync(dir) ? (await readdir(dir)).sort() : []
  }

  it("answers 500 and leaves no multipart upload behind", async () => {
    const before = await multipartUploads()
    const bytes = testBytes(1000, 41)
    await query(app, "ALTER TABLE upload_sessions RENAME TO upload_sessions_away")
    try {
      const response = await app.request("POST", "/v1/uploads", {
        token: writer,
        json: { expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.byteLength }
      })
      expect(response.status).toBe(500)
      await response.arrayBuffer()
    } finally {
      await query(app, "ALTER TABLE upload_sessions_away RENAME TO upload_sessions")
    }
    expect(await multipartUploads()).toEqual(before)
  })
})
