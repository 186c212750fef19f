import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { query as queryDatabase } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { sha256Digest } from "../support/uploads.js"
import {
  createTestCertificate,
  hs256WithPublicKey,
  startTestIssuer,
  type TestCertificate,
  type TestIssuer,
  unsignedToken
} from "./oidc-issuer.js"

/**
 * OIDC publishers end to end: a real HTTPS issuer on 127.0.0.1 (discovery + JWKS,
 * keys from jose), provisioning rules saved through the API, JWTs presented on the
 * application's content routes — `POST /v1/images`, `POST /v1/uploads`
 * (spec/auth.md §5; §9 items 40–62, 65–68).
 */

let certificate: TestCertificate
let issuer: TestIssuer
let app: TestApp
let admin: string

beforeAll(async () => {
  certificate = await createTestCertificate()
  issuer = await startTestIssuer(certificate)
  app = await startTestApp({ settings: { "oidc-ca-file": certificate.caFile } })
  admin = app.bootstrapToken()
})
afterAll(async () => {
  await app?.close()
  await issuer?.close()
  await certificate?.remove()
})

type Json = Record<string, unknown>
const json = async (response: Response) => (await response.json()) as Json
const detail = async (response: Response) => ((await response.json()) as { detail: string }).detail

const RULES = "/v1/auth/oidc-provisioning-rules"

const ruleBody = (overrides: Json = {}): Json => ({
  display_name: "scoped publishers",
  issuer_url: issuer.issuer,
  audience: "imgsrv-api",
  forwarded_claims: ["scope"],
  condition: "hasToken(claims.scope, \"imgsrv.write\")",
  ...overrides
})

const createRule = async (overrides: Json = {}) => {
  const response = await app.request("POST", RULES, { token: admin, json: ruleBody(overrides) })
  expect(response.status, JSON.stringify(overrides)).toBe(201)
  return json(response)
}

let imageCounter = 0

/** A content write on a real route: `POST /v1/images` with a fresh name, the JWT as bearer token. */
const write = (jwt: string, scheme = "Bearer") =>
  app.request("POST", "/v1/images", {
    headers: { authorization: `${scheme} ${jwt}` },
    json: { name: `oidc-${++imageCounter}` }
  })

const principals = async () =>
  ((await json(await app.request("GET", "/v1/auth/principals", { token: admin })))["principals"]) as Array<Json>

/** The principals provisioned for `subject` at `iss` (found by their provenance attributes). */
const provisioned = async (subject: string, iss = issuer.issuer) =>
  (await principals()).filter((p) => {
    const attributes = (p["attributes"] ?? {}) as Json
    return attributes["provider"] === iss && attributes["subject"] === subject
  })

/** The one principal provisioned for `subject` (fails when there is none or more than one). */
const principalOf = async (subject: string) => {
  const found = await provisioned(subject)
  expect(found, subject).toHaveLength(1)
  return found[0]!
}

/** Raw SQL against this file's app. */
const query = <R extends Record<string, unknown>>(text: string, values: ReadonlyArray<unknown> = []) =>
  queryDatabase<R>(app, text, values)

const GITHUB_CONDITION = "identity.subject == \"repo:meigma/imgsrv:ref:refs/heads/main\" && " +
  "claims.repository_id == \"123456789\" && " +
  "claims.workflow_ref == \"meigma/imgsrv/.github/workflows/publish.yml@refs/heads/main\""

const githubClaims = {
  sub: "repo:meigma/imgsrv:ref:refs/heads/main",
  aud: ["imgsrv-github"],
  repository_id: "123456789",
  workflow_ref: "meigma/imgsrv/.github/workflows/publish.yml@refs/heads/main"
}

