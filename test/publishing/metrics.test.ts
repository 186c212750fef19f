import { afterAll, beforeAll, expect, it } from "vitest"
import { addArtifact, createDraft, createImage, publishVersion, startPublish, waitForJob } from "../catalog/fixtures.js"
import { scrapeExposition, seriesValue } from "../observability/exposition.js"
import { removeBlobBytes, seedBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { freePort } from "../support/process.js"

/**
 * Publishing, download and Simple Streams metrics on the metrics listener
 * (domain.md §7.2): scrape-time gauges from PostgreSQL, step durations, downloads by
 * route and bytes sent, document renders. Labels are bounded (no ids, names, digests).
 */

let app: TestApp
let metricsUrl = ""
const encoder = new TextEncoder()

beforeAll(async () => {
  const port = await freePort()
  app = await startTestApp({ settings: { "metrics-listen": `127.0.0.1:${port}` } })
  metricsUrl = `http://127.0.0.1:${port}/metrics`
})
afterAll(async () => app?.close())

it("exposes publish job and step gauges, step durations, downloads and streams renders", async () => {
  const token = await app.tokenFor("content-writer")
  const disk = await seedBlob(app, encoder.encode("metrics disk"))
  const meta = await seedBlob(app, encoder.encode("metrics metadata"))
  const { artifacts } = await publishVersion(app, token, {
    name: "metered",
    version: "1",
    artifacts: [{ blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] }]
  })
  // A second job that fails in incus_index and stays failed (version publishing, finalize queued).
  const gone = await seedBlob(app, encoder.encode("metrics gone"))
  await removeBlobBytes(app, gone)
  await createDraft(app, token, "metered", "2")
  const artifact = await addArtifact(app, token, "metered", "2", { blob: gone })
  await app.request("POST", `/v1/images/metered/versions/2/artifacts/${artifact.id}/attachments`, {
    token,
    json: {
      name: "incus.tar.xz",
      media_type: "application/x-incus-metadata",
      blob_digest: meta.digest,
      blob_size_bytes: meta.size
    }
  })
  expect((await waitForJob(app, token, (await startPublish(app, token, "metered", "2")).id)).state).toBe("failed")
  await createImage(app, token, "unrelated")

  const download = await app.request("GET", `/v1/images/metered/versions/1/artifacts/${artifacts[0]!.id}/download`)
  expect((await download.arrayBuffer()).byteLength).toBe(disk.size)
  await app.request("GET", "/streams/v1/images.json").then((r) => r.text())
  await app.request("GET", "/streams/v1/index.json").then((r) => r.text())

  const scraped = await scrapeExposition(metricsUrl)
  expect(seriesValue(scraped, "imgsrv_publish_jobs{state=\"succeeded\"}")).toBe(1)
  expect(seriesValue(scraped, "imgsrv_publish_jobs{state=\"failed\"}")).toBe(1)
  expect(seriesValue(scraped, "imgsrv_publish_jobs{state=\"queued\"}")).toBeUndefined()
  expect(seriesValue(scraped, "imgsrv_publish_steps{state=\"succeeded\",step=\"incus_index\"}")).toBe(1)
  expect(seriesValue(scraped, "imgsrv_publish_steps{state=\"failed\",step=\"incus_index\"}")).toBe(1)
  expect(seriesValue(scraped, "imgsrv_publish_steps{state=\"queued\",step=\"finalize_publish\"}")).toBe(1)
  expect(seriesValue(scraped, "imgsrv_publish_step_oldest_queued_age_seconds{step=\"finalize_publish\"}"))
    .toBeGreaterThanOrEqual(0)
  expect(scraped.text).not.toContain("imgsrv_publish_step_oldest_running_age_seconds{")
  expect(seriesValue(scraped, "imgsrv_publish_versions_publishing")).toBe(1)
  expect(seriesValue(scraped, "imgsrv_incus_projection_rows")).toBe(1)
  expect(
    seriesValue(scraped, "imgsrv_publish_step_duration_seconds_count{outcome=\"succeeded\",step=\"validate_catalog\"}")
  )
    .toBe(2)
  expect(seriesValue(scraped, "imgsrv_publish_step_duration_seconds_count{outcome=\"failed\",step=\"incus_index\"}"))
    .toBe(1)
  expect(seriesValue(scraped, "imgsrv_background_job_attempts_total{job=\"publish\",outcome=\"worked\"}"))
    .toBeGreaterThanOrEqual(5)

  const route = "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download"
  expect(seriesValue(scraped, `imgsrv_downloads_total{route="${route}",status="200"}`)).toBe(1)
  expect(seriesValue(scraped, `imgsrv_download_bytes_total{route="${route}"}`)).toBe(disk.size)
  // Rendered when the catalog generation changes (streams/cache.ts), not per request.
  expect(seriesValue(scraped, "imgsrv_streams_render_duration_seconds_count")).toBeGreaterThanOrEqual(1)
  expect(seriesValue(scraped, "imgsrv_streams_document_responses_total{document=\"index\",status=\"200\"}")).toBe(1)

  // Bounded labels: no image names, versions, ids or digests anywhere in the exposition.
  for (const secret of ["metered", artifacts[0]!.id, disk.hex]) expect(scraped.text).not.toContain(secret)
})
