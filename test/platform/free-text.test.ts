import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { expectProblem, expectStatus } from "../catalog/fixtures.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { beginUpload, putPart, sha256Digest, testBytes } from "../support/uploads.js"

/**
 * Free text is bounded wherever it enters (docs/operators.md, request limits): display names, token
 * names, filename hints, audiences and claim names 256 characters, descriptions 4096, URLs
 * 2048, principal attributes 16 KiB of JSON, 64 forwarded claims. At the limit a value is
 * stored; one character more is a 400 naming the field, and nothing is stored.
 */

let app: TestApp
let writer: string
let manager: string

beforeAll(async () => {
  app = await startTestApp()
  writer = await app.tokenFor("content-writer")
  manager = await app.tokenFor("auth-manager")
})
afterAll(() => app?.close())

const text = (length: number, unit = "a") => unit.repeat(length)
/** 256 characters that are 512 UTF-16 units: the limit counts characters. */
const emoji256 = "😀".repeat(256)

const refused = async (response: Response, field: string, max: number) => {
  const detail = (await expectProblem(response, 400)).detail
  expect(detail).toContain(`${field} must be at most ${max}`)
  expect(detail!.length).toBeLessThan(400)
}

describe("images", () => {
  it("take a display_name of 256 characters and a description of 4096; one more is a 400", async () => {
    const accepted = await app.request("POST", "/v1/images", {
      token: writer,
      json: { name: "bounded", display_name: emoji256, description: text(4096, "é") }
    })
    expect(await expectStatus(accepted, 201)).toMatchObject({ display_name: emoji256 })
    await refused(
      await app.request("POST", "/v1/images", { token: writer, json: { name: "b1", display_name: text(257) } }),
      "display_name",
      256
    )
    await refused(
      await app.request("POST", "/v1/images", { token: writer, json: { name: "b2", description: text(4097) } }),
      "description",
      4096
    )
    // The probe that found it: 900 KB of display name.
    await refused(
      await app.request("POST", "/v1/images", { token: writer, json: { name: "b3", display_name: text(900_000) } }),
      "display_name",
      256
    )
    expect(await query(app, "SELECT name FROM images ORDER BY name")).toEqual([{ name: "bounded" }])
  })
})

describe("uploads", () => {
  it("take a filename_hint of 256 characters, and part ETags up to 256 at complete", async () => {
    const bytes = testBytes(10, 7)
    const begin = (filename_hint: string) =>
      app.request("POST", "/v1/uploads", {
        token: writer,
        json: { expected_digest: sha256Digest(bytes), expected_size_bytes: 10, filename_hint }
      })
    await refused(await begin(text(257)), "filename_hint", 256)
    expect(await query(app, "SELECT id FROM upload_sessions")).toEqual([])
    const { session } = await beginUpload(app, writer, {
      expected_digest: sha256Digest(bytes),
      expected_size_bytes: 10
    })
    await putPart(app, writer, session.id, 1, bytes)
    await refused(
      await app.request("POST", `/v1/uploads/${session.id}/complete`, {
        token: writer,
        json: { parts: [{ number: 1, etag: text(257), size_bytes: 10 }] }
      }),
      "etag",
      256
    )
    expect((await begin(text(256))).status).toBe(201)
  })
})

describe("principals and tokens", () => {
  it("take a display_name of 256 characters and attributes of 16 KiB of JSON", async () => {
    const create = (json: unknown) => app.request("POST", "/v1/auth/principals", { token: manager, json })
    const created = await expectStatus<{ id: string }>(
      await create({ kind: "service", display_name: emoji256, attributes: { team: text(16 * 1024 - 20) } }),
      201
    )
    await refused(await create({ kind: "service", display_name: text(257) }), "display_name", 256)
    await refused(await create({ kind: text(257), display_name: "x" }), "kind", 256)
    const big = await create({ kind: "service", display_name: "big", attributes: { team: text(16 * 1024) } })
    expect((await expectProblem(big, 400)).detail).toContain("attributes must be at most 16384 bytes of JSON")
    expect(await query(app, "SELECT id FROM auth_principals WHERE display_name IN ('big', 'x')")).toEqual([])

    const issue = (name: string) =>
      app.request("POST", `/v1/auth/principals/${created.id}/api-tokens`, {
        token: manager,
        json: { name, expires_at: new Date(Date.now() + 3_600_000).toISOString() }
      })
    await refused(await issue(text(257)), "name", 256)
    expect((await issue(emoji256)).status).toBe(201)
  })
})

describe("OIDC provisioning rules", () => {
  it("refuse a display_name, audience or claim name over 256, an issuer_url over 2048 and over 64 claims", async () => {
    const base = {
      display_name: "rule",
      issuer_url: "https://issuer.invalid",
      audience: "imgsrv",
      condition: "true"
    }
    const save = (patch: Record<string, unknown>) =>
      app.request("POST", "/v1/auth/oidc-provisioning-rules", { token: manager, json: { ...base, ...patch } })
    await refused(await save({ display_name: text(257) }), "display_name", 256)
    await refused(await save({ audience: text(257) }), "audience", 256)
    await refused(await save({ issuer_url: `https://issuer.invalid/${text(2030)}` }), "issuer_url", 2048)
    await refused(await save({ forwarded_claims: [text(257)] }), "forwarded claim name", 256)
    const many = await save({ forwarded_claims: Array.from({ length: 65 }, (_, i) => `claim${i}`) })
    expect((await expectProblem(many, 400)).detail).toContain("forwarded_claims must list at most 64 claims")
    expect(await query(app, "SELECT id FROM auth_provisioning_rules")).toEqual([])
  })
})
