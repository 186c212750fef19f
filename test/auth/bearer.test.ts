import pg from "pg"
import { createHash } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mintToken } from "../../src/auth/tokens.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { startProbe, type Probe } from "./probe.js"

/**
 * Bearer credentials over HTTP: what a protected route answers for every kind of bad
 * header or token, in which order 401/403/400 come, and that anonymous routes ignore
 * the header altogether (spec/auth.md §2.4–2.6, §3; §9 items 1–7, 9, 11–15, 17–20).
 */

let app: TestApp
let probe: Probe
let admin: string

beforeAll(async () => {
  app = await startTestApp()
  probe = await startProbe({ databaseUrl: app.databaseUrl })
  admin = app.bootstrapToken()
})
afterAll(async () => {
  await probe?.close()
  await app?.close()
})

const json = async (response: Response) => (await response.json()) as Record<string, unknown>

/** A content-writer principal made through the management API, and its token. */
const writer = async (expiresAt = "2099-01-01T00:00:00Z") => {
  const principal = await json(await app.request("POST", "/v1/auth/principals", {
    token: admin,
    json: { kind: "service", display_name: "publisher" }
  }))
  expect((await app.request("PUT", `/v1/auth/principals/${principal["id"]}/roles/content-writer`, { token: admin })).status)
    .toBe(204)
  const issued = await app.request("POST", `/v1/auth/principals/${principal["id"]}/api-tokens`, {
    token: admin,
    json: { name: "ci", expires_at: expiresAt }
  })
  expect(issued.status).toBe(201)
  const body = await json(issued)
  return { principalId: principal["id"] as string, tokenId: body["id"] as string, plaintext: body["plaintext"] as string }
}

const expectUnauthorized = async (response: Response) => {
  expect(response.status).toBe(401)
  expect(response.headers.get("www-authenticate")).toBe("Bearer")
  expect(response.headers.get("content-type")).toContain("application/problem+json")
  expect(await response.json()).toEqual({
    type: "about:blank",
    title: "Unauthorized",
    status: 401,
    detail: "invalid bearer token"
  })
}

