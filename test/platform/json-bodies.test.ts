import { execFile } from "node:child_process"
import * as http from "node:http"
import { promisify } from "node:util"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest"
import { expectProblem } from "../catalog/fixtures.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"

/**
 * JSON control bodies a client can send but no schema rule describes: too long (also
 * without a Content-Length), nested thousands deep, not UTF-8, or escaping half of a
 * UTF-16 surrogate pair. Each gets a problem+json answer over a connection that is still
 * there to carry it — never a reset or a 500 — and nothing is stored.
 */

const MiB = 1024 * 1024
const run = promisify(execFile)

let app: TestApp
let writer: string
let manager: string
let stderr = ""

beforeAll(async () => {
  app = await startTestApp({ settings: { verbosity: "warn" } })
  writer = await app.tokenFor("content-writer")
  manager = await app.tokenFor("auth-manager")
})
afterAll(() => app?.close())
beforeEach(() => {
  stderr = ""
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk)
    return true
  })
})
afterEach(() => {
  vi.restoreAllMocks()
})

/** POSTs `body` as it is (bytes, no re-encoding) with node:http; chunked unless `length` is given. */
const post = (path: string, body: Uint8Array, options: { token: string; contentLength?: boolean }) =>
  new Promise<{ status: number; contentType: string; body: string }>((resolve, reject) => {
    const request = http.request(`${app.baseUrl}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${options.token}`,
        ...(options.contentLength === true ? { "content-length": String(body.byteLength) } : {})
      }
    }, (response) => {
      let text = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk)).on(
        "end",
        () =>
          resolve({ status: response.statusCode ?? 0, contentType: response.headers["content-type"] ?? "", body: text })
      )
    })
    // The server may stop reading once it has answered; what matters is the answer.
    request.on("error", (error) => reject(error))
    for (let offset = 0; offset < body.byteLength; offset += 64 * 1024) {
      request.write(body.subarray(offset, offset + 64 * 1024))
    }
    request.end()
  })

const imageBody = (size: number) => {
  const head = "{\"name\":\"padded\"}"
  return new TextEncoder().encode(head + " ".repeat(size - head.length))
}

const detailOf = (text: string) => (JSON.parse(text) as { detail: string }).detail

describe("a JSON body over 1 MiB", () => {
  it("sent chunked (no Content-Length) is a 413 problem+json, read by curl, and logged", async () => {
    for (const size of [MiB + 1, 64 * MiB]) {
      const { stdout } = await run("bash", [
        "-c",
        `head -c ${size} /dev/zero | tr '\\0' ' ' | curl -sS -X POST "$URL" -H "Authorization: Bearer $TOKEN" ` +
        `-H 'Transfer-Encoding: chunked' --data-binary @- -w '\\n%{http_code} %{content_type}'`
      ], { env: { ...process.env, URL: `${app.baseUrl}/v1/images`, TOKEN: writer }, maxBuffer: 4 * MiB })
      const lines = stdout.trim().split("\n")
      expect(lines.at(-1), `${size} bytes`).toBe("413 application/problem+json")
      expect(detailOf(lines.slice(0, -1).join("\n"))).toBe("invalid JSON request body: body exceeds 1048576 bytes")
    }
    expect(stderr).toMatch(/"status":413/)
    expect(stderr).toContain("\"route\":\"POST /v1/images\"")
  })

  it("sent chunked by node:http, or with a Content-Length, is a 413 too, and nothing is created", async () => {
    const chunked = await post("/v1/images", imageBody(2 * MiB), { token: writer })
    expect([chunked.status, chunked.contentType]).toEqual([413, "application/problem+json"])
    const declared = await post("/v1/images", imageBody(2 * MiB), { token: writer, contentLength: true })
    expect([declared.status, declared.contentType]).toEqual([413, "application/problem+json"])
    expect(detailOf(declared.body)).toBe("invalid JSON request body: body exceeds 1048576 bytes")
    expect(await query(app, "SELECT name FROM images")).toEqual([])
  })

  it("of exactly 1 MiB is read and served", async () => {
    const exact = await post("/v1/images", imageBody(MiB), { token: writer })
    expect(exact.status, exact.body).toBe(201)
    await expectProblem(await app.request("GET", "/v1/images/padded"), 404) // not published: still served
  })
})

