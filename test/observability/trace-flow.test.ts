import { beforeAll, describe, expect, it } from "vitest"
import { startTestApp } from "../support/harness.js"
import { type ReceivedSpan, startOtlpReceiver } from "../support/otlp-receiver.js"
import { type RecordedCall, recordingApp, runTutorialFlow, spanNameOf, type TutorialResult } from "./flow.js"

/**
 * Traces of one tutorial flow, as an OpenTelemetry collector receives them over
 * OTLP/HTTP (a local receiver started by the test): a server span per request named by
 * its route template, SQL and object-store spans under it, and the work finished by
 * the background workers — the promotion of each upload and each publish step — in
 * spans of their own that link back to the request that started the work.
 */

const SERVER = 2 // OTLP SpanKind SPAN_KIND_SERVER

let spans: ReadonlyArray<ReceivedSpan> = []
let calls: ReadonlyArray<RecordedCall> = []
let flow: TutorialResult

beforeAll(async () => {
  const receiver = await startOtlpReceiver()
  const app = await startTestApp({
    store: "s3",
    settings: { "otel-endpoint": receiver.endpoint, "otel-service-name": "imgsrv-traced" }
  })
  try {
    const recorded = recordingApp(app)
    flow = await runTutorialFlow(recorded.app, await app.tokenFor("content-writer"))
    calls = recorded.calls
  } finally {
    await app.close() // shuts the exporter down, which flushes what is left
    await receiver.close()
  }
  spans = receiver.spans()
})

const inTrace = (traceId: string) => spans.filter((s) => s.traceId === traceId)
const named = (name: string) => spans.filter((s) => s.name === name)
const callsTo = (method: string, pattern: RegExp) => calls.filter((c) => c.method === method && pattern.test(c.path))

/** The one server span of a recorded request (its trace id is the response's X-Trace-ID). */
const serverSpanOf = (call: RecordedCall): ReceivedSpan => {
  expect(call.traceId, `${call.method} ${call.path} has no X-Trace-ID`).toMatch(/^[0-9a-f]{32}$/)
  const server = inTrace(call.traceId!).filter((s) => s.kind === SERVER)
  expect(server.map((s) => s.name), `${call.method} ${call.path}`).toEqual([spanNameOf(call.method, call.path)])
  return server[0]!
}

/** Every span of the trace descends from its root: no orphans, one tree. */
const expectOneTree = (traceId: string, root: ReceivedSpan) => {
  const trace = inTrace(traceId)
  const ids = new Set(trace.map((s) => s.spanId))
  for (const span of trace) {
    if (span === root) continue
    expect(ids.has(span.parentSpanId), `${span.name} in ${root.name} has a missing parent`).toBe(true)
  }
}

/** The spans of a background unit of work: root spans named `name`, in traces of their own. */
const workerSpans = (name: string, attribute: string, value: string) =>
  named(name).filter((s) => s.attributes[attribute] === value)

/** The worker span links to a span of the request's trace (the request that started the work). */
const expectLinkedTo = (worker: ReceivedSpan, request: RecordedCall) => {
  expect(worker.parentSpanId).toBe("")
  expect(worker.traceId).not.toBe(request.traceId)
  expect(worker.links).toHaveLength(1)
  const link = worker.links[0]!
  expect(link.traceId).toBe(request.traceId)
  expect(inTrace(request.traceId!).map((s) => s.spanId)).toContain(link.spanId)
}

