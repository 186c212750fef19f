import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startTestApp, type TestApp } from "../support/harness.js"
import { freePort } from "../support/process.js"
import { parseExposition } from "./exposition.js"

/**
 * The metrics listener answers in the format the scraper asks for: Prometheus text 0.0.4
 * by default, OpenMetrics 1.0.0 for `Accept: application/openmetrics-text` (what Prometheus
 * sends), as the reference does. And a series that goes down is a gauge in both.
 */

let app: TestApp
let metricsUrl = ""

beforeAll(async () => {
  const port = await freePort()
  app = await startTestApp({ settings: { "metrics-listen": `127.0.0.1:${port}` } })
  metricsUrl = `http://127.0.0.1:${port}/metrics`
  // Some traffic, so that HTTP counters and histograms have series.
  await (await app.request("GET", "/v1/images")).arrayBuffer()
  await (await app.request("GET", "/healthz")).arrayBuffer()
})
afterAll(() => app?.close())

/** What Prometheus 2.x/3.x sends when it scrapes. */
const PROMETHEUS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," +
  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

const scrape = async (accept?: string) => {
  const response = await fetch(metricsUrl, accept === undefined ? {} : { headers: { accept } })
  expect(response.status).toBe(200)
  return { contentType: response.headers.get("content-type"), text: await response.text() }
}

describe("effect_fiber_active", () => {
  it("is a gauge (it goes down), while the fiber counters stay counters", async () => {
    const { text } = await scrape()
    const exposition = parseExposition(text)
    expect(exposition.types.get("effect_fiber_active")).toBe("gauge")
    expect(exposition.types.get("effect_fiber_started")).toBe("counter")
    const open = await scrape(PROMETHEUS_ACCEPT)
    expect(open.text).toContain("# TYPE effect_fiber_active gauge\n")
    expect(open.text).toMatch(/\neffect_fiber_active \d+\n/)
  })
})

describe("without an Accept header asking for OpenMetrics", () => {
  it("is Prometheus text 0.0.4, without # EOF", async () => {
    for (const accept of [undefined, "text/plain", "*/*", "application/openmetrics-text;q=0, text/plain"]) {
      const { contentType, text } = await scrape(accept)
      expect(contentType, accept).toBe("text/plain; version=0.0.4; charset=utf-8")
      expect(text).not.toContain("# EOF")
      expect(text).toContain("# TYPE imgsrv_http_requests_total counter\n")
      expect(text).toContain("# TYPE target_info gauge\n")
    }
  })
})

describe("with Accept: application/openmetrics-text", () => {
  it("is OpenMetrics 1.0.0: counter families without _total and samples with it, info, # EOF last", async () => {
    const { contentType, text } = await scrape(PROMETHEUS_ACCEPT)
    expect(contentType).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8")
    expect(text.endsWith("\n# EOF\n")).toBe(true)
    expect(text.indexOf("# EOF")).toBe(text.length - "# EOF\n".length)
    const lines = text.trimEnd().split("\n")
    // Every counter family is named without _total, and each of its samples with it.
    const types = new Map<string, string>()
    for (const line of lines) {
      const match = /^# TYPE (\S+) (\S+)$/.exec(line)
      if (match) types.set(match[1]!, match[2]!)
    }
    const counters = [...types].filter(([, type]) => type === "counter").map(([name]) => name)
    expect(counters).toEqual(expect.arrayContaining([
      "imgsrv_http_requests",
      "effect_fiber_started",
      "process_cpu_seconds",
      "imgsrv_postgres_pool_acquires"
    ]))
    for (const name of counters) {
      expect(name.endsWith("_total"), name).toBe(false)
      const samples = lines.filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
      expect(samples, `${name} samples without _total`).toEqual([])
    }
    expect(text).toMatch(/\nimgsrv_http_requests_total\{[^}]*http_route="GET \/healthz"[^}]*\} 1\n/)
    expect(text).toMatch(/\neffect_fiber_started_total \d+\n/)
    // target_info is an info family, as the reference's exporter writes it.
    expect(text).toContain("# TYPE target info\n")
    expect(text).toMatch(/\ntarget_info\{service_name="imgsrv",service_version="[^"]+"\} 1\n/)
    // Histograms and gauges are written as in Prometheus text.
    expect(types.get("http_server_request_duration_seconds")).toBe("histogram")
    expect(text).toMatch(/\nhttp_server_request_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} \d+\n/)
    expect(types.get("process_resident_memory_bytes")).toBe("gauge")
  })

  it("answers HEAD with the same content type and no body", async () => {
    const response = await fetch(metricsUrl, { method: "HEAD", headers: { accept: "application/openmetrics-text" } })
    expect(response.headers.get("content-type")).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8")
    expect(await response.text()).toBe("")
  })
})