describe("a content.write route", () => {
  it("answers 401 with WWW-Authenticate: Bearer for a missing, foreign or malformed header", async () => {
    const { plaintext } = await writer()
    for (const header of [undefined, "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", `Bearer ${plaintext} extra`, plaintext]) {
      await expectUnauthorized(await probe.write(header))
    }
  })

  it("answers the same 401 for unknown, tampered, wrong-prefix, revoked and expired tokens", async () => {
    const { plaintext, tokenId } = await writer()
    const other = mintToken()
    const secret = plaintext.slice(plaintext.lastIndexOf("_") + 1)
    const tampered = `${plaintext.slice(0, -1)}${plaintext.endsWith("A") ? "B" : "A"}`
    for (const token of [other.plaintext, tampered, `ak_${tokenId}_${secret}`, `imgsrv_at_${tokenId}`, "garbage"]) {
      await expectUnauthorized(await probe.write(`Bearer ${token}`))
    }
    const expiring = await writer(new Date(Date.now() + 1500).toISOString())
    expect((await probe.write(`Bearer ${expiring.plaintext}`)).status).toBe(200)
    await new Promise((resolve) => setTimeout(resolve, 1600))
    await expectUnauthorized(await probe.write(`Bearer ${expiring.plaintext}`))
  })

  it("accepts the bearer scheme in any case and shows the handler the resolved principal", async () => {
    const { plaintext, principalId } = await writer()
    for (const scheme of ["Bearer", "bearer", "bEaReR"]) {
      const response = await probe.write(`${scheme} ${plaintext}`)
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ principal_id: principalId, credential: "api-token" })
    }
  })

  it("answers 403 without a challenge for a principal lacking content.write — the bootstrap auth-manager too", async () => {
    for (const token of [admin, await app.tokenFor()]) {
      const response = await probe.write(`Bearer ${token}`)
      expect(response.status).toBe(403)
      expect(response.headers.get("www-authenticate")).toBeNull()
      expect(await response.json()).toEqual({
        type: "about:blank",
        title: "Forbidden",
        status: 403,
        detail: "principal is not authorized for action content.write"
      })
    }
  })

  it("checks credentials before the body: 401, then 403, then 400", async () => {
    const { plaintext } = await writer()
    const badBody = '{"n": "not a number", "extra": true'
    await expectUnauthorized(await probe.write(undefined, badBody))
    expect((await probe.write(`Bearer ${admin}`, badBody)).status).toBe(403)
    const invalid = await probe.write(`Bearer ${plaintext}`, badBody)
    expect(invalid.status).toBe(400)
    expect(((await invalid.json()) as { detail: string }).detail).toMatch(/^invalid JSON request body: /)
  })

  it("stops accepting a token as soon as it is revoked", async () => {
    const { plaintext, tokenId } = await writer()
    expect((await probe.write(`Bearer ${plaintext}`)).status).toBe(200)
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${tokenId}`, { token: admin })).status).toBe(204)
    await expectUnauthorized(await probe.write(`Bearer ${plaintext}`))
  })
})

describe("anonymous routes", () => {
  it("ignore a bogus bearer token entirely", async () => {
    for (const header of ["Bearer imgsrv_at_bogus", "Basic x", "Bearer a b"]) {
      expect((await app.request("GET", "/healthz", { headers: { authorization: header } })).status).toBe(204)
      expect((await app.request("GET", "/readyz", { headers: { authorization: header } })).status).toBe(204)
      expect((await probe.anonymous(header)).status).toBe(200)
    }
  })
})

describe("issued tokens", () => {
  it("are imgsrv_at_<id>_<secret> with the returned id, shown once with Cache-Control: no-store", async () => {
    const principal = await json(await app.request("POST", "/v1/auth/principals", {
      token: admin,
      json: { kind: "user", display_name: "someone" }
    }))
    const response = await app.request("POST", `/v1/auth/principals/${principal["id"]}/api-tokens`, {
      token: admin,
      json: { name: "  laptop  ", expires_at: "2099-01-01T00:00:00Z" }
    })
    expect(response.status).toBe(201)
    expect(response.headers.get("cache-control")).toBe("no-store")
    const body = await json(response)
    expect(Object.keys(body).sort()).toEqual(["expires_at", "id", "name", "plaintext", "principal_id"])
    expect(body["name"]).toBe("laptop")
    expect(body["expires_at"]).toBe("2099-01-01T00:00:00Z")
    const plaintext = body["plaintext"] as string
    const parts = plaintext.slice("imgsrv_at_".length).split("_")
    expect(plaintext.startsWith("imgsrv_at_")).toBe(true)
    expect(parts).toHaveLength(2)
    expect(parts[0]).toBe(body["id"])
    expect(parts[1]).not.toBe("")

    const listed = await json(await app.request("GET", `/v1/auth/principals/${principal["id"]}/api-tokens`, { token: admin }))
    expect(listed).toEqual({
      api_tokens: [{ id: body["id"], principal_id: principal["id"], name: "laptop", expires_at: "2099-01-01T00:00:00Z" }]
    })
  })

  it("leave only SHA-256 of the secret in the database, never the plaintext", async () => {
    const { plaintext, tokenId } = await writer()
    const secret = plaintext.slice(plaintext.lastIndexOf("_") + 1)
    const client = new pg.Client({ connectionString: app.databaseUrl })
    await client.connect()
    try {
      const row = await client.query<{ secret_hash: Buffer }>("SELECT secret_hash FROM auth_api_tokens WHERE id = $1", [
        tokenId
      ])
      expect(row.rows[0]!.secret_hash).toEqual(createHash("sha256").update(secret).digest())
      const tables = await client.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
      )
      for (const { table_name } of tables.rows) {
        const dump = await client.query<{ row: string }>(`SELECT t::text AS row FROM ${client.escapeIdentifier(table_name)} t`)
        for (const { row } of dump.rows) {
          expect(row, table_name).not.toContain(secret)
          expect(row, table_name).not.toContain(plaintext)
        }
      }
    } finally {
      await client.end()
    }
  })

  it("need an RFC 3339 expires_at strictly in the future, and an existing principal", async () => {
    const { principalId } = await writer()
    for (const body of [{}, { expires_at: "" }, { expires_at: "2000-01-01T00:00:00Z" }, { expires_at: "tomorrow" },
      { expires_at: new Date(Date.now() - 1000).toISOString() }, { expires_at: "0001-01-01T00:00:00Z" }]) {
      const response = await app.request("POST", `/v1/auth/principals/${principalId}/api-tokens`, { token: admin, json: body })
      expect(response.status, JSON.stringify(body)).toBe(400)
      expect(((await response.json()) as { detail: string }).detail).toMatch(/expires_at/)
    }
    const unknown = await app.request("POST", "/v1/auth/principals/principal_NOPE/api-tokens", {
      token: admin,
      json: { expires_at: "2099-01-01T00:00:00Z" }
    })
    expect(unknown.status).toBe(404)
    const extra = await app.request("POST", `/v1/auth/principals/${principalId}/api-tokens`, {
      token: admin,
      json: { expires_at: "2099-01-01T00:00:00Z", scopes: ["all"] }
    })
    expect(extra.status).toBe(400)
  })

  it("are listed with revoked ones; revoking again keeps the first revoked_at; unknown ids are 404", async () => {
    const { principalId, tokenId, plaintext } = await writer()
    expect((await probe.write(`Bearer ${plaintext}`)).status).toBe(200)
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${tokenId}`, { token: admin })).status).toBe(204)
    const first = await json(await app.request("GET", `/v1/auth/principals/${principalId}/api-tokens`, { token: admin }))
    const token = (first["api_tokens"] as Array<Record<string, unknown>>)[0]!
    expect(token["revoked_at"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/)
    expect(token["last_used_at"]).toMatch(/Z$/)
    expect(token).not.toHaveProperty("plaintext")
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${tokenId}`, { token: admin })).status).toBe(204)
    const second = await json(await app.request("GET", `/v1/auth/principals/${principalId}/api-tokens`, { token: admin }))
    expect((second["api_tokens"] as Array<Record<string, unknown>>)[0]!["revoked_at"]).toBe(token["revoked_at"])
    expect((await app.request("DELETE", "/v1/auth/api-tokens/NOSUCHTOKEN", { token: admin })).status).toBe(404)
  })
})
