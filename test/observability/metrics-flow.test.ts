import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
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
import {
  deltaOf,
  type Exposition,
  labelNamesOf,
  scrapeExposition,
  seriesPerFamily,
  sumOf,
  valueOf
} from "./exposition.js"
import { type RecordedCall, recordingApp, routeLabelOf, runTutorialFlow, type TutorialResult } from "./flow.js"

/**
 * `/metrics` after one tutorial flow (plus an aborted upload and one whose bytes do not
 * match its digest): every series of the reference catalogue (domain.md §7.2) and ours,
 * with values that match what the test did; label sets stay bounded however many
 * distinct digests are uploaded; and the list of series in docs/reference/metrics.md is the exposition's.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))

let app: TestApp
let metricsUrl = ""
let calls: ReadonlyArray<RecordedCall> = []
let flow: TutorialResult
let before: Exposition
let after: Exposition
const extraPartBytes = { aborted: 3000, mismatched: 4000 }

beforeAll(async () => {
  const port = await freePort()
  app = await startTestApp({ settings: { "metrics-listen": `127.0.0.1:${port}` } })
  metricsUrl = `http://127.0.0.1:${port}/metrics`
  const token = await app.tokenFor("content-writer")
  before = await scrapeExposition(metricsUrl)
  const recorded = recordingApp(app)
  flow = await runTutorialFlow(recorded.app, token)

  // An upload the client abandons, and one whose bytes are not those it declared.
  const abandoned = await beginUpload(recorded.app, token, {
    expected_digest: sha256Digest(testBytes(extraPartBytes.aborted, 71)),
    expected_size_bytes: extraPartBytes.aborted
  })
  await putPart(recorded.app, token, abandoned.session.id, 1, testBytes(extraPartBytes.aborted, 71))
  const abort = await recorded.app.request("POST", `/v1/uploads/${abandoned.session.id}/abort`, { token })
  expect(abort.status).toBe(200)
  await abort.arrayBuffer()
  const lying = await beginUpload(recorded.app, token, {
    expected_digest: sha256Digest(testBytes(extraPartBytes.mismatched, 72)),
    expected_size_bytes: extraPartBytes.mismatched
  })
  const part = await putPart(recorded.app, token, lying.session.id, 1, testBytes(extraPartBytes.mismatched, 73))
  await completeUpload(recorded.app, token, lying.session.id, [part])
  expect((await waitForUploadState(recorded.app, lying.session.id, ["failed"])).failure_reason).toBe("digest_mismatch")

  calls = recorded.calls
  after = await scrapeExposition(metricsUrl)
})
afterAll(async () => app?.close())

describe("the metrics listener after a tutorial flow", () => {
  it("counts every HTTP request by method, route template and status, exactly as they were made", () => {
    const expected = new Map<string, { labels: Record<string, string>; count: number }>()
    for (const call of calls) {
      const labels = {
        http_request_method: call.method,
        http_response_status_code: String(call.status),
        http_route: routeLabelOf(call.method, call.path)
      }
      const key = JSON.stringify(labels)
      expected.set(key, { labels, count: (expected.get(key)?.count ?? 0) + 1 })
    }
    expect(expected.size).toBeGreaterThan(10)
    // The listener's labels (address, port, …) are the same on every series: match on the rest.
    const delta = (name: string, labels: Record<string, string>) =>
      sumOf(after, name, labels) - sumOf(before, name, labels)
    for (const { labels, count } of expected.values()) {
      expect(delta("imgsrv_http_requests_total", labels), JSON.stringify(labels)).toBe(count)
      expect(delta("http_server_request_duration_seconds_count", labels), JSON.stringify(labels)).toBe(count)
      expect(delta("http_server_request_duration_seconds_sum", labels)).toBeGreaterThan(0)
    }
    // Nothing else was counted: the scrapes themselves are on the other listener.
    const total = (e: Exposition) =>
      e.samples.filter((s) => s.name === "imgsrv_http_requests_total").reduce((n, s) => n + s.value, 0)
    expect(total(after) - total(before)).toBe(calls.length)
  })

  it("moves the upload, promotion, object-store, publish and download counters by what the flow did", () => {
    const delta = (name: string, labels: Record<string, string> = {}) => deltaOf(before, after, name, labels)
    const partBytes = flow.uploadedBytes + extraPartBytes.aborted + extraPartBytes.mismatched
    expect(delta("imgsrv_uploads_begun_total", { result: "created" })).toBe(4)
    expect(delta("imgsrv_uploads_completed_total")).toBe(3)
    expect(delta("imgsrv_uploads_promoted_total", { via: "moved" })).toBe(2)
    expect(delta("imgsrv_uploads_failed_total", { reason: "digest_mismatch" })).toBe(1)
    expect(delta("imgsrv_uploads_aborted_total", { trigger: "client" })).toBe(1)
    expect(delta("imgsrv_upload_parts_total", { outcome: "accepted" })).toBe(4)
    expect(delta("imgsrv_upload_part_bytes_received_total")).toBe(partBytes)
    expect(delta("imgsrv_cas_promotion_duration_seconds_count", { outcome: "ready" })).toBe(2)
    expect(delta("imgsrv_cas_promotion_duration_seconds_count", { outcome: "failed" })).toBe(1)

    const op = (operation: string, outcome = "success") =>
      delta("imgsrv_objectstore_operations_total", { operation, outcome })
    expect(op("create_multipart_upload")).toBe(4)
    expect(op("put_part")).toBe(4)
    expect(op("complete_multipart_upload")).toBe(3)
    expect(delta("imgsrv_objectstore_operation_duration_seconds_count", { operation: "put_part", outcome: "success" }))
      .toBe(4)
    expect(delta("imgsrv_objectstore_bytes_total", { operation: "put_part", direction: "write" })).toBe(partBytes)
    // incus_index hashes disk + metadata, the download reads the disk.
    expect(delta("imgsrv_objectstore_bytes_total", { operation: "open_object", direction: "read" }))
      .toBeGreaterThanOrEqual(flow.disk.size * 2 + flow.meta.size)
    const aborts = after.samples.filter((s) =>
      s.name === "imgsrv_objectstore_operations_total" && s.labels["operation"] === "abort_multipart_upload"
    )
    expect(aborts.reduce((n, s) => n + s.value, 0)).toBe(1)

    for (const step of ["validate_catalog", "incus_index", "finalize_publish"]) {
      expect(delta("imgsrv_publish_step_duration_seconds_count", { step, outcome: "succeeded" }), step).toBe(1)
    }
    const download = "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download"
    expect(delta("imgsrv_downloads_total", { route: download, status: "200" })).toBe(1)
    expect(delta("imgsrv_download_bytes_total", { route: download })).toBe(flow.disk.size)
    expect(delta("imgsrv_background_job_attempts_total", { job: "cas-promotion", outcome: "worked" })).toBe(3)
    expect(delta("imgsrv_background_job_attempts_total", { job: "publish", outcome: "worked" })).toBe(3)
  })

  it("reports queue depths, blobs and the connection pool at scrape time", () => {
    const states = (name: string) =>
      Object.fromEntries(after.samples.filter((s) => s.name === name).map((s) => [s.labels["state"], s.value]))
    expect(states("imgsrv_upload_sessions")).toEqual({ ready: 2, failed: 1, aborted: 1 })
    expect(states("imgsrv_cas_ingest_jobs")).toEqual({ succeeded: 2, failed: 1 })
    expect(valueOf(after, "imgsrv_cas_blobs")).toBe(2)
    expect(valueOf(after, "imgsrv_cas_blob_bytes")).toBe(flow.uploadedBytes)
    expect(states("imgsrv_publish_jobs")).toEqual({ succeeded: 1 })
    for (const step of ["validate_catalog", "incus_index", "finalize_publish"]) {
      expect(valueOf(after, "imgsrv_publish_steps", { step, state: "succeeded" })).toBe(1)
    }
    expect(valueOf(after, "imgsrv_publish_versions_publishing")).toBe(0)
    expect(valueOf(after, "imgsrv_incus_projection_rows")).toBe(1)
    // Nothing is waiting or running: the age gauges are absent, not zero.
    expect(after.text).not.toMatch(/oldest_(queued|running)_age_seconds[{ ]/)

    const pool = states("imgsrv_postgres_pool_connections")
    expect(pool["max"]).toBe(5)
    expect(pool["total"]).toBeGreaterThan(0)
    expect(pool["total"]).toBeLessThanOrEqual(pool["max"]!)
    expect(pool["acquired"]! + pool["idle"]! + pool["constructing"]!).toBe(pool["total"])
    // Every request authenticates or reads through the pool.
    expect(deltaOf(before, after, "imgsrv_postgres_pool_acquires_total")).toBeGreaterThan(calls.length)
    expect(deltaOf(before, after, "imgsrv_postgres_pool_acquire_duration_seconds_total")).toBeGreaterThan(0)
    expect(valueOf(after, "imgsrv_postgres_pool_empty_acquires_total")).toBeGreaterThan(0)
    expect(valueOf(after, "imgsrv_postgres_pool_canceled_acquires_total")).toBe(0)

    for (const job of ["cas-promotion", "publish", "upload-expiry"]) {
      expect(valueOf(after, "imgsrv_background_job_consecutive_failures", { job })).toBe(0)
      expect(valueOf(after, "imgsrv_background_job_errors_total", { job })).toBe(0)
      expect(valueOf(after, "imgsrv_background_job_circuit_open_total", { job })).toBe(0)
      const lastSuccess = valueOf(after, "imgsrv_background_job_last_success_timestamp_seconds", { job })!
      expect(Math.abs(Date.now() / 1000 - lastSuccess)).toBeLessThan(60)
    }
    const version = (JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { version: string }).version
    expect(valueOf(after, "target_info", { service_name: "imgsrv", service_version: version })).toBe(1)
    expect(valueOf(after, "process_resident_memory_bytes")).toBeGreaterThan(0)
  })

  it("exposes the reference's series and ours under the same names, types and label names", () => {
    const expected: Record<string, readonly [string, ReadonlyArray<string>]> = {
      // The reference catalogue (domain.md §7.2) …
      http_server_request_duration_seconds: ["histogram", [
        "http_request_method",
        "http_response_status_code",
        "http_route"
      ]],
      http_server_active_requests: ["gauge", ["http_request_method"]],
      imgsrv_objectstore_operations_total: ["counter", ["operation", "outcome"]],
      imgsrv_objectstore_operation_duration_seconds: ["histogram", ["operation", "outcome"]],
      imgsrv_objectstore_bytes_total: ["counter", ["direction", "operation"]],
      imgsrv_background_job_attempts_total: ["counter", ["job", "outcome"]],
      imgsrv_background_job_errors_total: ["counter", ["job"]],
      imgsrv_background_job_circuit_open_total: ["counter", ["job"]],
      imgsrv_background_job_consecutive_failures: ["gauge", ["job"]],
      imgsrv_background_job_last_success_timestamp_seconds: ["gauge", ["job"]],
      imgsrv_postgres_pool_connections: ["gauge", ["state"]],
      imgsrv_postgres_pool_acquires_total: ["counter", []],
      imgsrv_postgres_pool_empty_acquires_total: ["counter", []],
      imgsrv_postgres_pool_canceled_acquires_total: ["counter", []],
      imgsrv_postgres_pool_acquire_duration_seconds_total: ["counter", []],
      imgsrv_upload_sessions: ["gauge", ["state"]],
      imgsrv_cas_ingest_jobs: ["gauge", ["state"]],
      imgsrv_cas_blobs: ["gauge", []],
      imgsrv_cas_blob_bytes: ["gauge", []],
      imgsrv_publish_jobs: ["gauge", ["state"]],
      imgsrv_publish_steps: ["gauge", ["state", "step"]],
      imgsrv_publish_versions_publishing: ["gauge", []],
      imgsrv_incus_projection_rows: ["gauge", []],
      target_info: ["gauge", ["service_name", "service_version"]],
      // … and ours: requests by route, promotion and publish durations, bytes in and out.
      imgsrv_http_requests_total: ["counter", ["http_request_method", "http_response_status_code", "http_route"]],
      imgsrv_cas_promotion_duration_seconds: ["histogram", ["outcome"]],
      imgsrv_publish_step_duration_seconds: ["histogram", ["outcome", "step"]],
      imgsrv_upload_part_bytes_received_total: ["counter", []],
      imgsrv_download_bytes_total: ["counter", ["route"]],
      imgsrv_downloads_total: ["counter", ["route", "status"]]
    }
    // The reference also labels the HTTP series with the listener (see the test below).
    const listenerLabels = ["network_protocol_name", "server_address", "server_port", "url_scheme"]
    for (const [family, [type, labels]] of Object.entries(expected)) {
      expect(after.types.get(family), family).toBe(type)
      const found = labelNamesOf(after, family)
      const allowed = family.startsWith("http_server_") || family === "imgsrv_http_requests_total"
        ? [...labels, ...listenerLabels]
        : labels
      expect(found, family).toEqual(expect.arrayContaining([...labels]))
      expect(found.filter((name) => !allowed.includes(name)), family).toEqual([])
    }
  })

  it("counts no active requests once every request has finished", () => {
    const active = after.samples.filter((s) => s.name === "http_server_active_requests")
    expect(active.length).toBeGreaterThan(0)
    for (const sample of active) expect(sample.value, JSON.stringify(sample.labels)).toBe(0)
  })

  // The reference's HTTP series also carry the listener's protocol, scheme, address and
  // port: the bound socket (the harness listens on 127.0.0.1 and an ephemeral port).
  it("labels the HTTP series with the reference's listener attributes", () => {
    for (const family of ["http_server_request_duration_seconds", "http_server_active_requests"]) {
      expect(labelNamesOf(after, family)).toEqual(
        expect.arrayContaining(["server_address", "server_port", "url_scheme"])
      )
    }
    expect(labelNamesOf(after, "http_server_request_duration_seconds")).toContain("network_protocol_name")
    const samples = after.samples.filter((s) => s.name.startsWith("http_server_request_duration_seconds"))
    expect(samples.length).toBeGreaterThan(0)
    for (const sample of samples) {
      expect(sample.labels["url_scheme"]).toBe("http")
      expect(sample.labels["network_protocol_name"]).toBe("http")
      expect(sample.labels["server_address"]).toBe("127.0.0.1")
      expect(sample.labels["server_port"]).toMatch(/^[1-9][0-9]*$/)
    }
  })

  it("documents in docs/reference/metrics.md exactly the series the listener exposes", () => {
    const page = readFileSync(path.join(root, "docs", "reference", "metrics.md"), "utf8")
    const documented = new Set(
      [...page.matchAll(/^\| `([a-z_]+)`/gm)].map((m) => m[1]!)
    )
    // Series that exist only once something happened that a healthy flow does not do:
    // a failed attempt, or work waiting or running at scrape time (covered by the
    // uploads, publishing and worker tests).
    const conditional = [
      "imgsrv_background_job_last_error_timestamp_seconds",
      "imgsrv_cas_ingest_oldest_queued_age_seconds",
      "imgsrv_cas_ingest_oldest_running_age_seconds",
      "imgsrv_publish_step_oldest_queued_age_seconds",
      "imgsrv_publish_step_oldest_running_age_seconds",
      "imgsrv_cas_promotion_verified_bytes_total",
      // Only after a 429 (test/platform/rate-limit.test.ts).
      "imgsrv_rate_limited_requests_total",
      "imgsrv_webhook_oldest_pending_age_seconds",
      "imgsrv_webhook_delivery_attempt_duration_seconds"
    ]
    const exposed = new Set(after.types.keys())
    expect([...exposed].filter((name) => !documented.has(name)), "exposed but not in docs/reference/metrics.md")
      .toEqual([])
    expect(
      [...documented].filter((name) => !exposed.has(name) && !conditional.includes(name)),
      "in docs/reference/metrics.md but not exposed"
    ).toEqual([])
    // The conditional ones are documented and really exist in the code.
    const sources = readdirSync(path.join(root, "src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .map((f) => readFileSync(path.join(root, "src", f), "utf8"))
      .join("\n")
    for (const name of conditional) {
      expect(documented.has(name), `${name} is not in docs/reference/metrics.md`).toBe(true)
      expect(sources.includes(`"${name}"`), `${name} is not in src/`).toBe(true)
    }
  })

  it("keeps label sets bounded: 100 uploads of distinct digests add no series and no ids", async () => {
    const token = await app.tokenFor("content-writer")
    const baseline = seriesPerFamily(await scrapeExposition(metricsUrl))
    const digests: Array<string> = []
    const queue = Array.from({ length: 100 }, (_, i) => i)
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        digests.push((await uploadBlob(app, token, testBytes(512 + i, 1000 + i))).digest)
      }
    }))
    expect(new Set(digests).size).toBe(100)
    const final = await scrapeExposition(metricsUrl)
    expect(Object.fromEntries(seriesPerFamily(final))).toEqual(Object.fromEntries(baseline))
    expect(valueOf(final, "imgsrv_cas_blobs")).toBe(102)

    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i
    for (const sample of final.samples) {
      for (const value of Object.values(sample.labels)) {
        expect(value, sample.name).not.toMatch(/[0-9a-f]{32}|sha256:/)
        expect(value, sample.name).not.toMatch(uuid)
        expect(value, sample.name).not.toContain("observed") // the image name
      }
    }
  })
})
