import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { ImageVersion, Manifest, VersionList } from "../../src/catalog/schema.js"
import { query, seedBlob, type SeededBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { createDraft, createImage, expectProblem, expectStatus, publishVersion } from "./fixtures.js"

/**
 * Yank and retire (docs/lifecycle.md): a yanked version keeps answering its manifest and
 * downloads but leaves listings, Simple Streams and aliases; only an auth manager retires
 * a yanked version, and retiring is the only way published rows ever go.
 */

const encoder = new TextEncoder()

interface EventJson {
  readonly id: string
  readonly type: string
  readonly data: Record<string, unknown>
}

describe("yank and retire", () => {
  let app: TestApp
  let writer: string
  let manager: string
  let both: string

  beforeAll(async () => {
    app = await startTestApp({ settings: { "publish-worker-poll-interval": "50ms" } })
    writer = await app.tokenFor("content-writer")
    manager = await app.tokenFor("auth-manager")
    both = await app.tokenFor("content-writer", "auth-manager")
  })
  afterAll(async () => app?.close())

  /** Publishes `name`/`version` with one Incus artifact (disk + metadata); returns its ids and blobs. */
  const publish = async (name: string, version: string) => {
    const bytes = (label: string) => encoder.encode(`${name} ${version} ${label} ${randomBytes(4).toString("hex")}`)
    const disk: SeededBlob = await seedBlob(app, bytes("disk"))
    const meta: SeededBlob = await seedBlob(app, bytes("metadata"))
    const { artifacts } = await publishVersion(app, writer, {
      name,
      version,
      artifacts: [{ blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] }]
    })
    return { artifact: artifacts[0]!.id, attachment: artifacts[0]!.attachments[0]!, disk, meta }
  }

  const yank = (name: string, version: string, reason = "broken cloud-init", token = writer) =>
    app.request("POST", `/v1/images/${name}/versions/${version}/yank`, { token, json: { reason } })
  const unyank = (name: string, version: string, token = writer) =>
    app.request("DELETE", `/v1/images/${name}/versions/${version}/yank`, { token })
  const versions = async (name: string, query = "") =>
    (await expectStatus<VersionList>(await app.request("GET", `/v1/images/${name}/versions${query}`), 200)).versions
      .map((v) => v.version)
  const manifest = (name: string, version: string) => app.request("GET", `/v1/images/${name}/versions/${version}`)
  const streamsText = async () => (await app.request("GET", "/streams/v1/images.json")).text()

  describe("POST /v1/images/{name}/versions/{version}/yank", () => {
    it("marks the version yanked with the reason; exact manifest and downloads keep answering", async () => {
      const one = await publish("yank-basic", "1.0")
      await publish("yank-basic", "2.0")
      // Read once first: the manifest is then remembered in memory, and must not stay stale.
      expect((await expectStatus<Manifest>(await manifest("yank-basic", "1.0"), 200)).version).not.toHaveProperty(
        "yanked"
      )

      const yanked = await expectStatus<ImageVersion>(await yank("yank-basic", "1.0"), 200)
      expect(yanked).toMatchObject({
        version: "1.0",
        state: "published",
        yanked: true,
        yank_reason: "broken cloud-init"
      })
      expect(yanked.yanked_at).toMatch(/Z$/)

      const shown = await expectStatus<Manifest>(await manifest("yank-basic", "1.0"), 200)
      expect(shown.version).toMatchObject({ yanked: true, yank_reason: "broken cloud-init" })
      const byRef = await expectStatus<Manifest>(await app.request("GET", "/v1/images/yank-basic/refs/1.0"), 200)
      expect(byRef.version.yanked).toBe(true)

      const base = `/v1/images/yank-basic/versions/1.0/artifacts/${one.artifact}`
      const disk = await app.request("GET", `${base}/download`)
      expect(disk.status).toBe(200)
      expect(new Uint8Array(await disk.arrayBuffer())).toEqual(one.disk.bytes)
      const meta = await app.request("GET", `${base}/attachments/${one.attachment}/download`)
      expect(meta.status).toBe(200)
      expect(new Uint8Array(await meta.arrayBuffer())).toEqual(one.meta.bytes)
    })

    it("leaves GET …/versions unless ?include_yanked=true", async () => {
      await publish("yank-list", "1.0")
      await publish("yank-list", "2.0")
      await expectStatus(await yank("yank-list", "1.0"), 200)
      expect(await versions("yank-list")).toEqual(["2.0"])
      expect(await versions("yank-list", "?include_yanked=false")).toEqual(["2.0"])
      expect((await versions("yank-list", "?include_yanked=true")).sort()).toEqual(["1.0", "2.0"])
      await expectProblem(await app.request("GET", "/v1/images/yank-list/versions?include_yanked=yes"), 400)
      // All yanked: an empty list, not a 404 (the image still has published versions).
      await expectStatus(await yank("yank-list", "2.0"), 200)
      expect(await versions("yank-list")).toEqual([])
    })

    it("removes the product from /streams/v1/images.json, and unyanking brings it back", async () => {
      await publish("yank-streams", "1.0")
      expect(await streamsText()).toContain("yank-streams")
      await expectStatus(await yank("yank-streams", "1.0"), 200)
      expect(await streamsText()).not.toContain("yank-streams")
      await expectStatus(await unyank("yank-streams", "1.0"), 200)
      expect(await streamsText()).toContain("yank-streams")
    })

    it("is refused with 409 for a draft, 404 for an unknown version, 400 for a blank reason", async () => {
      await createImage(app, writer, "yank-draft")
      await createDraft(app, writer, "yank-draft", "1.0")
      const problem = await expectProblem(await yank("yank-draft", "1.0"), 409)
      expect(problem.detail).toContain("only published versions can be yanked")
      await expectProblem(await unyank("yank-draft", "1.0"), 409)
      await expectProblem(await yank("yank-draft", "9.9"), 404)
      await expectProblem(await yank("no-such-image", "1.0"), 404)
      await expectProblem(await yank("yank-draft", "1.0", "   "), 400)
    })

    it("needs content.write", async () => {
      await publish("yank-auth", "1.0")
      await expectProblem(
        await app.request("POST", "/v1/images/yank-auth/versions/1.0/yank", { json: { reason: "x" } }),
        401
      )
      await expectProblem(await yank("yank-auth", "1.0", "x", manager), 403)
    })

    it("is refused while an alias points at the version (409 naming it); an alias cannot move to a yanked one", async () => {
      await publish("yank-alias", "1.0")
      await publish("yank-alias", "2.0")
      await expectStatus(
        await app.request("PUT", "/v1/images/yank-alias/aliases/stable", { token: writer, json: { version: "1.0" } }),
        200
      )
      const refused = await expectProblem(await yank("yank-alias", "1.0"), 409)
      expect(refused.detail).toContain("stable")
      expect((await expectStatus<Manifest>(await manifest("yank-alias", "1.0"), 200)).version).not.toHaveProperty(
        "yanked"
      )

      await expectStatus(await yank("yank-alias", "2.0"), 200)
      const moved = await expectProblem(
        await app.request("PUT", "/v1/images/yank-alias/aliases/stable", { token: writer, json: { version: "2.0" } }),
        409
      )
      expect(moved.detail).toContain("yanked")
      await expectProblem(
        await app.request("PUT", "/v1/images/yank-alias/aliases/new", { token: writer, json: { version: "2.0" } }),
        409
      )
    })

    it("DELETE …/yank undoes it; both are idempotent", async () => {
      await publish("yank-undo", "1.0")
      const first = await expectStatus<ImageVersion>(await yank("yank-undo", "1.0", "first reason"), 200)
      const again = await expectStatus<ImageVersion>(await yank("yank-undo", "1.0", "second reason"), 200)
      expect(again).toEqual(first)
      const undone = await expectStatus<ImageVersion>(await unyank("yank-undo", "1.0"), 200)
      expect(undone).not.toHaveProperty("yanked")
      expect(undone).not.toHaveProperty("yank_reason")
      expect(await versions("yank-undo")).toEqual(["1.0"])
      expect(await expectStatus<ImageVersion>(await unyank("yank-undo", "1.0"), 200)).toEqual(undone)
    })
  })

  describe("retire: DELETE /v1/images/{name}/versions/{version} of a yanked version", () => {
    it("removes it for good (manifest, artifacts, attachments, projection rows); needs auth.manage", async () => {
      const one = await publish("retire-ok", "1.0")
      await publish("retire-ok", "2.0")
      await expectStatus(await manifest("retire-ok", "1.0"), 200)
      await expectStatus(await yank("retire-ok", "1.0"), 200)

      // A content writer alone may yank but not retire; an auth manager alone fails the route's content.write.
      const forbidden = await expectProblem(
        await app.request("DELETE", "/v1/images/retire-ok/versions/1.0", { token: writer }),
        403
      )
      expect(forbidden.detail).toContain("auth.manage")
      await expectProblem(await app.request("DELETE", "/v1/images/retire-ok/versions/1.0", { token: manager }), 403)
      await expectStatus(await manifest("retire-ok", "1.0"), 200)

      const retired = await app.request("DELETE", "/v1/images/retire-ok/versions/1.0", { token: both })
      expect(retired.status).toBe(204)
      await expectProblem(await manifest("retire-ok", "1.0"), 404)
      await expectProblem(
        await app.request("GET", `/v1/images/retire-ok/versions/1.0/artifacts/${one.artifact}/download`),
        404
      )
      const count = async (sql: string) => Number((await query<{ n: string }>(app, sql, [one.artifact]))[0]!.n)
      expect(await count("SELECT count(*) AS n FROM release_artifacts WHERE id = $1")).toBe(0)
      expect(await count("SELECT count(*) AS n FROM artifact_attachments WHERE artifact_id = $1")).toBe(0)
      expect(await count("SELECT count(*) AS n FROM incus_projection_items WHERE artifact_id = $1")).toBe(0)
      expect(await versions("retire-ok", "?include_yanked=true")).toEqual(["2.0"])
      // The blobs stay (garbage collection decides about them).
      expect(
        Number(
          (await query<{ n: string }>(app, "SELECT count(*) AS n FROM cas_blobs WHERE digest = $1", [
            one.disk.digest
          ]))[0]!.n
        )
      ).toBe(1)
      // The version string is free again.
      await createDraft(app, writer, "retire-ok", "1.0")
    })

    it("refuses a published version that is not yanked (409 'yank it first'), even for an auth manager", async () => {
      await publish("retire-unyanked", "1.0")
      const problem = await expectProblem(
        await app.request("DELETE", "/v1/images/retire-unyanked/versions/1.0", { token: both }),
        409
      )
      expect(problem.detail).toContain("yank it first")
      await expectStatus(await manifest("retire-unyanked", "1.0"), 200)
    })

    it("the database still refuses every other delete or update of published rows", async () => {
      const one = await publish("retire-guard", "1.0")
      await expectStatus(await yank("retire-guard", "1.0"), 200)
      const refused = async (sql: string, params: ReadonlyArray<unknown>) => {
        await expect(query(app, sql, params)).rejects.toMatchObject({ code: "23514" })
      }
      // Even yanked, a published version's rows go only through retire_version.
      await refused("DELETE FROM release_artifacts WHERE id = $1", [one.artifact])
      await refused("DELETE FROM artifact_attachments WHERE id = $1", [one.attachment])
      await refused("DELETE FROM incus_projection_items WHERE artifact_id = $1", [one.artifact])
      await refused(
        "DELETE FROM image_versions WHERE version = '1.0' AND image_id = (SELECT id FROM images WHERE name = $1)",
        ["retire-guard"]
      )
      await refused(
        "UPDATE image_versions SET published_at = now() - interval '1 day' WHERE version = '1.0' " +
          "AND image_id = (SELECT id FROM images WHERE name = $1)",
        ["retire-guard"]
      )
      // Nor can a version an alias points at be yanked behind the API's back.
      await publish("retire-guard", "1.1")
      await expectStatus(
        await app.request("PUT", "/v1/images/retire-guard/aliases/stable", { token: writer, json: { version: "1.1" } }),
        200
      )
      await refused(
        "UPDATE image_versions SET yanked_at = now(), yank_reason = 'x' WHERE version = '1.1' " +
          "AND image_id = (SELECT id FROM images WHERE name = $1)",
        ["retire-guard"]
      )
      // A draft cannot be yanked behind the API's back either.
      await createDraft(app, writer, "retire-guard", "2.0")
      await refused(
        "UPDATE image_versions SET yanked_at = now(), yank_reason = 'x' WHERE version = '2.0' " +
          "AND image_id = (SELECT id FROM images WHERE name = $1)",
        ["retire-guard"]
      )
      await expectStatus(await manifest("retire-guard", "1.0"), 200)
    })
  })

  it("records version.yanked, version.unyanked and version.retired in the event feed", async () => {
    await publish("yank-events", "1.0")
    await expectStatus(await yank("yank-events", "1.0", "bad kernel"), 200)
    await expectStatus(await unyank("yank-events", "1.0"), 200)
    await expectStatus(await yank("yank-events", "1.0", "bad kernel"), 200)
    expect((await app.request("DELETE", "/v1/images/yank-events/versions/1.0", { token: both })).status).toBe(204)
    const feed = await expectStatus<{ events: ReadonlyArray<EventJson> }>(
      await app.request("GET", "/v1/events?limit=1000", { token: writer }),
      200
    )
    const mine = feed.events.filter((e) => e.data["image"] === "yank-events" && e.type.startsWith("version."))
    expect(mine.map((e) => e.type)).toEqual([
      "version.published",
      "version.yanked",
      "version.unyanked",
      "version.yanked",
      "version.retired"
    ])
    expect(mine[1]!.data).toMatchObject({
      reason: "bad kernel",
      version: { version: "1.0", yanked: true, yank_reason: "bad kernel" },
      url: "/v1/images/yank-events/versions/1.0"
    })
  })

  it("another replica of the same database stops serving the remembered manifest within seconds", async () => {
    // A replica shares the database and the blob store: either may run the other's publish job.
    const other = await startTestApp({ databaseUrl: app.databaseUrl, dataDir: app.dataDir })
    try {
      await publish("yank-replica", "1.0")
      // The other replica reads it twice: from then on it answers from memory.
      for (let i = 0; i < 2; i++) {
        const shown = await expectStatus<Manifest>(
          await other.request("GET", "/v1/images/yank-replica/versions/1.0"),
          200
        )
        expect(shown.version).not.toHaveProperty("yanked")
      }
      await expectStatus(await yank("yank-replica", "1.0"), 200)
      const seen = async (probe: () => Promise<boolean>) => {
        const deadline = Date.now() + 5000
        while (Date.now() < deadline) {
          if (await probe()) return true
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        return false
      }
      expect(
        await seen(async () => {
          const shown = await other.request("GET", "/v1/images/yank-replica/versions/1.0")
          return ((await shown.json()) as Manifest).version.yanked === true
        })
      ).toBe(true)
      expect((await app.request("DELETE", "/v1/images/yank-replica/versions/1.0", { token: both })).status).toBe(204)
      expect(
        await seen(async () => (await other.request("GET", "/v1/images/yank-replica/versions/1.0")).status === 404)
      ).toBe(true)
    } finally {
      await other.close()
    }
  })

  it("the OpenAPI document lists the yank routes", async () => {
    const doc = await expectStatus<{ paths: Record<string, Record<string, unknown>> }>(
      await app.request("GET", "/openapi.json"),
      200
    )
    expect(Object.keys(doc.paths["/v1/images/{name}/versions/{version}/yank"] ?? {}).sort()).toEqual([
      "delete",
      "post"
    ])
  })
})
