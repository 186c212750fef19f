import { createHash, randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mintToken } from "../../src/auth/tokens.js"
import { publishVersion } from "../catalog/fixtures.js"
import { describeBlob } from "../support/blobs.js"
import { query as queryDatabase } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { sha256Digest, uploadBlob } from "../support/uploads.js"
import { ANONYMOUS_ROUTES, AUTH_MANAGE_ROUTES, CONTENT_WRITE_ROUTES, routeKey } from "./routes.js"

/**
 * Bearer credentials on the application's real routes: what a protected route
 * (`POST /v1/uploads`, `POST /v1/images`, and every other route of the endpoint
 * matrix) answers for every kind of bad header or token, in which order 401/403/400
 * come, and that anonymous routes ignore the header altogether
 * (spec/auth.md §2.3–2.6, §3; §9 items 1–7, 9, 11–15, 17, 19, 20, 22, 29, 37).
 */

let app: TestApp
let admin: string

beforeAll(async () => {
  app = await startTestApp()
  admin = app.bootstrapToken()
})
afterAll(async () => {
  await app?.close()
})

type Json = Record<string, unknown>
const json = async (response: Response) => (await response.json()) as Json

/** Raw SQL against this file's app. */
const query = <R extends Record<string, unknown>>(text: string, values: ReadonlyArray<unknown> = []) =>
  queryDatabase<R>(app, text, values)

/** A content-writer principal made through the management API, and its token. */
const writer = async () => {
  const principal = await json(
    await app.request("POST", "/v1/auth/principals", {
      token: admin,
      json: { kind: "service", display_name: "publisher" }
    })
  )
  expect(
    (await app.request("PUT", `/v1/auth/principals/${principal["id"]}/roles/content-writer`, { token: admin })).status
  )
    .toBe(204)
  const issued = await app.request("POST", `/v1/auth/principals/${principal["id"]}/api-tokens`, {
    token: admin,
    json: { name: "ci", expires_at: "2099-01-01T00:00:00Z" }
  })
  expect(issued.status).toBe(201)
  const body = await json(issued)
  return {
    principalId: principal["id"] as string,
    tokenId: body["id"] as string,
    plaintext: body["plaintext"] as string
  }
}

/** A begin-upload body for bytes nobody uploaded yet (so a permitted call is always a 201). */
const freshUpload = () => {
  const bytes = randomBytes(32)
  return { expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.byteLength }
}

let imageCounter = 0
const freshImage = () => ({ name: `bearer-${Date.now().toString(36)}-${++imageCounter}` })

/** The two writes the tests lean on, with a raw Authorization header (or none). */
const WRITES = {
  "POST /v1/uploads": (authorization?: string, body: string = JSON.stringify(freshUpload())) =>
    app.request("POST", "/v1/uploads", { body, headers: authorization === undefined ? {} : { authorization } }),
  "POST /v1/images": (authorization?: string, body: string = JSON.stringify(freshImage())) =>
    app.request("POST", "/v1/images", { body, headers: authorization === undefined ? {} : { authorization } })
} as const

/** Sends `authorization` to both writes. */
const bothWrites = async (authorization: string | undefined) =>
  Promise.all(Object.entries(WRITES).map(async ([route, write]) => [route, await write(authorization)] as const))

const writeCounts = async () =>
  (await query<{ uploads: number; images: number }>(
    "SELECT (SELECT count(*)::int FROM upload_sessions) AS uploads, (SELECT count(*)::int FROM images) AS images"
  ))[0]!

const expectUnauthorized = async (response: Response, what: string) => {
  expect(response.status, what).toBe(401)
  expect(response.headers.get("www-authenticate"), what).toBe("Bearer")
  expect(response.headers.get("content-type"), what).toContain("application/problem+json")
  expect(await response.json(), what).toEqual({
    type: "about:blank",
    title: "Unauthorized",
    status: 401,
    detail: "invalid bearer token"
  })
}

