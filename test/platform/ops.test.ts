import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { buildInfo } from "../../src/build-info.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { type S3TestServer, startS3Server } from "../support/s3-server.js"

/** Operational surface of a running app: readiness, request ids, router errors. */

const waitUntil = async (f: () => Promise<boolean>, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await f()) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

describe("readiness", () => {
  let s3: S3TestServer
  let app: TestApp
  beforeAll(async () => {
    s3 = await startS3Server()
    await s3.createBucket("ready")
    app = await startTestApp({
      store: "s3",
      s3: { endpoint: s3.endpoint, bucket: "ready", accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }
    })
  })
  afterAll(async () => {
    await app?.close()
    await s3?.stop()
  })

  it("flips to 503 when the object store goes away and back to 204 when it returns", async () => {
    expect((await app.request("GET", "/readyz")).status).toBe(204)
    await s3.pause()
    const down = await app.request("GET", "/readyz")
    expect(down.status).toBe(503)
    expect(down.headers.get("content-type")).toContain("text/plain")
    expect((await app.request("GET", "/healthz")).status).toBe(204)
    await s3.resume()
    expect(await waitUntil(async () => (await app.request("GET", "/readyz")).status === 204)).toBe(true)
  })
})

describe("every response", () => {
  let app: TestApp
  beforeAll(async () => {
    app = await startTestApp()
  })
  afterAll(async () => {
    await app?.close()
  })

  it("carries X-Request-ID: a sane incoming one is echoed, anything else replaced by a UUID", async () => {
    const echoed = await app.request("GET", "/healthz", { headers: { "x-request-id": "  trace-me-42  " } })
    expect(echoed.headers.get("x-request-id")).toBe("trace-me-42")
    const tooLong = await app.request("GET", "/healthz", { headers: { "x-request-id": "x".repeat(129) } })
    expect(tooLong.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
    const spaces = await app.request("GET", "/nope", { headers: { "x-request-id": "has space" } })
    expect(spaces.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("answers unknown paths with a plain-text 404 and known paths with another method with 405 + Allow", async () => {
    const missing = await app.request("GET", "/v1/nothing-here")
    expect(missing.status).toBe(404)
    expect(missing.headers.get("content-type")).toContain("text/plain")
    expect(await missing.text()).toBe("404 page not found\n")
    const wrongMethod = await app.request("DELETE", "/healthz")
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.headers.get("allow")).toBe("GET, HEAD")
    expect((await app.request("GET", "/healthz/")).status).toBe(404)
  })

  it("serves the generated OpenAPI document and the docs UI", async () => {
    const spec = await app.request("GET", "/openapi.json")
    expect(spec.status).toBe(200)
    const doc = (await spec.json()) as { openapi: string; info: { version: string }; paths: Record<string, unknown> }
    expect(doc.openapi).toMatch(/^3\./)
    // Annotated where the server is composed: the API declarations carry no build information.
    expect(doc.info.version).toBe(buildInfo.version)
    expect(Object.keys(doc.paths)).toContain("/readyz")
    // Ids and timestamps are documented with their formats, in every domain.
    const schemas =
      (doc as unknown as { components: { schemas: Record<string, { properties: Record<string, unknown> }> } })
        .components.schemas
    expect(schemas["Image"]?.properties["id"]).toMatchObject({ type: "string", format: "uuid" })
    expect(schemas["PublishJob"]?.properties["created_at"]).toMatchObject({ type: "string", format: "date-time" })
    expect(schemas["ApiToken"]?.properties["expires_at"]).toMatchObject({ type: "string", format: "date-time" })
    const paths = doc.paths as Record<string, { get?: { responses?: Record<string, unknown> } }>
    // Every documented error is problem+json, as renderFailure sends it (not the decode-error shape).
    type Operation = { responses?: Record<string, { content?: Record<string, unknown> }> }
    const operations: Array<Operation> = Object.values(doc.paths as Record<string, Record<string, Operation>>)
      .flatMap((item) => Object.values(item))
    const errorTypes = new Set(
      operations.flatMap((op) =>
        Object.entries(op.responses ?? {}).filter(([status]) => Number(status) >= 400)
          .flatMap(([status, r]) =>
            Object.keys(r.content ?? {}).map((type) => `${status === "503" ? "503" : "4xx"} ${type}`)
          )
      )
    )
    expect([...errorTypes].sort()).toEqual([
      "4xx application/problem+json",
      "503 application/problem+json",
      "503 text/plain"
    ])
    expect(JSON.stringify(doc)).not.toContain("#/components/schemas/HttpApiDecodeError")
    expect(Object.keys(paths["/readyz"]?.get?.responses ?? {})).toContain("503")
    for (const route of ["/streams/v1/index.json", "/streams/v1/images.json"]) {
      expect(Object.keys(paths[route]?.get?.responses ?? {}), route).toContain("304")
    }
    // The download routes document every status they answer with, not only 200.
    for (
      const route of [
        "/v1/blobs/{digest}",
        "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download",
        "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}/download",
        // The same downloads under their file names (Simple Streams item paths).
        "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download/{file_name}",
        "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}/download/{file_name}"
      ]
    ) {
      expect(Object.keys(paths[route]?.get?.responses ?? {}), route).toEqual(
        expect.arrayContaining(["200", "206", "304", "404", "416"])
      )
    }
    const docs = await app.request("GET", "/docs")
    expect(docs.status).toBe(200)
    expect(docs.headers.get("content-type")).toContain("text/html")
  })
})
