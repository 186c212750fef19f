import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startTestApp, type TestApp } from "../support/harness.js"
import { sha256Digest } from "../support/uploads.js"

/**
 * The management API under /v1/auth/* against a real app and database
 * (spec/api.md §2.11, spec/auth.md §7; §9 items 26, 28, 29, 31–39; the tutorial's auth steps).
 * Which routes need auth.manage is walked route by route in bearer.test.ts.
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

const createPrincipal = async (body: unknown = { kind: "service", display_name: "publisher" }) => {
  const response = await app.request("POST", "/v1/auth/principals", { token: admin, json: body })
  expect(response.status).toBe(201)
  return json(response)
}

let imageCounter = 0

/** Two content writes on the real routes: begin an upload of fresh bytes, create an image. */
const writeStatuses = async (token: string) => {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  const upload = await app.request("POST", "/v1/uploads", {
    token,
    json: { expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.byteLength }
  })
  const image = await app.request("POST", "/v1/images", { token, json: { name: `management-${++imageCounter}` } })
  return [upload.status, image.status]
}

describe("the tutorial's auth steps", () => {
  it("bootstrap token → service principal → content-writer by name → token → a write succeeds", async () => {
    expect(app.bootstrapBanner().split("\n")[0]).toMatch(
      /^imgsrv bootstrap token \(one-time\): imgsrv_at_[A-Za-z0-9_-]+$/
    )
    const principal = await createPrincipal({ kind: "service", display_name: "publisher" })
    expect(principal["id"]).toEqual(expect.any(String))

    const roles = await json(await app.request("GET", "/v1/auth/roles", { token: admin }))
    const role = (roles["roles"] as Array<Json>).find((r) => r["name"] === "content-writer")!
    expect(role["id"]).toBe("content-writer")

    const assigned = await app.request("PUT", `/v1/auth/principals/${principal["id"]}/roles/${role["id"]}`, {
      token: admin
    })
    expect(assigned.status).toBe(204)
    expect(await assigned.text()).toBe("")

    // curl -d '{"name":"ci","expires_at":"2099-01-01T00:00:00Z"}' — no Content-Type header.
    const issued = await app.request("POST", `/v1/auth/principals/${principal["id"]}/api-tokens`, {
      token: admin,
      body: JSON.stringify({ name: "ci", expires_at: "2099-01-01T00:00:00Z" }),
      headers: { "content-type": "application/x-www-form-urlencoded" }
    })
    expect(issued.status).toBe(201)
    const plaintext = (await json(issued))["plaintext"] as string
    expect(plaintext).toMatch(/^imgsrv_at_[A-Za-z0-9_-]+$/)

    expect(await writeStatuses(plaintext)).toEqual([201, 201])
  })
})

describe("roles", () => {
  it("are exactly content-writer then auth-manager, with name = id", async () => {
    const response = await app.request("GET", "/v1/auth/roles", { token: admin })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({
      roles: [
        {
          id: "content-writer",
          name: "content-writer",
          display_name: "Content writer",
          description: "Can write imgsrv content.",
          actions: ["content.write"]
        },
        {
          id: "auth-manager",
          name: "auth-manager",
          display_name: "Auth manager",
          description: "Can manage imgsrv authentication policy.",
          actions: ["auth.manage"]
        }
      ]
    })
  })
})