const expectForbidden = async (response: Response, what: string, action = "content.write") => {
  expect(response.status, what).toBe(403)
  expect(response.headers.get("www-authenticate"), what).toBeNull()
  expect(await response.json(), what).toEqual({
    type: "about:blank",
    title: "Forbidden",
    status: 403,
    detail: `principal is not authorized for action ${action}`
  })
}

describe("POST /v1/uploads and POST /v1/images", () => {
  it("answer 401 with WWW-Authenticate: Bearer for a missing, foreign or malformed header, and create nothing", async () => {
    const { plaintext } = await writer()
    const before = await writeCounts()
    const headers = [
      undefined,
      "",
      "Basic x",
      "Basic dXNlcjpwYXNz",
      "Bearer",
      "Bearer ",
      "Bearer a b",
      `Bearer ${plaintext} extra`,
      `Bearer  ${plaintext} ${plaintext}`,
      plaintext,
      `Token ${plaintext}`,
      `Basic ${plaintext}`
    ]
    for (const header of headers) {
      for (const [route, response] of await bothWrites(header)) {
        await expectUnauthorized(response, `${route} with ${JSON.stringify(header)}`)
      }
    }
    expect(await writeCounts()).toEqual(before)
  })

  it("answer the same 401 for unknown, tampered, wrong-prefix and truncated tokens", async () => {
    const { plaintext, tokenId } = await writer()
    const secret = plaintext.slice(plaintext.lastIndexOf("_") + 1)
    const other = mintToken()
    const tampered = `${plaintext.slice(0, -1)}${plaintext.endsWith("A") ? "B" : "A"}`
    const tokens = [
      other.plaintext, // well-formed, no such id
      `imgsrv_at_${tokenId}_${other.secret}`, // right id, wrong secret
      tampered,
      `ak_${tokenId}_${secret}`, // the reference's prefix
      `IMGSRV_AT_${tokenId}_${secret}`,
      `imgsrv_at_${tokenId}`,
      `imgsrv_at_${tokenId}_`,
      `imgsrv_at__${secret}`,
      `imgsrv_at_${tokenId}_${secret}_x`,
      "garbage"
    ]
    for (const token of tokens) {
      for (const [route, response] of await bothWrites(`Bearer ${token}`)) {
        await expectUnauthorized(response, `${route} with ${token}`)
      }
    }
    // The genuine token still works: the refusals above were about the credential alone.
    for (const [route, response] of await bothWrites(`Bearer ${plaintext}`)) expect(response.status, route).toBe(201)
  })

  it("refuse a token from the instant it expires", async () => {
    const { plaintext, tokenId } = await writer()
    for (const [route, response] of await bothWrites(`Bearer ${plaintext}`)) expect(response.status, route).toBe(201)
    // The API only issues future expiries; move this one to "now" as time passing would.
    await query("UPDATE auth_api_tokens SET expires_at = now() WHERE id = $1", [tokenId])
    for (const [route, response] of await bothWrites(`Bearer ${plaintext}`)) {
      await expectUnauthorized(response, `${route} with an expired token`)
    }
  })

  it("accept the bearer scheme in any case, and record when the token was used", async () => {
    const { plaintext, principalId } = await writer()
    const before = Date.now()
    for (const scheme of ["Bearer", "bearer", "bEaReR", "BEARER"]) {
      for (const [route, response] of await bothWrites(`${scheme} ${plaintext}`)) {
        expect(response.status, `${route} with ${scheme}`).toBe(201)
      }
    }
    const tokens = await json(
      await app.request("GET", `/v1/auth/principals/${principalId}/api-tokens`, { token: admin })
    )
    const lastUsed = Date.parse((tokens["api_tokens"] as Array<Json>)[0]!["last_used_at"] as string)
    expect(lastUsed).toBeGreaterThanOrEqual(before - 1000)
    expect(lastUsed).toBeLessThanOrEqual(Date.now() + 1000)
  })

  it("answer 403 without a challenge to principals lacking content.write — the bootstrap auth-manager too", async () => {
    const before = await writeCounts()
    const tokens = {
      "the bootstrap token": admin,
      "an auth-manager": await app.tokenFor("auth-manager"),
      "a principal without roles": await app.tokenFor()
    }
    for (const [who, token] of Object.entries(tokens)) {
      for (const [route, response] of await bothWrites(`Bearer ${token}`)) {
        await expectForbidden(response, `${route} by ${who}`)
      }
    }
    expect(await writeCounts()).toEqual(before)
  })

  it("check credentials before the body: 401, then 403, then 400", async () => {
    const { plaintext } = await writer()
    const badBodies = {
      "POST /v1/uploads": "{\"expected_digest\": \"md5:nope\", \"extra\": true",
      "POST /v1/images": "{\"name\": \"Not Lowercase\"}"
    } as const
    for (const [route, body] of Object.entries(badBodies)) {
      const write = WRITES[route as keyof typeof WRITES]
      await expectUnauthorized(await write(undefined, body), route)
      await expectForbidden(await write(`Bearer ${admin}`, body), route)
      const invalid = await write(`Bearer ${plaintext}`, body)
      expect(invalid.status, route).toBe(400)
      expect(((await invalid.json()) as { detail: string }).detail, route).not.toBe("invalid bearer token")
    }
  })

  it("stop accepting a token as soon as it is revoked", async () => {
    const { plaintext, tokenId } = await writer()
    for (const [route, response] of await bothWrites(`Bearer ${plaintext}`)) expect(response.status, route).toBe(201)
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${tokenId}`, { token: admin })).status).toBe(204)
    for (const [route, response] of await bothWrites(`Bearer ${plaintext}`)) {
      await expectUnauthorized(response, `${route} with a revoked token`)
    }
  })
})

describe("the endpoint matrix", () => {
  it("classifies every route of the OpenAPI document: content.write, auth.manage or anonymous", async () => {
    const document = (await json(await app.request("GET", "/openapi.json"))) as {
      paths: Record<string, Record<string, { security?: ReadonlyArray<unknown> }>>
    }
    const secured: Array<string> = []
    const open: Array<string> = []
    for (const [template, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const key = `${method.toUpperCase()} ${template}`
        if ((operation.security ?? []).length > 0) secured.push(key)
        else open.push(key)
      }
    }
    expect(secured.sort()).toEqual([...CONTENT_WRITE_ROUTES, ...AUTH_MANAGE_ROUTES].map(routeKey).sort())
    expect(open.sort()).toEqual([...ANONYMOUS_ROUTES].sort())
  })

  it("every content.write route: 401 anonymous, 403 for an auth-manager, and only then validation (400)", async () => {
    const { plaintext } = await writer()
    for (const route of CONTENT_WRITE_ROUTES) {
      const send = (headers: Record<string, string>) =>
        app.request(route.method, route.invalidPath, {
          headers,
          ...(route.invalidBody === undefined ? {} : { body: route.invalidBody })
        })
      const what = routeKey(route)
      await expectUnauthorized(await send({}), what)
      await expectUnauthorized(await send({ authorization: "Bearer imgsrv_at_bogus_token" }), what)
      await expectForbidden(await send({ authorization: `Bearer ${admin}` }), what)
      const invalid = await send({ authorization: `Bearer ${plaintext}` })
      expect(invalid.status, `${what}: ${await invalid.clone().text()}`).toBe(400)
    }
  })

  it("every auth.manage route: 401 anonymous, 403 for a content-writer; the auth-manager gets past both", async () => {
    const { plaintext } = await writer()
    for (const route of AUTH_MANAGE_ROUTES) {
      const send = (headers: Record<string, string>) =>
        app.request(route.method, route.invalidPath, {
          headers,
          ...(route.invalidBody === undefined ? {} : { body: route.invalidBody })
        })
      const what = routeKey(route)
      await expectUnauthorized(await send({}), what)
      await expectForbidden(await send({ authorization: `Bearer ${plaintext}` }), what, "auth.manage")
      const managed = await send({ authorization: `Bearer ${admin}` })
      expect([401, 403], what).not.toContain(managed.status)
    }
  })
})

describe("anonymous routes", () => {
  it("ignore any Authorization header — bogus, malformed, revoked or forbidden — on every route", async () => {
    const publisher = await writer()
    const disk = randomBytes(4096)
    const meta = randomBytes(512)
    // Real uploads through HTTP: what the tutorial's anonymous readers get to see.
    const diskBlob = await uploadBlob(app, publisher.plaintext, disk)
    await uploadBlob(app, publisher.plaintext, meta)
    const { artifacts } = await publishVersion(app, publisher.plaintext, {
      name: "anonymous-reads",
      version: "1.0",
      artifacts: [{
        blob: describeBlob(disk),
        attachments: [{ name: "incus.tar.xz", blob: describeBlob(meta) }]
      }]
    })
    expect(
      (await app.request("PUT", "/v1/images/anonymous-reads/aliases/latest", {
        token: publisher.plaintext,
        json: { version: "1.0" }
      })).status
    ).toBe(200)
    const artifact = artifacts[0]!
    const version = "/v1/images/anonymous-reads/versions/1.0"
    const concrete: Record<string, string> = {
      "GET /healthz": "/healthz",
      "GET /readyz": "/readyz",
      "GET /streams/v1/index.json": "/streams/v1/index.json",
      "GET /streams/v1/images.json": "/streams/v1/images.json",
      "GET /v1/uploads/{upload_id}": `/v1/uploads/${diskBlob.uploadId}`,
      "GET /v1/blobs/{digest}": `/v1/blobs/${diskBlob.digest}`,
      "GET /v1/images": "/v1/images",
      "GET /v1/images/{name}": "/v1/images/anonymous-reads",
      "GET /v1/images/{name}/versions": "/v1/images/anonymous-reads/versions",
      "GET /v1/images/{name}/versions/{version}": version,
      "GET /v1/images/{name}/refs/{ref}": "/v1/images/anonymous-reads/refs/latest",
      "GET /v1/images/{name}/versions/{version}/artifacts": `${version}/artifacts`,
      "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}": `${version}/artifacts/${artifact.id}`,
      "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download":
        `${version}/artifacts/${artifact.id}/download`,
      "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}/download":
        `${version}/artifacts/${artifact.id}/attachments/${artifact.attachments[0]}/download`,
      "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download/{file_name}":
        `${version}/artifacts/${artifact.id}/download/disk.qcow2`,
      "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}/download/{file_name}":
        `${version}/artifacts/${artifact.id}/attachments/${artifact.attachments[0]}/download/incus.tar.xz`,
      "GET /v1/images/{name}/aliases": "/v1/images/anonymous-reads/aliases",
      "GET /v1/images/{name}/aliases/{alias}": "/v1/images/anonymous-reads/aliases/latest"
    }
    expect(Object.keys(concrete).sort()).toEqual([...ANONYMOUS_ROUTES].sort())

    // The publisher's token revoked: a real, formerly valid credential that now fails.
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${publisher.tokenId}`, { token: admin })).status).toBe(204)
    const headers = [
      "Bearer imgsrv_at_bogus",
      `Bearer ${mintToken().plaintext}`,
      `Bearer ${publisher.plaintext}`,
      `Bearer ${await app.tokenFor()}`,
      "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
      "Basic x",
      "Bearer",
      "Bearer a b"
    ]
    const digestOf = (bytes: ArrayBuffer) => createHash("sha256").update(new Uint8Array(bytes)).digest("hex")
    for (const [route, path] of Object.entries(concrete)) {
      const plain = await app.request("GET", path)
      const expected = { status: plain.status, body: digestOf(await plain.arrayBuffer()) }
      expect(expected.status, route).toBeLessThan(300)
      for (const authorization of headers) {
        const response = await app.request("GET", path, { headers: { authorization } })
        expect(
          { status: response.status, body: digestOf(await response.arrayBuffer()) },
          `${route} with ${authorization}`
        )
          .toEqual(expected)
        expect(response.headers.get("www-authenticate")).toBeNull()
      }
      if (route.endsWith("/download") || route === "GET /v1/blobs/{digest}") {
        const head = await app.request("HEAD", path, { headers: { authorization: headers[0]! } })
        expect(head.status, `HEAD ${route}`).toBe(200)
      }
    }
  })
})