describe("traces of the tutorial flow", () => {
  it("have one server span per request, named by route template, with status, route and request id", () => {
    expect(calls.length).toBeGreaterThan(15)
    for (const call of calls) {
      const span = serverSpanOf(call)
      expect(span.parentSpanId).toBe("")
      expect(span.serviceName).toBe("imgsrv-traced")
      expect(span.attributes["http.response.status_code"]).toBe(call.status)
      // The router's own notation (`/v1/uploads/:upload_id`): the framework's template, as OTel asks.
      const route = String(span.attributes["http.route"]).replace(/:(\w+)/g, "{$1}")
      expect(route).toBe(span.name.slice(span.name.indexOf(" ") + 1))
      expect(span.attributes["imgsrv.request_id"]).toMatch(/^[0-9a-f-]{36}$/)
      expectOneTree(call.traceId!, span)
    }
    // Distinct requests, distinct traces.
    expect(new Set(calls.map((c) => c.traceId)).size).toBe(calls.length)
  })

  it("carry SQL statements and object-store calls as child spans of the request", () => {
    const sqlOf = (call: RecordedCall) =>
      inTrace(call.traceId!).filter((s) => s.name === "sql.execute" && s.attributes["db.system.name"] === "postgresql")
    const objectStoreOf = (call: RecordedCall) =>
      inTrace(call.traceId!).filter((s) => s.name.startsWith("objectstore."))

    const [begin] = callsTo("POST", /^\/v1\/uploads$/)
    expect(sqlOf(begin!).length).toBeGreaterThan(0)
    expect(objectStoreOf(begin!).map((s) => s.name)).toContain("objectstore.create_multipart_upload")
    for (const put of callsTo("PUT", /\/parts\/\d+$/)) {
      const puts = objectStoreOf(put).filter((s) => s.name === "objectstore.put_part")
      expect(puts).toHaveLength(1)
      expect(puts[0]!.attributes["objectstore.driver"]).toBe("s3")
    }
    for (const complete of callsTo("POST", /\/complete$/)) {
      expect(objectStoreOf(complete).map((s) => s.name)).toContain("objectstore.complete_multipart_upload")
      expect(sqlOf(complete).length).toBeGreaterThan(0)
    }
    const [download] = callsTo("GET", /\/download$/)
    expect(objectStoreOf(download!).map((s) => s.name)).toContain("objectstore.open_object")
    const [publish] = callsTo("POST", /\/publish$/)
    expect(sqlOf(publish!).length).toBeGreaterThan(0)
  })

  it("trace the promotion of each upload in its own span, linked to the request that completed it", () => {
    for (const upload of [flow.disk, flow.meta]) {
      const [complete] = callsTo("POST", new RegExp(`/v1/uploads/${upload.uploadId}/complete$`))
      const promotions = workerSpans("cas.promote", "imgsrv.upload.id", upload.uploadId)
      expect(promotions).toHaveLength(1)
      const promotion = promotions[0]!
      expectLinkedTo(promotion, complete!)
      expectOneTree(promotion.traceId, promotion)
      const children = inTrace(promotion.traceId).map((s) => s.name)
      expect(children).toContain("sql.execute")
      expect(children).toContain("objectstore.move_object")
    }
  })

  it("trace each publish step in its own span, linked to the publish request", () => {
    const [publish] = callsTo("POST", /\/publish$/)
    for (const step of ["validate_catalog", "incus_index", "finalize_publish"]) {
      const found = workerSpans(`publish.${step}`, "imgsrv.publish.job_id", flow.jobId)
      expect(found, step).toHaveLength(1)
      expect(found[0]!.attributes["imgsrv.publish.attempt"]).toBe(1)
      expectLinkedTo(found[0]!, publish!)
      expectOneTree(found[0]!.traceId, found[0]!)
      expect(inTrace(found[0]!.traceId).map((s) => s.name)).toContain("sql.execute")
    }
    // incus_index reads the disk and the metadata from the store to hash them.
    const [index] = workerSpans("publish.incus_index", "imgsrv.publish.job_id", flow.jobId)
    expect(inTrace(index!.traceId).filter((s) => s.name === "objectstore.open_object")).toHaveLength(2)
  })

  it("leave idle worker polls untraced: every root span is a request, a unit of work or start-up", () => {
    const roots = spans.filter((s) => s.parentSpanId === "").map((s) => s.name)
    const expected =
      /^(GET|PUT|POST|DELETE|HEAD) |^cas\.promote$|^publish\.|^uploads\.expire$|^auth\.bootstrap$|^database\.migrate$|^streams\.refresh$/
    expect(roots.filter((name) => !expected.test(name))).toEqual([])
  })
})
