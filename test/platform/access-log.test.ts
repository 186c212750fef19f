import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { publishVersion } from "../catalog/fixtures.js"
import { describeBlob } from "../support/blobs.js"
import { type ServedImgsrv, startServedImgsrv } from "../support/shell.js"
import { uploadBlob } from "../support/uploads.js"

/**
 * The access log of a real imgsrv process (JSON lines on stderr): one line per request,
 * saying what the client did — concrete path with secrets redacted, route template,
 * status, bytes sent, user agent, and the client address a trusted proxy forwarded.
 */

type Line = Record<string, unknown>

let server: ServedImgsrv
let writer: string

beforeAll(async () => {
  server = await startServedImgsrv({
    env: { IMGSRV_LOG_FORMAT: "json", IMGSRV_TRUSTED_PROXIES: "127.0.0.1, 10.0.0.0/8" }
  })
  writer = await server.writerToken()
})
afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0)
})

const accessLines = (): Array<Line> =>
  server.proc.stderr().split("\n").filter((line) => line.includes("\"msg\":\"http request\"")).map((line) =>
    JSON.parse(line) as Line
  )

/** The access-log lines of `requestId`, once at least one was written (the log trails the response). */
const linesOf = async (requestId: string): Promise<Array<Line>> => {
  const deadline = Date.now() + 10_000
  for (;;) {
    const lines = accessLines().filter((line) => line["request_id"] === requestId)
    if (lines.length > 0 || Date.now() > deadline) return lines
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const lineOf = async (requestId: string): Promise<Line> => {
  const lines = await linesOf(requestId)
  expect(lines, `access log of ${requestId}`).toHaveLength(1)
  const { time: _time, duration_ms, ...rest } = lines[0]!
  expect(typeof duration_ms).toBe("number")
  return rest
}

/** A request as a client behind the proxies sends it; the body is read to the end. */
const send = async (
  method: string,
  path: string,
  requestId: string,
  headers: Record<string, string> = {},
  body?: string
) => {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { "x-request-id": requestId, ...headers },
    ...(body === undefined ? {} : { body })
  })
  return { status: response.status, bytes: (await response.arrayBuffer()).byteLength }
}

