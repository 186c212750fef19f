import { rm } from "node:fs/promises"
import { afterAll, beforeAll, expect, it } from "vitest"
import { createDatabase, tempDir } from "../support/harness.js"
import { type OtlpReceiver, startOtlpReceiver } from "../support/otlp-receiver.js"
import { freePort, type ImgsrvProcess, spawnImgsrv, waitForStatus } from "../support/process.js"

/**
 * Trace export is off unless an endpoint is configured — not merely quiet. Two real
 * processes run side by side against a collector both could reach, listening where an
 * exporter falling back to OpenTelemetry's defaults would send (127.0.0.1 and ::1, port
 * 4318, when free). They differ in one variable: `OTEL_EXPORTER_OTLP_ENDPOINT`. Both set
 * `OTEL_SERVICE_NAME`, which must not switch export on by itself. The collector tells
 * their payloads apart by service name.
 */

const OTLP_HTTP_DEFAULT_PORT = 4318
const incomingTrace = "0af7651916cd43dd8448eb211c80319c"

/** A receiver on the OTLP default port when it is free, else on any port. */
const listen = async (host: string): Promise<OtlpReceiver | undefined> => {
  try {
    return await startOtlpReceiver(OTLP_HTTP_DEFAULT_PORT, host)
  } catch {
    return host === "127.0.0.1" ? startOtlpReceiver(0, host) : undefined // e.g. no IPv6 loopback
  }
}

let receivers: Array<OtlpReceiver> = []
let db: Awaited<ReturnType<typeof createDatabase>>
let dataDir = ""

beforeAll(async () => {
  receivers = (await Promise.all([listen("127.0.0.1"), listen("::1")])).filter((r) => r !== undefined)
  db = await createDatabase()
  dataDir = await tempDir()
})
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()))
  await db?.drop()
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
})

const start = async (otel: Record<string, string>) => {
  const port = await freePort()
  const proc = spawnImgsrv({
    env: {
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_LOG_FORMAT: "json",
      IMGSRV_VERBOSITY: "warn",
      ...otel
    }
  })
  return { proc, baseUrl: `http://127.0.0.1:${port}` }
}

/** The same few requests on each process; returns the X-Trace-ID of each response. */
const exercise = async (baseUrl: string) => {
  const headers = { traceparent: `00-${incomingTrace}-b7ad6b7169203331-01` }
  const responses = [
    await fetch(`${baseUrl}/readyz`, { headers }),
    await fetch(`${baseUrl}/v1/uploads`, { method: "POST", headers, body: "{}" }),
    await fetch(`${baseUrl}/streams/v1/index.json`, { headers })
  ]
  for (const r of responses) await r.arrayBuffer()
  expect(responses.map((r) => r.status)).toEqual([204, 401, 200])
  return responses.map((r) => r.headers.get("x-trace-id"))
}

const postsFrom = (service: string) =>
  receivers.flatMap((r) => r.posts()).filter((p) => p.serviceNames.includes(service))

/** The JSON access-log records of 401 answers (warn level) a process wrote to stderr. */
const unauthorizedAccessLines = (proc: ImgsrvProcess) =>
  proc.stderr().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r["msg"] === "http request" && r["status"] === 401)

it("exports nothing without an endpoint, while the same process with one exports its spans to the same collector", async () => {
  const processes: Array<ImgsrvProcess> = []
  const off = await start({ OTEL_SERVICE_NAME: "imgsrv-off" })
  processes.push(off.proc)
  const on = await start({ OTEL_SERVICE_NAME: "imgsrv-on", OTEL_EXPORTER_OTLP_ENDPOINT: receivers[0]!.endpoint })
  processes.push(on.proc)
  try {
    await Promise.all([
      waitForStatus(`${off.baseUrl}/readyz`, 204, 60_000),
      waitForStatus(`${on.baseUrl}/readyz`, 204, 60_000)
    ])

    expect(await exercise(off.baseUrl)).toEqual([null, null, null])
    expect(await exercise(on.baseUrl)).toEqual([incomingTrace, incomingTrace, incomingTrace])

    // The traced process exports on its interval; by then the other has had every chance.
    const deadline = Date.now() + 15_000
    while (postsFrom("imgsrv-on").length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    // Shutting down flushes an exporter, if there is one.
    expect(await Promise.all(processes.map((p) => p.stop("SIGTERM")))).toEqual([0, 0])
  } finally {
    await Promise.all(processes.map((p) => p.stop("SIGKILL")))
  }

  const all = receivers.flatMap((r) => r.posts())
  expect(postsFrom("imgsrv-on").length).toBeGreaterThan(0)
  expect(all.filter((p) => !p.serviceNames.includes("imgsrv-on"))).toEqual([])
  const spans = receivers.flatMap((r) => r.spans())
  expect(spans.some((s) => s.serviceName === "imgsrv-off")).toBe(false)
  const ready = spans.find((s) => s.name === "GET /readyz" && s.traceId === incomingTrace)
  expect(ready?.serviceName).toBe("imgsrv-on")
  expect(ready?.parentSpanId).toBe("b7ad6b7169203331")

  // Log lines of a traced request carry its trace and span; untraced ones carry neither.
  const [tracedLine] = unauthorizedAccessLines(on.proc)
  expect(tracedLine).toMatchObject({ trace_id: incomingTrace, span_id: expect.stringMatching(/^[0-9a-f]{16}$/) })
  expect(spans.some((s) => s.spanId === tracedLine!["span_id"] && s.name === "POST /v1/uploads")).toBe(true)
  const [untracedLine] = unauthorizedAccessLines(off.proc)
  expect(untracedLine).toBeDefined()
  expect(Object.keys(untracedLine!).filter((k) => k === "trace_id" || k === "span_id")).toEqual([])
})