describe("principals", () => {
  it("the bootstrap principal is listed with its display name, attribute and only auth-manager", async () => {
    const list = await json(await app.request("GET", "/v1/auth/principals", { token: admin }))
    const bootstrap = (list["principals"] as Array<Json>).filter((p) => p["display_name"] === "bootstrap auth manager")
    expect(bootstrap).toHaveLength(1)
    expect(bootstrap[0]).toMatchObject({ kind: "service", attributes: { bootstrap: true }, role_ids: ["auth-manager"] })
    expect(app.bootstrapBanner()).toContain(`principal_id: ${bootstrap[0]!["id"]}`)
  })

  it("are created with kind, trimmed display name, attributes and no roles", async () => {
    const created = await createPrincipal({
      kind: "service",
      display_name: "  publisher ",
      attributes: { source: "test" }
    })
    expect(created).toEqual({
      id: expect.stringMatching(/^principal_[A-Z2-7]{26}$/),
      kind: "service",
      display_name: "publisher",
      attributes: { source: "test" },
      role_ids: []
    })
    const user = await createPrincipal({ kind: "user", display_name: "alice", attributes: {} })
    expect(user).not.toHaveProperty("attributes")
    expect(await json(await app.request("GET", `/v1/auth/principals/${created["id"]}`, { token: admin }))).toEqual(
      created
    )
  })

  it("refuse an unknown kind, a blank name, reserved attributes and unknown members with 400", async () => {
    const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
      [{ kind: "robot", display_name: "x" }, /unsupported principal kind "robot"/],
      [{ kind: "service", display_name: "   " }, /display_name is required/],
      [{ kind: "service" }, /invalid JSON request body/],
      [{ kind: "service", display_name: "x", attributes: { provisioning_rule_id: "r" } }, /reserved/],
      [{ kind: "service", display_name: "x", attributes: { bootstrap: true } }, /reserved/],
      [{ kind: "service", display_name: "x", attributes: ["a"] }, /invalid JSON request body/],
      [{ kind: "service", display_name: "x", role_ids: ["auth-manager"] }, /invalid JSON request body/]
    ]
    for (const [body, detail] of cases) {
      const response = await app.request("POST", "/v1/auth/principals", { token: admin, json: body })
      expect(response.status, JSON.stringify(body)).toBe(400)
      expect(((await response.json()) as { detail: string }).detail).toMatch(detail)
    }
  })

  it("answer 404 for an unknown principal on get, token list, assign and unassign", async () => {
    for (
      const [method, path] of [
        ["GET", "/v1/auth/principals/principal_UNKNOWN"],
        ["GET", "/v1/auth/principals/principal_UNKNOWN/api-tokens"],
        ["PUT", "/v1/auth/principals/principal_UNKNOWN/roles/content-writer"],
        ["DELETE", "/v1/auth/principals/principal_UNKNOWN/roles/content-writer"]
      ] as const
    ) {
      const response = await app.request(method, path, { token: admin })
      expect(response.status, `${method} ${path}`).toBe(404)
      expect(response.headers.get("content-type")).toContain("application/problem+json")
    }
  })
})

describe("role assignments", () => {
  it("are idempotent both ways and show in the principal and the list", async () => {
    const principal = await createPrincipal()
    const path = `/v1/auth/principals/${principal["id"]}/roles/content-writer`
    expect((await app.request("PUT", path, { token: admin })).status).toBe(204)
    expect((await app.request("PUT", path, { token: admin })).status).toBe(204)
    expect(
      (await json(await app.request("GET", `/v1/auth/principals/${principal["id"]}`, { token: admin })))["role_ids"]
    )
      .toEqual(["content-writer"])
    await app.request("PUT", `/v1/auth/principals/${principal["id"]}/roles/auth-manager`, { token: admin })
    const listed =
      (await json(await app.request("GET", "/v1/auth/principals", { token: admin })))["principals"] as Array<Json>
    expect(listed.find((p) => p["id"] === principal["id"])!["role_ids"]).toEqual(["auth-manager", "content-writer"])

    expect((await app.request("DELETE", path, { token: admin })).status).toBe(204)
    expect((await app.request("DELETE", path, { token: admin })).status).toBe(204)
    await app.request("DELETE", `/v1/auth/principals/${principal["id"]}/roles/auth-manager`, { token: admin })
    expect(
      (await json(await app.request("GET", `/v1/auth/principals/${principal["id"]}`, { token: admin })))["role_ids"]
    )
      .toEqual([])
  })

  it("refuse a role other than the two built-ins with 400, before looking up the principal", async () => {
    const principal = await createPrincipal()
    for (const method of ["PUT", "DELETE"] as const) {
      for (const id of [principal["id"], "principal_UNKNOWN"]) {
        const response = await app.request(method, `/v1/auth/principals/${id}/roles/superuser`, { token: admin })
        expect(response.status).toBe(400)
        expect(((await response.json()) as { detail: string }).detail).toBe("unknown built-in role \"superuser\"")
      }
    }
  })

  it("take effect on the next request", async () => {
    const principal = await createPrincipal()
    const issued = await json(
      await app.request("POST", `/v1/auth/principals/${principal["id"]}/api-tokens`, {
        token: admin,
        json: { expires_at: "2099-01-01T00:00:00Z" }
      })
    )
    const token = issued["plaintext"] as string
    expect(await writeStatuses(token)).toEqual([403, 403])
    await app.request("PUT", `/v1/auth/principals/${principal["id"]}/roles/content-writer`, { token: admin })
    expect(await writeStatuses(token)).toEqual([201, 201])
    await app.request("DELETE", `/v1/auth/principals/${principal["id"]}/roles/content-writer`, { token: admin })
    expect(await writeStatuses(token)).toEqual([403, 403])
  })
})