describe("deeply nested JSON", () => {
  const nested = (depth: number, leaf = "1") => `${"[".repeat(depth)}${leaf}${"]".repeat(depth)}`

  it("(3000 levels, 6 KB) is a 400 naming the depth, on every JSON route, and the server stays up", async () => {
    const probes: ReadonlyArray<[string, string, string]> = [
      ["/v1/images", `{"name":${nested(3000)}}`, writer],
      ["/v1/uploads", `{"expected_digest":${nested(3000)}}`, writer],
      ["/v1/auth/principals", `{"kind":"service","display_name":"deep","attributes":{"a":${nested(3000)}}}`, manager],
      ["/v1/images", `${nested(3000, "{}")}`, writer]
    ]
    for (const [path, body, token] of probes) {
      const response = await app.request("POST", path, { token, body })
      expect((await expectProblem(response, 400)).detail, path).toBe(
        "invalid JSON request body: nesting deeper than 32 levels"
      )
    }
    expect(stderr).not.toContain("internal error")
    expect((await app.request("GET", "/healthz")).status).toBe(204)
  })

  it("comes after authentication: without a token it is a 401, as any body is", async () => {
    for (const body of [`{"name":${nested(3000)}}`, "{\"name\":\"\\ud800\"}"]) {
      const response = await app.request("POST", "/v1/images", { body })
      expect(response.status).toBe(401)
      await response.arrayBuffer()
    }
  })

  it("of 32 levels is accepted; 33 is refused", async () => {
    // The body object is one level, `attributes` a second.
    const ok = await app.request("POST", "/v1/auth/principals", {
      token: manager,
      body: `{"kind":"service","display_name":"nested","attributes":{"a":${nested(30)}}}`
    })
    expect(ok.status, await ok.clone().text()).toBe(201)
    const deep = await app.request("POST", "/v1/auth/principals", {
      token: manager,
      body: `{"kind":"service","display_name":"nested","attributes":{"a":${nested(31)}}}`
    })
    await expectProblem(deep, 400)
  })

  it("in a field of another type gets a short detail, not the value quoted back whole", async () => {
    const wide = JSON.stringify({ x: Array.from({ length: 100_000 }, () => 0) })
    const response = await app.request("POST", "/v1/images", {
      token: writer,
      body: `{"name":"w","description":${wide}}`
    })
    const detail = (await expectProblem(response, 400)).detail!
    expect(detail).toMatch(/^invalid JSON request body: description: Expected string, actual \{"x":\[0,0,/)
    expect(detail.length).toBeLessThan(400)
  })

  it("inside strings does not count", async () => {
    const response = await app.request("POST", "/v1/auth/principals", {
      token: manager,
      body: JSON.stringify({ kind: "service", display_name: "[[[[{{{{".repeat(20) })
    })
    expect(response.status).toBe(201)
  })
})

describe("text that is not Unicode", () => {
  it("an escaped lone surrogate is a 400 and nothing is stored", async () => {
    for (const escaped of ["\\ud800", "a\\uD800b", "\\udc00", "\\ud800\\u0041", "\\ude00\\ud83d", "x\\ud83d"]) {
      const body = `{"name":"lone","display_name":"${escaped}"}`
      const response = await app.request("POST", "/v1/images", { token: writer, body })
      expect((await expectProblem(response, 400)).detail, escaped).toMatch(
        /^invalid JSON request body: string contains an unpaired UTF-16 surrogate \(\\u[0-9a-f]{4}\)/
      )
    }
    expect(await query(app, "SELECT name FROM images WHERE name = 'lone'")).toEqual([])
  })

  it("a surrogate pair, escaped or literal, and a literal U+FFFD are stored as sent", async () => {
    const response = await app.request("POST", "/v1/images", {
      token: writer,
      body: "{\"name\":\"pair\",\"display_name\":\"\\ud83d\\ude00 \\\\ud800 😀 \uFFFD\"}"
    })
    expect(response.status).toBe(201)
    expect(((await response.json()) as { display_name: string }).display_name).toBe("😀 \\ud800 😀 \uFFFD")
  })

  it("bytes that are not UTF-8 are a 400", async () => {
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
      const body = new Uint8Array([
        ...new TextEncoder().encode("{\"name\":\"badutf\",\"display_name\":\"a"),
        ...bad,
        ...new TextEncoder().encode("\"}")
      ])
      const response = await post("/v1/images", body, { token: writer, contentLength: true })
      expect([response.status, response.contentType]).toEqual([400, "application/problem+json"])
      expect(detailOf(response.body)).toBe("invalid JSON request body: not valid UTF-8")
    }
    expect(await query(app, "SELECT name FROM images WHERE name = 'badutf'")).toEqual([])
  })
})