describe("issued tokens", () => {
  it("are imgsrv_at_<id>_<secret> with the returned id, shown once with Cache-Control: no-store", async () => {
    const principal = await json(
      await app.request("POST", "/v1/auth/principals", {
        token: admin,
        json: { kind: "user", display_name: "someone" }
      })
    )
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

    const listed = await json(
      await app.request("GET", `/v1/auth/principals/${principal["id"]}/api-tokens`, { token: admin })
    )
    expect(listed).toEqual({
      api_tokens: [{
        id: body["id"],
        principal_id: principal["id"],
        name: "laptop",
        expires_at: "2099-01-01T00:00:00Z"
      }]
    })
  })

  it("leave only SHA-256 of the secret in the database, never the plaintext", async () => {
    const { plaintext, tokenId } = await writer()
    const secret = plaintext.slice(plaintext.lastIndexOf("_") + 1)
    // Used for real writes first, so every table a write touches is in the dump below.
    for (const [route, response] of await bothWrites(`Bearer ${plaintext}`)) expect(response.status, route).toBe(201)
    const row = await query<{ secret_hash: Buffer }>("SELECT secret_hash FROM auth_api_tokens WHERE id = $1", [tokenId])
    expect(row[0]!.secret_hash).toEqual(createHash("sha256").update(secret).digest())
    const tables = await query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    for (const { table_name } of tables) {
      const dump = await query<{ row: string }>(`SELECT t::text AS row FROM "${table_name.replace(/"/g, "\"\"")}" t`)
      for (const { row } of dump) {
        expect(row, table_name).not.toContain(secret)
        expect(row, table_name).not.toContain(plaintext)
      }
    }
  })

  it("need an RFC 3339 expires_at strictly in the future, and an existing principal", async () => {
    const { principalId } = await writer()
    for (
      const body of [{}, { expires_at: "" }, { expires_at: "2000-01-01T00:00:00Z" }, { expires_at: "tomorrow" }, {
        expires_at: new Date(Date.now() - 1000).toISOString()
      }, { expires_at: "0001-01-01T00:00:00Z" }]
    ) {
      const response = await app.request("POST", `/v1/auth/principals/${principalId}/api-tokens`, {
        token: admin,
        json: body
      })
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
    expect((await WRITES["POST /v1/uploads"](`Bearer ${plaintext}`)).status).toBe(201)
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${tokenId}`, { token: admin })).status).toBe(204)
    const first = await json(
      await app.request("GET", `/v1/auth/principals/${principalId}/api-tokens`, { token: admin })
    )
    const token = (first["api_tokens"] as Array<Json>)[0]!
    expect(token["revoked_at"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/)
    expect(token["last_used_at"]).toMatch(/Z$/)
    expect(token).not.toHaveProperty("plaintext")
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect((await app.request("DELETE", `/v1/auth/api-tokens/${tokenId}`, { token: admin })).status).toBe(204)
    const second = await json(
      await app.request("GET", `/v1/auth/principals/${principalId}/api-tokens`, { token: admin })
    )
    expect((second["api_tokens"] as Array<Json>)[0]!["revoked_at"]).toBe(token["revoked_at"])
    expect((await app.request("DELETE", "/v1/auth/api-tokens/NOSUCHTOKEN", { token: admin })).status).toBe(404)
  })
})
