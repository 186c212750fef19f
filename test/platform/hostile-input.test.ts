import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startTestApp, type TestApp } from "../support/harness.js"

/**
 * Input no schema rule names but a client can still send: text PostgreSQL cannot store
 * and paths the router cannot decode. Each is the client's 400 problem+json, never a 500,
 * and nothing is written.
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

const expectBadRequest = async (response: Response, detail: RegExp) => {
  expect(response.status).toBe(400)
  expect(response.headers.get("content-type")).toBe("application/problem+json")
  expect(((await response.json()) as { detail: string }).detail).toMatch(detail)
}

describe("text PostgreSQL cannot store (NUL)", () => {
  it("in a JSON body is a 400 and creates nothing", async () => {
    await expectBadRequest(
      await app.request("POST", "/v1/images", { token: writer, json: { name: "nul", display_name: "a\u0000b" } }),
      /NUL/
    )
    await expectBadRequest(
      await app.request("POST", "/v1/auth/principals", {
        token: manager,
        json: { kind: "service", display_name: "x\u0000" }
      }),
      /NUL/
    )
    expect((await app.request("POST", "/v1/images", { token: writer, json: { name: "nul" } })).status).toBe(201)
  })

  it("in a path parameter is a 400", async () => {
    await expectBadRequest(await app.request("GET", "/v1/auth/principals/%00", { token: manager }), /NUL/)
    await expectBadRequest(await app.request("DELETE", "/v1/auth/api-tokens/%00", { token: manager }), /NUL/)
  })
})

describe("a path the router cannot decode", () => {
  it("is a 400, not a 404 or 405", async () => {
    for (const path of ["/v1/images/%FF", "/v1/uploads/%E0%A4", "/v1/images/a/versions/%"]) {
      await expectBadRequest(await app.request("GET", path), /percent-encoding/)
    }
  })
})