describe("provisioning rules", () => {
  it("are created, listed, read, replaced, deleted (CRUD) with content-writer forced and the guard hidden", async () => {
    const created = await createRule({ id: "rule-1" })
    expect(created).toEqual({
      id: "rule-1",
      display_name: "scoped publishers",
      issuer_url: issuer.issuer,
      audience: "imgsrv-api",
      forwarded_claims: ["scope", "aud"],
      condition: "hasToken(claims.scope, \"imgsrv.write\")",
      assign_role_ids: ["content-writer"],
      enabled: true
    })
    const stored = await query<{ condition: string }>(
      "SELECT condition FROM auth_provisioning_rules WHERE id = 'rule-1'"
    )
    expect(stored[0]!.condition).toBe(
      "hasAny(claims.aud, [\"imgsrv-api\"]) && (hasToken(claims.scope, \"imgsrv.write\"))"
    )

    expect((await json(await app.request("GET", RULES, { token: admin })))["rules"]).toEqual([created])
    expect(await json(await app.request("GET", `${RULES}/rule-1`, { token: admin }))).toEqual(created)

    const replaced = await app.request("PUT", `${RULES}/rule-1`, {
      token: admin,
      json: ruleBody({ id: "ignored", display_name: "renamed", enabled: false })
    })
    expect(replaced.status).toBe(200)
    expect(await json(replaced)).toMatchObject({ id: "rule-1", display_name: "renamed", enabled: false })
    // PUT is a full replacement: an omitted enabled means true again.
    expect(await json(await app.request("PUT", `${RULES}/rule-1`, { token: admin, json: ruleBody() })))
      .toMatchObject({ enabled: true, display_name: "scoped publishers" })

    expect((await app.request("POST", RULES, { token: admin, json: ruleBody({ id: "rule-1" }) })).status).toBe(409)
    expect((await app.request("DELETE", `${RULES}/rule-1`, { token: admin })).status).toBe(204)
    expect((await app.request("GET", `${RULES}/rule-1`, { token: admin })).status).toBe(404)
    expect((await app.request("DELETE", `${RULES}/rule-1`, { token: admin })).status).toBe(404)
    // Existence is checked before anything else, even an invalid body.
    expect(
      (await app.request("PUT", `${RULES}/rule-1`, { token: admin, json: ruleBody({ issuer_url: "http://x" }) })).status
    )
      .toBe(404)
  })

  it("get a generated UUID when no id is given, and share the issuer's forwarded claims", async () => {
    const generated = await createRule({ audience: "aud-generated", forwarded_claims: ["aud"] })
    expect(generated["id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(generated["forwarded_claims"]).toContain("aud")
    expect((generated["forwarded_claims"] as Array<string>).filter((c) => c === "aud")).toHaveLength(1)
    const sibling = await createRule({ audience: "aud-sibling", forwarded_claims: [" repository_id ", ""] })
    expect(sibling["forwarded_claims"]).toEqual(expect.arrayContaining(["repository_id", "aud", "scope"]))
    await app.request("DELETE", `${RULES}/${generated["id"]}`, { token: admin })
    await app.request("DELETE", `${RULES}/${sibling["id"]}`, { token: admin })
  })

  it("refuse bad conditions, audiences, ids and issuer URLs with 400 — an http issuer without any request", async () => {
    const before = issuer.hits.get("/.well-known/openid-configuration") ?? 0
    const cases: ReadonlyArray<readonly [Json, RegExp]> = [
      [{ condition: "claims.repository_id" }, /condition must produce bool/],
      [{ condition: "  " }, /condition is required/],
      [{ condition: `claims.a == "${"x".repeat(4100)}"` }, /condition exceeds 4096 bytes/],
      [{ condition: "claims.a ==" }, /condition is invalid/],
      [{ condition: "true) || (true" }, /condition is invalid/],
      [{ audience: " " }, /audience is required/],
      [{ display_name: "" }, /display_name is required/],
      [{ issuer_url: "" }, /issuer_url is required/],
      [{ issuer_url: issuer.issuer.replace("https:", "http:") }, /absolute HTTPS URL/],
      [{ issuer_url: "/relative/issuer" }, /absolute HTTPS URL/],
      [{ issuer_url: "https://user:pw@127.0.0.1/" }, /credentials/],
      [{ id: "has/slash" }, /^id must be/],
      [{ assign_role_ids: ["auth-manager"] }, /invalid JSON request body/]
    ]
    for (const [overrides, expected] of cases) {
      const response = await app.request("POST", RULES, { token: admin, json: ruleBody(overrides) })
      expect(response.status, JSON.stringify(overrides).slice(0, 80)).toBe(400)
      expect(await detail(response)).toMatch(expected)
    }
    expect(issuer.hits.get("/.well-known/openid-configuration") ?? 0).toBe(before)
  })

  it("need a discovery document naming exactly this issuer, an https JWKS and an asymmetric algorithm", async () => {
    const refused: ReadonlyArray<readonly [Json, RegExp]> = [
      [{ issuer: `${issuer.issuer}/` }, /not exactly issuer_url/],
      [{ jwks_uri: `${issuer.issuer.replace("https:", "http:")}/jwks` }, /jwks_uri/],
      [{ id_token_signing_alg_values_supported: ["HS256", "none"] }, /no supported asymmetric/]
    ]
    for (const [overrides, expected] of refused) {
      issuer.discoveryOverrides = overrides
      const response = await app.request("POST", RULES, { token: admin, json: ruleBody({ id: "discovery-check" }) })
      expect(response.status).toBe(400)
      expect(await detail(response)).toMatch(expected)
    }
    issuer.discoveryOverrides = {}
    expect((await app.request("GET", `${RULES}/discovery-check`, { token: admin })).status).toBe(404)
  })

  it("answer 502 naming the issuer when discovery fails upstream, and leave no trust behind", async () => {
    const other = await startTestIssuer(certificate)
    try {
      other.discoveryMode = 503
      const response = await app.request("POST", RULES, { token: admin, json: ruleBody({ issuer_url: other.issuer }) })
      expect(response.status).toBe(502)
      expect(await detail(response)).toBe(`OIDC discovery for ${other.issuer} failed: unexpected status 503`)
      expect(await query("SELECT issuer FROM auth_oidc_providers WHERE issuer = $1", [other.issuer])).toEqual([])
    } finally {
      await other.close()
    }
  })
})

describe("OIDC bearer tokens", () => {
  beforeAll(async () => {
    await createRule({ id: "scoped" })
  })

  it("a scoped token provisions a principal holding content-writer, linked by claim fingerprint", async () => {
    expect(await provisioned("subject-1")).toEqual([])
    const response = await write(await issuer.sign())
    expect(response.status).toBe(201)
    const principal = await principalOf("subject-1")
    const principal_id = principal["id"] as string
    expect(principal).toEqual({
      id: expect.stringMatching(/^principal_[A-Z2-7]{26}$/),
      kind: "user",
      display_name: "oidc:subject-1",
      attributes: { provider: issuer.issuer, subject: "subject-1", provisioning_rule_id: "scoped" },
      role_ids: ["content-writer"]
    })
    const links = await query<{ subject: string }>(
      "SELECT subject FROM auth_external_identities WHERE principal_id = $1",
      [
        principal_id
      ]
    )
    expect(links).toHaveLength(1)
    expect(links[0]!.subject).toMatch(/^subject-1#claims:[0-9a-f]{64}$/)
    // The same identity again resolves through the link to the same principal, on any write.
    expect((await write(await issuer.sign())).status).toBe(201)
    const bytes = crypto.getRandomValues(new Uint8Array(16))
    const upload = await app.request("POST", "/v1/uploads", {
      headers: { authorization: `Bearer ${await issuer.sign()}` },
      json: { expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.byteLength }
    })
    expect(upload.status).toBe(201)
    expect(await provisioned("subject-1")).toEqual([principal])
  })

  it("changed claims that still match the rule reuse the principal (and link the new fingerprint)", async () => {
    expect((await write(await issuer.sign({ sub: "subject-reuse" }))).status).toBe(201)
    const first = await principalOf("subject-reuse")
    const before = (await principals()).length
    expect((await write(await issuer.sign({ sub: "subject-reuse", scope: "imgsrv.write extra" }))).status).toBe(201)
    expect(await principalOf("subject-reuse")).toEqual(first)
    expect((await principals()).length).toBe(before)
    expect(await query("SELECT subject FROM auth_external_identities WHERE principal_id = $1", [first["id"]]))
      .toHaveLength(2)
  })

  it("concurrent first logins of one identity provision exactly one principal", async () => {
    const jwt = await issuer.sign({ sub: "subject-parallel" })
    const responses = await Promise.all(Array.from({ length: 6 }, () => write(jwt)))
    expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 6 }, () => 201))
    await principalOf("subject-parallel")
    expect((await principals()).filter((p) => p["display_name"] === "oidc:subject-parallel")).toHaveLength(1)
  })

  it("an authenticated identity that matches no rule is transient: 403, nothing stored", async () => {
    const response = await write(await issuer.sign({ sub: "subject-unscoped", scope: "openid profile" }))
    expect(response.status).toBe(403)
    expect(response.headers.get("www-authenticate")).toBeNull()
    expect(await detail(response)).toBe("principal is not authorized for action content.write")
    expect((await principals()).some((p) => String(p["display_name"]).includes("subject-unscoped"))).toBe(false)
    expect(await query("SELECT 1 FROM auth_external_identities WHERE subject LIKE 'subject-unscoped%'")).toEqual([])
  })

  it("accepts aud as a plain string", async () => {
    expect((await write(await issuer.sign({ sub: "subject-aud-string", aud: "imgsrv-api" }))).status).toBe(201)
  })

  it.each([
    ["wrong iss (an issuer nobody trusts)", { iss: "https://127.0.0.1:1" }],
    ["wrong aud", { aud: ["someone-else"] }],
    ["expired", { exp: Math.floor(Date.now() / 1000) - 120 }],
    ["nbf in the future", { nbf: Math.floor(Date.now() / 1000) + 120 }],
    ["iat in the future", { iat: Math.floor(Date.now() / 1000) + 120 }],
    ["empty sub", { sub: "" }]
  ])("refuses a token with %s: 401", async (_name, claims) => {
    const response = await write(await issuer.sign(claims))
    expect(response.status).toBe(401)
    expect(response.headers.get("www-authenticate")).toBe("Bearer")
    expect(await detail(response)).toBe("invalid bearer token")
  })

  it("refuses tokens without sub, exp or aud, and things that are not JWTs: 401", async () => {
    for (const omit of ["sub", "exp", "aud"]) {
      expect((await write(await issuer.sign({}, { omit: [omit] }))).status, omit).toBe(401)
    }
    for (
      const garbage of ["a.b.c", "not-a-jwt", "eyJhbGciOiJSUzI1NiJ9..", `${(await issuer.sign()).slice(0, -4)}AAAA`]
    ) {
      expect((await write(garbage)).status, garbage).toBe(401)
    }
    // The OIDC authenticator wants exactly "Bearer <jwt>".
    expect((await write(await issuer.sign(), "bearer")).status).toBe(401)
  })

  it("refuses alg none, HS256 signed with the public key, a foreign key and a non-advertised algorithm: 401", async () => {
    const claims = { ...(await import("./oidc-issuer.js")).defaultClaims(issuer.issuer) }
    const key = issuer.keys[0]!
    expect((await write(unsignedToken(claims))).status).toBe(401)
    expect((await write(hs256WithPublicKey(claims, key.publicJwk, key.kid))).status).toBe(401)
    expect((await write(hs256WithPublicKey(claims, key.publicJwk))).status).toBe(401)
    const foreign = await issuer.newKey()
    expect((await write(await issuer.sign({}, { key: foreign, kid: key.kid }))).status).toBe(401)
    const pss = await issuer.newKey("PS256")
    issuer.keys.push(pss)
    expect((await write(await issuer.sign({ sub: "subject-ps256" }, { key: pss }))).status).toBe(401)
    issuer.keys.pop()
  })

  it("the GitHub Actions shape: the exact repo/workflow matches; other aud, branch, workflow or PR do not (403)", async () => {
    await createRule({
      id: "github",
      display_name: "main publish workflow",
      audience: "imgsrv-github",
      forwarded_claims: ["repository_id", "workflow_ref"],
      condition: GITHUB_CONDITION
    })
    const omit = ["scope"]
    const ok = await write(await issuer.sign(githubClaims, { omit }))
    expect(ok.status).toBe(201)
    expect((await principalOf(githubClaims.sub))["attributes"]).toMatchObject({
      subject: "repo:meigma/imgsrv:ref:refs/heads/main",
      provisioning_rule_id: "github"
    })

    const refused: ReadonlyArray<Json> = [
      { aud: ["imgsrv-api"], sub: "repo:meigma/imgsrv:ref:refs/heads/other-aud" },
      {
        sub: "repo:meigma/imgsrv:ref:refs/heads/dev",
        workflow_ref: "meigma/imgsrv/.github/workflows/dev.yml@refs/heads/dev"
      },
      { sub: "repo:meigma/imgsrv:pull_request" },
      {
        workflow_ref: "meigma/imgsrv/.github/workflows/evil.yml@refs/heads/main",
        sub: "repo:meigma/imgsrv:ref:refs/heads/x"
      }
    ]
    for (const claims of refused) {
      const response = await write(await issuer.sign({ ...githubClaims, ...claims }, { omit }))
      expect(response.status, JSON.stringify(claims)).toBe(403)
    }
    const subjects = (await principals()).map((p) => String(p["display_name"]))
    expect(subjects.filter((s) => s.includes("repo:meigma/imgsrv"))).toEqual([
      "oidc:repo:meigma/imgsrv:ref:refs/heads/main"
    ])
  })

  it("a disabled or deleted rule stops new identities; linked ones keep working until their role goes", async () => {
    const group = {
      id: "groups",
      display_name: "publishers group",
      audience: "imgsrv-groups",
      forwarded_claims: ["scope", "groups"],
      condition: "hasToken(claims.scope, \"imgsrv.write\") && hasAny(claims.groups, [\"publishers\"])"
    }
    await createRule(group)
    const member = (sub: string) => issuer.sign({ sub, aud: ["imgsrv-groups"], groups: ["publishers"] })
    expect((await write(await member("member-1"))).status).toBe(201)
    const principal_id = (await principalOf("member-1"))["id"] as string
    expect((await write(await issuer.sign({ sub: "outsider", aud: ["imgsrv-groups"], groups: ["others"] }))).status)
      .toBe(403)

    expect(
      (await app.request("PUT", `${RULES}/groups`, { token: admin, json: ruleBody({ ...group, enabled: false }) }))
        .status
    )
      .toBe(200)
    expect((await write(await member("member-2"))).status).toBe(403)
    expect((await write(await member("member-1"))).status).toBe(201)

    expect((await app.request("PUT", `${RULES}/groups`, { token: admin, json: ruleBody(group) })).status).toBe(200)
    expect((await app.request("DELETE", `${RULES}/groups`, { token: admin })).status).toBe(204)
    expect((await write(await member("member-3"))).status).toBe(403)
    expect((await write(await member("member-1"))).status).toBe(201)

    expect(
      (await app.request("DELETE", `/v1/auth/principals/${principal_id}/roles/content-writer`, { token: admin })).status
    )
      .toBe(204)
    expect((await write(await member("member-1"))).status).toBe(403)
  })

  it("never lets an OIDC identity manage auth", async () => {
    const response = await app.request("GET", "/v1/auth/roles", { token: await issuer.sign() })
    expect(response.status).toBe(403)
    expect(await detail(response)).toBe("principal is not authorized for action auth.manage")
  })
})