describe("the access log", () => {
  it("says what the client asked, with the secrets of the query redacted, and what it got", async () => {
    const answer = await send(
      "GET",
      "/v1/images/nothing/versions/1.0?token=abc&page=2&X-Amz-Signature=zzz&code=c0de&client_secret=s",
      "redacted",
      { "user-agent": "access-log-test/1.0", "x-forwarded-for": "198.51.100.23, 10.1.2.3" }
    )
    expect(answer.status).toBe(404)
    expect(await lineOf("redacted")).toEqual({
      level: "warn",
      msg: "http request",
      request_id: "redacted",
      method: "GET",
      route: "GET /v1/images/{name}/versions/{version}",
      path: "/v1/images/nothing/versions/1.0?token=REDACTED&page=2&X-Amz-Signature=REDACTED&code=REDACTED" +
        "&client_secret=REDACTED",
      status: 404,
      response_bytes: answer.bytes,
      client_addr: "198.51.100.23",
      remote_addr: "127.0.0.1",
      user_agent: "access-log-test/1.0"
    })
    expect(server.proc.stderr()).not.toContain("c0de")
  })

  it("takes the client address from X-Forwarded-For by the right-most hop that is not a trusted proxy", async () => {
    const cases = [
      // What a client writes in front of the proxies' hops is not believed.
      ["spoofed", "203.0.113.66, 198.51.100.7, 10.0.0.5", "198.51.100.7"],
      // Every hop a trusted proxy: the left-most one.
      ["all-trusted", "10.9.9.9, 10.0.0.5", "10.9.9.9"],
      // Ports and brackets as some proxies write them, IPv6.
      ["with-ports", "[2001:db8::7]:443, 10.0.0.5:8080", "2001:db8::7"],
      // Not an address where the client should be: the last hop a trusted proxy vouched for.
      ["garbage", "unknown, 10.0.0.5", "10.0.0.5"],
      ["none", undefined, "127.0.0.1"]
    ] as const
    for (const [id, forwarded, client] of cases) {
      await send("GET", "/healthz", id, forwarded === undefined ? {} : { "x-forwarded-for": forwarded })
      expect((await lineOf(id))["client_addr"], id).toBe(client)
    }
  })

  it("counts the bytes of streamed downloads, ranges and HEAD, and logs a download the client abandoned", async () => {
    const bytes = randomBytes(32 * 1024 * 1024)
    const { digest } = await uploadBlob(server.client, writer, bytes)
    const full = await send("GET", `/v1/blobs/${digest}`, "download")
    expect(full).toEqual({ status: 200, bytes: bytes.byteLength })
    expect(await lineOf("download")).toMatchObject({
      route: "GET /v1/blobs/{digest}",
      path: `/v1/blobs/${digest}`,
      status: 200,
      response_bytes: bytes.byteLength
    })
    await send("GET", `/v1/blobs/${digest}`, "range", { range: "bytes=100-199" })
    expect(await lineOf("range")).toMatchObject({ status: 206, response_bytes: 100 })
    await send("HEAD", `/v1/blobs/${digest}`, "head")
    expect(await lineOf("head")).toMatchObject({ method: "HEAD", status: 200, response_bytes: 0 })

    // The client reads one chunk and hangs up: the line says what it was sent before that.
    const abort = new AbortController()
    const response = await fetch(`${server.baseUrl}/v1/blobs/${digest}`, {
      headers: { "x-request-id": "abandoned" },
      signal: abort.signal
    })
    await response.body!.getReader().read()
    abort.abort()
    const abandoned = await lineOf("abandoned")
    expect(abandoned).toMatchObject({ status: 200 })
    expect(abandoned["response_bytes"]).toBeGreaterThan(0)
    expect(abandoned["response_bytes"]).toBeLessThan(bytes.byteLength)
  })

  it("logs published manifests answered from memory like those the app answers", async () => {
    const disk = randomBytes(1024)
    await uploadBlob(server.client, writer, disk)
    await publishVersion(server.client, writer, {
      name: "logged",
      version: "1.0",
      artifacts: [{ blob: describeBlob(disk) }]
    })
    const headers = { "user-agent": "manifest-reader", "x-forwarded-for": "192.0.2.44" }
    const first = await send("GET", "/v1/images/logged/versions/1.0?token=t", "manifest-1", headers)
    const second = await send("GET", "/v1/images/logged/versions/1.0?token=t", "manifest-2", headers)
    expect(second).toEqual(first)
    const line = await lineOf("manifest-1")
    expect(line).toMatchObject({
      path: "/v1/images/logged/versions/1.0?token=REDACTED",
      status: 200,
      response_bytes: first.bytes,
      client_addr: "192.0.2.44",
      user_agent: "manifest-reader"
    })
    expect(await lineOf("manifest-2")).toEqual({ ...line, request_id: "manifest-2" })
  })

  it("writes exactly one line for every request, whatever its outcome", async () => {
    const requests: ReadonlyArray<readonly [string, string, Record<string, string>?, string?]> = [
      ["GET", "/healthz"],
      ["GET", "/no/such/path"],
      ["DELETE", "/v1/images"],
      ["POST", "/v1/images", {}, "{\"name\":\"x\"}"],
      ["POST", "/v1/images", { authorization: `Bearer ${writer}` }, "{not json"],
      ["GET", "/v1/images/%zz"],
      ["HEAD", "/streams/v1/index.json"],
      ["GET", "/openapi.json"]
    ]
    const ids = requests.map((_, i) => `each-${i}`)
    await Promise.all(requests.map(([method, path, headers, body], i) => send(method, path, ids[i]!, headers, body)))
    for (const id of ids) expect(await linesOf(id), id).toHaveLength(1)
    const statuses = await Promise.all(ids.map(async (id) => (await lineOf(id))["status"]))
    expect(statuses).toEqual([204, 404, 405, 401, 400, 400, 200, 200])
  })
})
