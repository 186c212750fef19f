import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { counterValue } from "../uploads/fixtures.js"
import { runGc } from "./fixtures.js"

/**
 * A run the database fails is a failed run: `imgsrv_gc_runs_total{outcome="failed"}` counts
 * it, and the request gets a 500. The repository turns a failing database into a defect (it
 * is the SQL boundary), so the collector must count defects as well as its typed failures.
 * The failure is a real one: a table the collector reads is renamed away under it.
 */
describe("garbage collection when the database fails", () => {
  let app: TestApp
  let manager: string

  beforeAll(async () => {
    app = await startTestApp({ settings: { "gc-enabled": "false" } })
    manager = await app.tokenFor("auth-manager")
  })
  afterAll(() => app.close())

  it("counts the run as failed and answers 500; the next run after the repair completes", async () => {
    const failed = await counterValue("imgsrv_gc_runs_total", { outcome: "failed" })
    const completed = await counterValue("imgsrv_gc_runs_total", { outcome: "completed" })
    await query(app, "ALTER TABLE gc_blob_deletions RENAME TO gc_blob_deletions_away")
    try {
      const response = await app.request("POST", "/v1/admin/gc", { token: manager, json: { dry_run: false } })
      expect(response.status).toBe(500)
      await response.arrayBuffer()
      expect(await counterValue("imgsrv_gc_runs_total", { outcome: "failed" })).toBe(failed + 1)
      expect(await counterValue("imgsrv_gc_runs_total", { outcome: "completed" })).toBe(completed)
    } finally {
      await query(app, "ALTER TABLE gc_blob_deletions_away RENAME TO gc_blob_deletions")
    }
    expect((await runGc(app, manager, false)).dry_run).toBe(false)
    expect(await counterValue("imgsrv_gc_runs_total", { outcome: "completed" })).toBe(completed + 1)
    expect(await counterValue("imgsrv_gc_runs_total", { outcome: "failed" })).toBe(failed + 1)
  })
})