describe("signing keys", () => {
  it("are refetched once for an unknown kid (rotation), at most every 30 s", async () => {
    const rotating = await startTestIssuer(certificate)
    try {
      await createRule({ id: "rotation", issuer_url: rotating.issuer })
      expect((await write(await rotating.sign({ sub: "rotation-1" }))).status).toBe(201)
      expect(rotating.hits.get("/jwks")).toBe(1)
      expect((await write(await rotating.sign({ sub: "rotation-1" }))).status).toBe(201)
      expect(rotating.hits.get("/jwks")).toBe(1)

      const next = await rotating.newKey()
      rotating.keys.push(next)
      expect((await write(await rotating.sign({ sub: "rotation-1" }, { key: next }))).status).toBe(201)
      expect(rotating.hits.get("/jwks")).toBe(2)

      // A random kid right after: refused without another fetch.
      const stranger = await rotating.newKey()
      expect((await write(await rotating.sign({ sub: "rotation-1" }, { key: stranger }))).status).toBe(401)
      expect(rotating.hits.get("/jwks")).toBe(2)
    } finally {
      await rotating.close()
    }
  })

  it("never include encryption keys or keys whose key_ops exclude verify", async () => {
    const mixed = await startTestIssuer(certificate)
    try {
      const enc = await mixed.newKey()
      const noVerify = await mixed.newKey()
      mixed.extraJwks = [
        { ...enc.publicJwk, use: "enc" },
        {
          kty: noVerify.publicJwk.kty,
          n: noVerify.publicJwk.n,
          e: noVerify.publicJwk.e,
          alg: "RS256",
          kid: noVerify.kid,
          key_ops: ["encrypt"]
        }
      ]
      await createRule({ id: "mixed-keys", issuer_url: mixed.issuer })
      expect((await write(await mixed.sign({ sub: "mixed-1" }))).status).toBe(201)
      expect((await write(await mixed.sign({ sub: "mixed-1" }, { key: enc }))).status).toBe(401)
      expect((await write(await mixed.sign({ sub: "mixed-1" }, { key: noVerify }))).status).toBe(401)
      // The same keys published as signing keys do verify.
      const fresh = await startTestIssuer(certificate)
      try {
        fresh.extraJwks = [enc.publicJwk, noVerify.publicJwk]
        await createRule({ id: "signing-keys", issuer_url: fresh.issuer })
        expect((await write(await fresh.sign({ sub: "mixed-2", iss: fresh.issuer }, { key: enc }))).status).toBe(201)
      } finally {
        await fresh.close()
      }
    } finally {
      await mixed.close()
    }
  })

  it("an unreachable JWKS is 503 (not 401), and is retried by the next request", async () => {
    const flaky = await startTestIssuer(certificate)
    try {
      await createRule({ id: "flaky", issuer_url: flaky.issuer })
      flaky.jwksMode = 500
      const response = await write(await flaky.sign({ sub: "flaky-1" }))
      expect(response.status).toBe(503)
      expect(await detail(response)).toBe("identity provider keys are unavailable; try again later")
      flaky.jwksMode = "ok"
      expect((await write(await flaky.sign({ sub: "flaky-1" }))).status).toBe(201)
    } finally {
      await flaky.close()
    }
  })

  it("an issuer no rule trusts is refused without any request to it", async () => {
    const stranger = await startTestIssuer(certificate)
    try {
      expect((await write(await stranger.sign())).status).toBe(401)
      expect(stranger.hits.size).toBe(0)
    } finally {
      await stranger.close()
    }
  })
})

