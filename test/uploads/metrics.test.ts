/**
 * Upload metrics on the real metrics listener: counters from the request and worker paths,
 * and the reference's durable-state gauges computed from PostgreSQL at scrape time.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Exposition, scrapeExposition, seriesValue } from "../observability/exposition.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { freePort } from "../support/process.js"
import {
  beginUpload,
  completeUpload,
  putPart,
  sha256Digest,
  testBytes,
  uploadBlob,
  waitForUploadState
} from "../support/uploads.js"

describe("upload metrics", () => {
  let app: TestApp
  let metricsUrl = ""
  let token = ""

  beforeAll(async () => {
    const port = await freePort()
    // The worker is off: completed uploads stay queued until the second instance promotes them.
    app = await startTestApp({
      settings: { "metrics-listen": `127.0.0.1:${port}`, "cas-promotion-enabled": "false" }
    })
    metricsUrl = `http://127.0.0.1:${port}/metrics`
    token = await app.tokenFor("content-writer")
  })
  afterAll(async () => {
    await app?.close()
  })

  it("counts uploads, parts and promotions, and reports sessions, jobs and blobs from the database", async () => {
    const before = await scrapeExposition(metricsUrl)
    const counter = (e: Exposition, series: string) => seriesValue(e, series) ?? 0

    const good = testBytes(3000, 401)
    const wrong = testBytes(2000, 402)
    const okSession =
      (await beginUpload(app, token, { expected_digest: sha256Digest(good), expected_size_bytes: 3000 })).session
    const badSession = (await beginUpload(app, token, {
      expected_digest: sha256Digest(testBytes(2000, 403)),
      expected_size_bytes: 2000
    })).session
    await completeUpload(app, token, okSession.id, [await putPart(app, token, okSession.id, 1, good)])
    await completeUpload(app, token, badSession.id, [await putPart(app, token, badSession.id, 1, wrong)])
    await beginUpload(app, token, { expected_digest: sha256Digest(testBytes(10, 404)), expected_size_bytes: 10 })

    const queued = await scrapeExposition(metricsUrl)
    expect(seriesValue(queued, "imgsrv_cas_ingest_jobs{state=\"queued\"}")).toBe(2)
    expect(seriesValue(queued, "imgsrv_upload_sessions{state=\"completed\"}")).toBe(2)
    expect(seriesValue(queued, "imgsrv_upload_sessions{state=\"created\"}")).toBe(1)
    expect(seriesValue(queued, "imgsrv_cas_ingest_oldest_queued_age_seconds")).toBeGreaterThanOrEqual(0)
    expect(seriesValue(queued, "imgsrv_cas_ingest_oldest_running_age_seconds")).toBeUndefined()
    expect(seriesValue(queued, "imgsrv_cas_blobs")).toBe(0)
    expect(seriesValue(queued, "imgsrv_cas_blob_bytes")).toBe(0)
    expect(
      counter(queued, "imgsrv_uploads_begun_total{result=\"created\"}") -
        counter(before, "imgsrv_uploads_begun_total{result=\"created\"}")
    )
      .toBe(3)
    expect(counter(queued, "imgsrv_uploads_completed_total") - counter(before, "imgsrv_uploads_completed_total")).toBe(
      2
    )
    expect(
      counter(queued, "imgsrv_upload_part_bytes_received_total") -
        counter(before, "imgsrv_upload_part_bytes_received_total")
    ).toBe(5000)
    expect(
      counter(queued, "imgsrv_upload_parts_total{outcome=\"accepted\"}") -
        counter(before, "imgsrv_upload_parts_total{outcome=\"accepted\"}")
    ).toBe(2)

    // A second instance on the same database and store does the promoting.
    const worker = await startTestApp({
      databaseUrl: app.databaseUrl,
      dataDir: app.dataDir,
      settings: { "node-name": "w" }
    })
    try {
      expect((await waitForUploadState(app, okSession.id, ["ready", "failed"])).state).toBe("ready")
      expect((await waitForUploadState(app, badSession.id, ["ready", "failed"])).state).toBe("failed")
    } finally {
      await worker.close()
    }
    await uploadBlob(app, token, good) // short-circuit: begun as ready

    const after = await scrapeExposition(metricsUrl)
    expect(seriesValue(after, "imgsrv_upload_sessions{state=\"ready\"}")).toBe(2)
    expect(seriesValue(after, "imgsrv_upload_sessions{state=\"failed\"}")).toBe(1)
    expect(seriesValue(after, "imgsrv_cas_ingest_jobs{state=\"succeeded\"}")).toBe(1)
    expect(seriesValue(after, "imgsrv_cas_ingest_jobs{state=\"failed\"}")).toBe(1)
    expect(seriesValue(after, "imgsrv_cas_ingest_jobs{state=\"queued\"}")).toBeUndefined()
    expect(seriesValue(after, "imgsrv_cas_ingest_oldest_queued_age_seconds")).toBeUndefined()
    expect(seriesValue(after, "imgsrv_cas_blobs")).toBe(1)
    expect(seriesValue(after, "imgsrv_cas_blob_bytes")).toBe(3000)
    expect(
      counter(after, "imgsrv_uploads_begun_total{result=\"ready\"}") -
        counter(before, "imgsrv_uploads_begun_total{result=\"ready\"}")
    )
      .toBe(1)
    expect(
      counter(after, "imgsrv_uploads_failed_total{reason=\"digest_mismatch\"}") -
        counter(before, "imgsrv_uploads_failed_total{reason=\"digest_mismatch\"}")
    ).toBe(1)
    expect(
      counter(after, "imgsrv_uploads_promoted_total{via=\"moved\"}") -
        counter(before, "imgsrv_uploads_promoted_total{via=\"moved\"}")
    )
      .toBe(1)
    // Both uploads arrived in order on one process: hashed on the way in, not read back.
    expect(
      counter(after, "imgsrv_cas_promotion_verifications_total{mode=\"received\"}") -
        counter(before, "imgsrv_cas_promotion_verifications_total{mode=\"received\"}")
    ).toBe(2)
    expect(
      counter(after, "imgsrv_cas_promotion_verified_bytes_total") -
        counter(before, "imgsrv_cas_promotion_verified_bytes_total")
    ).toBe(0)
    expect(
      counter(after, "imgsrv_cas_promotion_duration_seconds_count{outcome=\"ready\"}") -
        counter(before, "imgsrv_cas_promotion_duration_seconds_count{outcome=\"ready\"}")
    ).toBe(1)
  })
})
