import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DOCS_ROUTES, ImgsrvApi } from "../../src/api.js"
import { makeRouteTable } from "../../src/platform/http/routes.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  createImage,
  expectProblem,
  expectStatus,
  startPublish,
  waitForJob
} from "../catalog/fixtures.js"
import { seedBlob, type SeededBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"

/**
 * Creation limits and routing agree (api.md §1.7): a name, version or ref of 128 characters
 * and an alias of 64 reach their handlers on every route that carries one, and one character
 * more is refused with a 400 naming the field — at creation and in a path, never a 405.
 */

const NAME = `n${"a".repeat(126)}z` // 128, the longest image name
const VERSION = `1${".0+build:9".repeat(12)}${"x".repeat(7)}` // 128, with `+` and `:`
const DRAFT = `2${"-rc".repeat(42)}x` // 128
const ALIAS = `l${"a".repeat(63)}` // 64, the longest alias

let app: TestApp
let writer: string
let manager: string
let disk: SeededBlob
let meta: SeededBlob

beforeAll(async () => {
  app = await startTestApp()
  writer = await app.tokenFor("content-writer")
  manager = await app.tokenFor("auth-manager", "content-writer")
  disk = await seedBlob(app, new TextEncoder().encode("long-named disk"))
  meta = await seedBlob(app, new TextEncoder().encode("long-named metadata"))
})
afterAll(() => app?.close())

const enc = encodeURIComponent

describe("the longest names, versions and aliases", () => {
  it("have the lengths the rules allow", () => {
    expect([NAME.length, VERSION.length, DRAFT.length, ALIAS.length]).toEqual([128, 128, 128, 64])
  })

  it("work end to end on every catalog route that carries them", async () => {
    await createImage(app, writer, NAME)
    await createDraft(app, writer, NAME, VERSION)
    const base = `/v1/images/${NAME}/versions/${enc(VERSION)}`
    const artifact = await addArtifact(app, writer, NAME, enc(VERSION), { blob: disk })
    const attachment = await addAttachment(app, writer, NAME, enc(VERSION), artifact.id, {
      name: "incus.tar.xz",
      blob: meta
    })
    const spare = await addAttachment(app, writer, NAME, enc(VERSION), artifact.id, { name: "spare", blob: meta })
    await expectStatus(
      await app.request("DELETE", `${base}/artifacts/${artifact.id}/attachments/${spare.id}`, { token: writer }),
      204
    )
    const job = await startPublish(app, writer, NAME, enc(VERSION))
    expect((await waitForJob(app, writer, job.id)).state).toBe("succeeded")

    await expectStatus(
      await app.request("PUT", `/v1/images/${NAME}/aliases/${ALIAS}`, { token: writer, json: { version: VERSION } }),
      200
    )
    const reads = [
      `/v1/images/${NAME}`,
      `/v1/images/${NAME}/versions`,
      base,
      `/v1/images/${NAME}/refs/${enc(VERSION)}`,
      `/v1/images/${NAME}/refs/${ALIAS}`,
      `${base}/artifacts`,
      `${base}/artifacts/${artifact.id}`,
      `/v1/images/${NAME}/aliases`,
      `/v1/images/${NAME}/aliases/${ALIAS}`
    ]
    for (const path of reads) await expectStatus(await app.request("GET", path), 200)
    const download = await app.request("GET", `${base}/artifacts/${artifact.id}/download`)
    expect(await download.text()).toBe("long-named disk")
    const metadata = await app.request("GET", `${base}/artifacts/${artifact.id}/attachments/${attachment.id}/download`)
    expect(await metadata.text()).toBe("long-named metadata")
    await expectStatus(await app.request("DELETE", `/v1/images/${NAME}/aliases/${ALIAS}`, { token: writer }), 204)

    // A second draft to delete an artifact from.
    await createDraft(app, writer, NAME, DRAFT)
    const doomed = await addArtifact(app, writer, NAME, DRAFT, { blob: disk })
    await expectStatus(
      await app.request("DELETE", `/v1/images/${NAME}/versions/${DRAFT}/artifacts/${doomed.id}`, { token: writer }),
      204
    )
  })
})

describe("one character more", () => {
  it("is refused at creation with a 400 naming the field", async () => {
    const cases: ReadonlyArray<[string, string, unknown, RegExp]> = [
      ["POST", "/v1/images", { name: `${NAME}a` }, /image name must match/],
      ["POST", `/v1/images/${NAME}/versions`, { version: `${VERSION}a` }, /version must match/],
      ["PUT", `/v1/images/${NAME}/aliases/${ALIAS}a`, { version: VERSION }, /alias must match/]
    ]
    for (const [method, path, json, detail] of cases) {
      expect((await expectProblem(await app.request(method, path, { token: writer, json }), 400)).detail).toMatch(
        detail
      )
    }
  })

  it("in a path is a 400 naming the field on every route that carries it, not a 405", async () => {
    const paths = [
      `/v1/images/${NAME}a`,
      `/v1/images/${NAME}/versions/${VERSION}a`,
      `/v1/images/${NAME}/refs/${VERSION}a`,
      `/v1/images/${NAME}/aliases/${ALIAS}a`
    ]
    for (const path of paths) {
      const detail = (await expectProblem(await app.request("GET", path), 400)).detail
      expect(detail, path).toMatch(/(image name|version|ref|alias) must match/)
    }
  })
})

describe("every route with path parameters", () => {
  const routes = makeRouteTable(ImgsrvApi, DOCS_ROUTES).routes.filter((r) => r.path.includes(":"))
  /** A value of `length` characters for a parameter, shaped as it must be where there is a shape. */
  const valueOf = (parameter: string, length: number): string => {
    switch (parameter) {
      case "upload_id":
      case "artifact_id":
      case "attachment_id":
      case "job_id":
        return "0190b6f4-0000-7000-8000-000000000000"
      case "digest":
        return `sha256:${"0".repeat(64)}`
      case "part_number":
        return "1"
      case "alias":
        return `a${"b".repeat(Math.min(length, 64) - 1)}`
      default:
        return `a${"b".repeat(length - 1)}`
    }
  }
  const pathWith = (template: string, length: number) =>
    template.replace(/:(\w+)/g, (_, parameter: string) => valueOf(parameter, length))

  it("reaches its handler with 128-character parameters (a problem+json answer, never the router's 404 or 405)", async () => {
    expect(routes.length).toBeGreaterThan(25)
    for (const route of routes) {
      const path = pathWith(route.path, 128)
      const response = await app.request(route.method, path, {
        token: manager,
        ...(route.jsonBody ? { json: {} } : {})
      })
      const label = `${route.method} ${path}`
      expect(response.status, label).not.toBe(405)
      if (response.status >= 400) expect(response.headers.get("content-type"), label).toBe("application/problem+json")
      await response.arrayBuffer()
    }
  })

  /** Valid bodies, so that what is refused is the path. */
  const bodies: Record<string, unknown> = {
    "/v1/images/:name/versions": { version: "1" },
    "/v1/images/:name/versions/:version/artifacts": {
      operating_system: "linux",
      architecture: "x86_64",
      format: "raw",
      primary_blob_digest: `sha256:${"0".repeat(64)}`,
      primary_blob_size_bytes: 1,
      primary_media_type: "application/octet-stream"
    },
    "/v1/images/:name/versions/:version/artifacts/:artifact_id/attachments": {
      name: "meta",
      media_type: "application/octet-stream",
      blob_digest: `sha256:${"0".repeat(64)}`,
      blob_size_bytes: 1
    },
    "/v1/images/:name/aliases/:alias": { version: "1" },
    "/v1/images/:name/versions/:version/yank": { reason: "broken" },
    "/v1/images/:name/retention": { keep_last: 1 }
  }

  it("answers 400 (not 405) for a 129-character name, version or ref", async () => {
    for (const route of routes.filter((r) => /:(name|version|ref)\b/.test(r.path))) {
      const response = await app.request(route.method, pathWith(route.path, 129), {
        token: manager,
        ...(route.jsonBody ? { json: bodies[route.path] } : {})
      })
      expect((await expectProblem(response, 400)).detail, `${route.method} ${route.path}`).toMatch(/must match/)
    }
  })
})