describe("reconciliation", () => {
  it("previews and removes content-writer from the rule's principals only; other roles and rules untouched", async () => {
    await createRule({ id: "recon-a", audience: "recon-a", condition: "true" })
    await createRule({ id: "recon-b", audience: "recon-b", condition: "true" })
    const login = async (sub: string, aud: string) => {
      expect((await write(await issuer.sign({ sub, aud: [aud] }))).status).toBe(201)
      return (await principalOf(sub))["id"] as string
    }
    const a1 = await login("recon-a-1", "recon-a")
    const a2 = await login("recon-a-2", "recon-a")
    const b1 = await login("recon-b-1", "recon-b")
    await app.request("PUT", `/v1/auth/principals/${a1}/roles/auth-manager`, { token: admin })

    const preview = await json(await app.request("GET", `${RULES}/recon-a/reconciliation`, { token: admin }))
    expect(preview["rule_id"]).toBe("recon-a")
    expect(preview["applied"]).toBe(false)
    expect(preview["unassign_role_ids"]).toEqual(["content-writer"])
    expect((preview["principals"] as Array<Json>).map((p) => p["id"]).sort()).toEqual([a1, a2].sort())
    expect((await principals()).find((p) => p["id"] === a2)!["role_ids"]).toEqual(["content-writer"])

    // Designed for after a rule is gone: deleting it first changes nothing.
    expect((await app.request("DELETE", `${RULES}/recon-a`, { token: admin })).status).toBe(204)
    const applied = await json(
      await app.request("POST", `${RULES}/recon-a/reconciliation`, {
        token: admin,
        body: "ignored body"
      })
    )
    expect(applied["applied"]).toBe(true)
    const after = Object.fromEntries((applied["principals"] as Array<Json>).map((p) => [p["id"], p["role_ids"]]))
    expect(after).toEqual({ [a1]: ["auth-manager"], [a2]: [] })
    const everyone = await principals()
    expect(everyone.find((p) => p["id"] === b1)!["role_ids"]).toEqual(["content-writer"])
    expect(everyone.find((p) => p["id"] === a1)!["role_ids"]).toEqual(["auth-manager"])
    expect((await write(await issuer.sign({ sub: "recon-a-2", aud: ["recon-a"] }))).status).toBe(403)

    const again = await json(await app.request("POST", `${RULES}/recon-a/reconciliation`, { token: admin }))
    expect(again["principals"]).toEqual([])
  })

  it("is 404 for a rule id no rule or principal ever carried, and 400 for a malformed one", async () => {
    // A rule that exists but provisioned nobody yet: an empty result, not a 404.
    await createRule({ id: "recon-empty", audience: "recon-empty", condition: "true" })
    expect(await json(await app.request("GET", `${RULES}/recon-empty/reconciliation`, { token: admin }))).toEqual({
      rule_id: "recon-empty",
      unassign_role_ids: ["content-writer"],
      principals: [],
      applied: false
    })
    for (const method of ["GET", "POST"]) {
      const unknown = await app.request(method, `${RULES}/no-such-rule/reconciliation`, { token: admin })
      expect(unknown.status, method).toBe(404)
      expect(await detail(unknown)).toBe("OIDC provisioning rule \"no-such-rule\" not found")
      for (const malformed of ["%20", "..%2F..", "a%20b", `r${"x".repeat(128)}`]) {
        const response = await app.request(method, `${RULES}/${malformed}/reconciliation`, { token: admin })
        expect(response.status, `${method} ${malformed}`).toBe(400)
        expect(response.headers.get("content-type")).toBe("application/problem+json")
        await response.arrayBuffer()
      }
      // `..` as the probe sent it: curl keeps the dot segment in the path (fetch would remove it).
      const { stdout } = await promisify(execFile)("curl", [
        "-sS",
        "--path-as-is",
        "-X",
        method,
        "-H",
        `Authorization: Bearer ${admin}`,
        "-w",
        "\n%{http_code}",
        `${app.baseUrl}${RULES}/../reconciliation`
      ])
      const [body, status] = stdout.split("\n")
      expect(status, `${method} ..`).toBe("400")
      expect((JSON.parse(body!) as { detail: string }).detail).toMatch(/^rule id must be 1–128 characters/)
    }
  })
})