describe("the last auth-manager", () => {
  it("cannot lose the role (409), while a second manager lets the first go", async () => {
    const fresh = await startTestApp()
    try {
      const token = fresh.bootstrapToken()
      const principals = await (await fresh.request("GET", "/v1/auth/principals", { token })).json() as {
        principals: Array<Json>
      }
      const bootstrapId = principals.principals[0]!["id"] as string
      const own = await fresh.request("DELETE", `/v1/auth/principals/${bootstrapId}/roles/auth-manager`, { token })
      expect(own.status).toBe(409)
      expect(((await own.json()) as { detail: string }).detail).toMatch(/last auth-manager/)
      // Unassigning a role the principal does not hold is still a 204.
      expect(
        (await fresh.request("DELETE", `/v1/auth/principals/${bootstrapId}/roles/content-writer`, { token })).status
      )
        .toBe(204)

      const second = await (await fresh.request("POST", "/v1/auth/principals", {
        token,
        json: { kind: "user", display_name: "second admin" }
      })).json() as Json
      expect((await fresh.request("PUT", `/v1/auth/principals/${second["id"]}/roles/auth-manager`, { token })).status)
        .toBe(204)
      const secondToken = (await (await fresh.request("POST", `/v1/auth/principals/${second["id"]}/api-tokens`, {
        token,
        json: { expires_at: "2099-01-01T00:00:00Z" }
      })).json() as Json)["plaintext"] as string
      // The two managers remove each other at the same time: exactly one removal wins
      // (the loser gets 409, or 403 when it was authorized only after losing its role).
      const [a, b] = await Promise.all([
        fresh.request("DELETE", `/v1/auth/principals/${second["id"]}/roles/auth-manager`, { token }),
        fresh.request("DELETE", `/v1/auth/principals/${bootstrapId}/roles/auth-manager`, { token: secondToken })
      ])
      expect([a.status, b.status].filter((s) => s === 204)).toHaveLength(1)
      expect([a.status, b.status].filter((s) => s !== 204)[0]).toBeOneOf([403, 409])
      const survivor = a.status === 204 ? token : secondToken
      const after = await (await fresh.request("GET", "/v1/auth/principals", { token: survivor })).json() as {
        principals: Array<Json>
      }
      expect(after.principals.filter((p) => (p["role_ids"] as Array<string>).includes("auth-manager"))).toHaveLength(1)
    } finally {
      await fresh.close()
    }
  })
})

describe("authorization of /v1/auth/*", () => {
  it("a content-writer gets 403 auth.manage; the bootstrap token can create principals but cannot write content", async () => {
    const contentWriter = await app.tokenFor("content-writer")
    const forbidden = await app.request("GET", "/v1/auth/principals", { token: contentWriter })
    expect(forbidden.status).toBe(403)
    expect(((await forbidden.json()) as { detail: string }).detail).toBe(
      "principal is not authorized for action auth.manage"
    )
    expect(await writeStatuses(contentWriter)).toEqual([201, 201])

    await createPrincipal()
    expect(await writeStatuses(admin)).toEqual([403, 403])
  })
})
