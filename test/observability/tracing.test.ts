import { describe, expect, it } from "vitest"
import { startTestApp } from "../support/harness.js"
import { startOtlpReceiver } from "../support/otlp-receiver.js"

describe("tracing", () => {
  it("exports a span per request named by route, with SQL and object-store children, honouring traceparent", async () => {
    const receiver = await startOtlpReceiver()
    const app = await startTestApp({
      settings: { "otel-endpoint": receiver.endpoint, "otel-service-name": "imgsrv-test" }
    })
    const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
    let traceHeader: string | null = null
    try {
      const ready = await app.request("GET", "/readyz", {
        headers: { traceparent: `00-${incomingTrace}-00f067aa0ba902b7-01` }
      })
      expect(ready.status).toBe(204)
      traceHeader = ready.headers.get("x-trace-id")
      expect((await app.request("GET", "/healthz")).headers.get("x-trace-id")).toMatch(/^[0-9a-f]{32}$/)
    } finally {
      await app.close() // flushes the exporter
      await receiver.close()
    }
    expect(traceHeader).toBe(incomingTrace)
    const spans = receiver.spans()
    const request = spans.find((s) => s.name === "GET /readyz")
    expect(request, JSON.stringify(spans.map((s) => s.name))).toBeDefined()
    expect(request!.traceId).toBe(incomingTrace)
    expect(request!.parentSpanId).toBe("00f067aa0ba902b7")
    expect(request!.serviceName).toBe("imgsrv-test")
    expect(request!.attributes["http.route"]).toBe("/readyz")
    expect(request!.attributes["http.response.status_code"]).toBe(204)
    expect(typeof request!.attributes["imgsrv.request_id"]).toBe("string")
    const inTrace = spans.filter((s) => s.traceId === incomingTrace)
    expect(inTrace.some((s) => s.name.startsWith("sql."))).toBe(true)
    expect(inTrace.some((s) => s.name.startsWith("objectstore."))).toBe(true)
  })

  it("is switched off when no endpoint is configured: no trace ids are produced", async () => {
    const app = await startTestApp()
    try {
      const res = await app.request("GET", "/readyz", {
        headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }
      })
      expect(res.status).toBe(204)
      expect(res.headers.get("x-trace-id")).toBeNull()
    } finally {
      await app.close()
    }
  })
})
