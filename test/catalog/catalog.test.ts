import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Alias, ArtifactList, Image, ImageList, Manifest, VersionList } from "../../src/catalog/schema.js"
import { describeBlob, seedBlob, type SeededBlob, withDatabase } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  addArtifact,
  addAttachment,
  artifactBody,
  createDraft,
  createImage,
  expectProblem,
  expectStatus,
  publishVersion
} from "./fixtures.js"

/**
 * The catalog through HTTP (api.md §2.5–2.7, §2.10, §4): validation, visibility,
 * orderings, 404-vs-empty rules, 409 on identity collisions, 412 once a version has
 * left the draft state, and aliases.
 */

let app: TestApp
let writer: string
let reader: string
let blob: SeededBlob
const encoder = new TextEncoder()

beforeAll(async () => {
  app = await startTestApp()
  writer = await app.tokenFor("content-writer")
  reader = await app.tokenFor("auth-manager")
  blob = await seedBlob(app, encoder.encode("catalog test disk"))
})
afterAll(async () => app?.close())

const get = <T>(path: string, status = 200) => app.request("GET", path).then((r) => expectStatus<T>(r, status))

describe("images", () => {
  it("are created with optional display name and description, and need content.write", async () => {
    const image = await createImage(app, writer, "alpine", { display_name: "Alpine", description: "small" })
    expect(image).toMatchObject({ name: "alpine", display_name: "Alpine", description: "small" })
    expect(image.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(image.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/)
    const bare = await createImage(app, writer, "bare")
    expect(Object.keys(bare).sort()).toEqual(["created_at", "id", "name", "updated_at"])

    const anonymous = await app.request("POST", "/v1/images", { json: { name: "nope" } })
    expect(anonymous.headers.get("www-authenticate")).toBe("Bearer")
    await expectProblem(anonymous, 401)
    // 401/403 come before body validation.
    await expectProblem(await app.request("POST", "/v1/images", { json: { name: "BAD" } }), 401)
    await expectProblem(await app.request("POST", "/v1/images", { token: reader, json: { name: "nope" } }), 403)
  })

  it("refuse invalid names, blank texts, unknown members and duplicates", async () => {
    for (
      const body of [
        { name: "Upper" },
        { name: "-dash" },
        { name: "a".repeat(129) },
        { name: "ok", display_name: "  " },
        { name: "ok", description: "" },
        { name: "ok", extra: true },
        { name: 5 },
        {}
      ]
    ) {
      const problem = await expectProblem(await app.request("POST", "/v1/images", { token: writer, json: body }), 400)
      expect(problem.detail, JSON.stringify(body)).toMatch(/^invalid JSON request body: /)
    }
    await expectProblem(
      await app.request("POST", "/v1/images", { token: writer, body: "{\"name\":\"x\"} trailing" }),
      400
    )
    await createImage(app, writer, "dup")
    const conflict = await expectProblem(
      await app.request("POST", "/v1/images", { token: writer, json: { name: "dup" } }),
      409
    )
    expect(conflict.title).toBe("Conflict")
  })

  it("stay invisible until a version is published; aliases list works regardless", async () => {
    await createImage(app, writer, "hidden")
    await createDraft(app, writer, "hidden", "1.0")
    expect((await get<ImageList>("/v1/images")).images.map((i) => i.name)).not.toContain("hidden")
    await expectProblem(await app.request("GET", "/v1/images/hidden"), 404)
    await expectProblem(await app.request("GET", "/v1/images/hidden/versions"), 404)
    expect(await get("/v1/images/hidden/aliases")).toEqual({ aliases: [] })
    await expectProblem(await app.request("GET", "/v1/images/nothing/aliases"), 404)
    await expectProblem(await app.request("GET", "/v1/images/Hidden"), 400)
  })
})

describe("versions and manifests", () => {
  it("create drafts readable anonymously by exact version, including + and : in the version", async () => {
    await createImage(app, writer, "debian")
    const draft = await createDraft(app, writer, "debian", "12.5+b1:2")
    expect(draft).toMatchObject({ version: "12.5+b1:2", state: "draft" })
    expect(draft).not.toHaveProperty("published_at")
    const manifest = await get<Manifest>("/v1/images/debian/versions/12.5+b1:2")
    expect(manifest).toMatchObject({
      image: { name: "debian" },
      version: { id: draft.id, state: "draft" },
      artifacts: []
    })
    // Percent-encoded forms are decoded, and `+` is never a space.
    expect((await get<Manifest>("/v1/images/debian/versions/12.5%2Bb1%3A2")).version.id).toBe(draft.id)
    await expectProblem(await app.request("GET", "/v1/images/debian/versions/12.5%20b1:2"), 400)

    await expectProblem(
      await app.request("POST", "/v1/images/debian/versions", { token: writer, json: { version: "12.5+b1:2" } }),
      409
    )
    await expectProblem(
      await app.request("POST", "/v1/images/ghost/versions", { token: writer, json: { version: "1" } }),
      404
    )
    await expectProblem(
      await app.request("POST", "/v1/images/debian/versions", { token: writer, json: { version: "/x" } }),
      400
    )
    await expectProblem(await app.request("GET", "/v1/images/debian/versions/nope"), 404)
    await expectProblem(await app.request("GET", "/v1/images/debian/versions/-bad"), 400)
  })

  it("list images by name and published versions newest first; drafts are never listed", async () => {
    await publishVersion(app, writer, { name: "zeta", version: "v1", artifacts: [{ blob }] })
    await publishVersion(app, writer, { name: "beta", version: "v1.0.0", artifacts: [{ blob }] })
    await publishVersion(app, writer, { name: "beta", version: "v3.0.0", artifacts: [{ blob }] })
    await createDraft(app, writer, "beta", "v4.0.0-draft")
    const names = (await get<ImageList>("/v1/images")).images.map((i) => i.name)
    expect(names.indexOf("beta")).toBeLessThan(names.indexOf("zeta"))
    expect(names).toEqual([...names].sort())
    expect((await get<Image>("/v1/images/beta")).name).toBe("beta")
    const versions = (await get<VersionList>("/v1/images/beta/versions")).versions
    expect(versions.map((v) => v.version)).toEqual(["v3.0.0", "v1.0.0"])
    expect(versions.every((v) => v.state === "published" && typeof v.published_at === "string")).toBe(true)
  })
})

describe("published manifests", () => {
  it("are served from memory once read (they cannot change), drafts always from the database", async () => {
    await publishVersion(app, writer, { name: "cached", version: "1", artifacts: [{ blob }] })
    await createDraft(app, writer, "cached", "2")
    expect((await get<Manifest>("/v1/images/cached/versions/1")).image).not.toHaveProperty("display_name")
    // Only possible behind the API's back: images have no update endpoint.
    await withDatabase(app, (c) => c.query("UPDATE images SET display_name = 'Renamed' WHERE name = 'cached'"))
    expect((await get<Manifest>("/v1/images/cached/versions/1")).image).not.toHaveProperty("display_name")
    expect((await get<Manifest>("/v1/images/cached/refs/1")).image).not.toHaveProperty("display_name")
    expect((await get<Manifest>("/v1/images/cached/versions/2")).image.display_name).toBe("Renamed")
  })
})

describe("artifacts and attachments", () => {
  it("normalise the variant, order the manifest and refuse duplicate identities (409)", async () => {
    await createImage(app, writer, "arts")
    await createDraft(app, writer, "arts", "1")
    const secure = await addArtifact(app, writer, "arts", "1", { blob, variant: "secureboot" })
    const plain = await addArtifact(app, writer, "arts", "1", { blob })
    const empty = await addArtifact(app, writer, "arts", "1", {
      blob,
      variant: "",
      format: "raw.gz",
      architecture: "aarch64"
    })
    expect([secure.variant, plain.variant, empty.variant]).toEqual(["secureboot", "default", "default"])
    expect(plain).toMatchObject({
      operating_system: "linux",
      architecture: "x86_64",
      format: "qcow2",
      primary_blob_digest: blob.digest,
      primary_blob_size_bytes: blob.size,
      primary_media_type: "application/x-qemu-disk"
    })
    await expectProblem(
      await app.request("POST", "/v1/images/arts/versions/1/artifacts", {
        token: writer,
        json: artifactBody({ blob })
      }),
      409
    )
    await expectProblem(
      await app.request("POST", "/v1/images/arts/versions/1/artifacts", {
        token: writer,
        json: artifactBody({ blob, variant: "default" })
      }),
      409
    )
    const manifest = await get<Manifest>("/v1/images/arts/versions/1")
    // variant, operating_system, architecture, format, id
    expect(manifest.artifacts.map((a) => a.artifact.id)).toEqual([empty.id, plain.id, secure.id])
    // Drafts: the artifact list and get are published-only.
    await expectProblem(await app.request("GET", "/v1/images/arts/versions/1/artifacts"), 404)
    await expectProblem(await app.request("GET", `/v1/images/arts/versions/1/artifacts/${plain.id}`), 404)
  })

  it("validate every field, and never check the blob before publishing", async () => {
    await createImage(app, writer, "valid")
    await createDraft(app, writer, "valid", "1")
    const unknownBlob = describeBlob(encoder.encode("not uploaded"))
    await addArtifact(app, writer, "valid", "1", { blob: { digest: unknownBlob.digest, size: 999 } })
    const bad = [
      { format: "vmdk" },
      { primary_blob_digest: `sha256:${"A".repeat(64)}` },
      { primary_blob_digest: "sha256:abc" },
      { primary_blob_size_bytes: -1 },
      { primary_blob_size_bytes: 1.5 },
      { primary_blob_size_bytes: "10" },
      { primary_media_type: " " },
      { operating_system: "a".repeat(65) },
      { architecture: "x/86" },
      { variant: "_x" },
      { extra: 1 }
    ]
    for (const patch of bad) {
      const json = { ...artifactBody({ blob, architecture: "riscv64" }), ...patch }
      await expectProblem(
        await app.request("POST", "/v1/images/valid/versions/1/artifacts", { token: writer, json }),
        400
      )
    }
    const { operating_system: _, ...missing } = artifactBody({ blob })
    await expectProblem(
      await app.request("POST", "/v1/images/valid/versions/1/artifacts", { token: writer, json: missing }),
      400
    )
    await expectProblem(
      await app.request("POST", "/v1/images/valid/versions/2/artifacts", {
        token: writer,
        json: artifactBody({ blob })
      }),
      404
    )
  })

  it("accept every format, squashfs (container roots) included, and name them all when refusing one", async () => {
    await createImage(app, writer, "formats")
    await createDraft(app, writer, "formats", "1")
    for (const format of ["raw", "raw.gz", "qcow2", "squashfs"]) {
      expect((await addArtifact(app, writer, "formats", "1", { blob, format })).format).toBe(format)
    }
    const refused = await expectProblem(
      await app.request("POST", "/v1/images/formats/versions/1/artifacts", {
        token: writer,
        json: { ...artifactBody({ blob }), format: "vmdk" }
      }),
      400
    )
    expect(refused.detail).toBe("invalid JSON request body: format: format must be one of raw, raw.gz, qcow2, squashfs")
  })

  it("attach blobs by name, refuse duplicates and foreign artifacts, and delete in cascade", async () => {
    await createImage(app, writer, "att")
    await createDraft(app, writer, "att", "1")
    await createDraft(app, writer, "att", "2")
    const artifact = await addArtifact(app, writer, "att", "1", { blob })
    const other = await addArtifact(app, writer, "att", "2", { blob })
    const sum = await addAttachment(app, writer, "att", "1", artifact.id, {
      name: "rootfs.sha256",
      blob,
      media_type: "text/plain"
    })
    expect(sum).toMatchObject({
      artifact_id: artifact.id,
      name: "rootfs.sha256",
      media_type: "text/plain",
      blob_digest: blob.digest
    })
    await addAttachment(app, writer, "att", "1", artifact.id, { name: "incus.tar.xz", blob })
    const attach = (version: string, artifactId: string, name: string) =>
      app.request("POST", `/v1/images/att/versions/${version}/artifacts/${artifactId}/attachments`, {
        token: writer,
        json: { name, media_type: "text/plain", blob_digest: blob.digest, blob_size_bytes: blob.size }
      })
    await expectProblem(await attach("1", artifact.id, "rootfs.sha256"), 409)
    await expectProblem(await attach("1", other.id, "x"), 404)
    await expectProblem(await attach("1", "00000000-0000-4000-8000-000000000000", "x"), 404)
    await expectProblem(await attach("1", artifact.id, "a".repeat(65)), 400)
    expect((await expectProblem(await attach("1", "not-a-uuid", "x"), 400)).detail).toBe("artifact id must be a UUID")

    let manifest = await get<Manifest>("/v1/images/att/versions/1")
    expect(manifest.artifacts[0]!.attachments.map((t) => t.name)).toEqual(["incus.tar.xz", "rootfs.sha256"])
    const remove = (path: string) => app.request("DELETE", path, { token: writer })
    await expectProblem(await remove(`/v1/images/att/versions/2/artifacts/${artifact.id}/attachments/${sum.id}`), 404)
    expect((await remove(`/v1/images/att/versions/1/artifacts/${artifact.id}/attachments/${sum.id}`)).status).toBe(204)
    await expectProblem(await remove(`/v1/images/att/versions/1/artifacts/${artifact.id}/attachments/${sum.id}`), 404)
    manifest = await get<Manifest>("/v1/images/att/versions/1")
    expect(manifest.artifacts[0]!.attachments.map((t) => t.name)).toEqual(["incus.tar.xz"])
    // Through another image's path: not found.
    await createImage(app, writer, "att-other")
    await createDraft(app, writer, "att-other", "1")
    await expectProblem(await remove(`/v1/images/att-other/versions/1/artifacts/${artifact.id}`), 404)
    expect((await remove(`/v1/images/att/versions/1/artifacts/${artifact.id}`)).status).toBe(204)
    expect((await get<Manifest>("/v1/images/att/versions/1")).artifacts).toEqual([])
  })

  it("freeze once published (412), while reads of the published version work", async () => {
    const { artifacts } = await publishVersion(app, writer, {
      name: "frozen",
      version: "1",
      artifacts: [{ blob, attachments: [{ name: "incus.tar.xz", blob }] }]
    })
    const [artifact] = artifacts
    const base = "/v1/images/frozen/versions/1/artifacts"
    await expectProblem(
      await app.request("POST", base, { token: writer, json: artifactBody({ blob, variant: "new" }) }),
      412
    )
    await expectProblem(
      await app.request("POST", `${base}/${artifact!.id}/attachments`, {
        token: writer,
        json: { name: "more", media_type: "text/plain", blob_digest: blob.digest, blob_size_bytes: blob.size }
      }),
      412
    )
    await expectProblem(await app.request("DELETE", `${base}/${artifact!.id}`, { token: writer }), 412)
    await expectProblem(
      await app.request("DELETE", `${base}/${artifact!.id}/attachments/${artifact!.attachments[0]}`, { token: writer }),
      412
    )
    const listed = await get<ArtifactList>(base)
    expect(listed.artifacts.map((a) => a.id)).toEqual([artifact!.id])
    expect((await get<{ id: string }>(`${base}/${artifact!.id}`)).id).toBe(artifact!.id)
    const manifest = await get<Manifest>("/v1/images/frozen/versions/1")
    expect(manifest.version.state).toBe("published")
    expect(manifest.artifacts[0]!.attachments).toHaveLength(1)
  })
})

describe("aliases and refs", () => {
  it("create and move with 200 both ways, keep id and created_at, and only target published versions", async () => {
    await publishVersion(app, writer, { name: "rel", version: "v1.0.0", artifacts: [{ blob }] })
    await publishVersion(app, writer, { name: "rel", version: "v1.1.0", artifacts: [{ blob }] })
    await createDraft(app, writer, "rel", "v2-draft")
    const put = (alias: string, version: string) =>
      app.request("PUT", `/v1/images/rel/aliases/${alias}`, { token: writer, json: { version } })

    const created = await expectStatus<Alias>(await put("latest", "v1.0.0"), 200)
    expect(created).toMatchObject({ alias: "latest", version: "v1.0.0" })
    const again = await expectStatus<Alias>(await put("latest", "v1.0.0"), 200)
    expect(again.updated_at).toBe(created.updated_at)
    await new Promise((resolve) => setTimeout(resolve, 5))
    const moved = await expectStatus<Alias>(await put("latest", "v1.1.0"), 200)
    expect(moved).toMatchObject({ id: created.id, created_at: created.created_at, version: "v1.1.0" })
    expect(moved.version_id).not.toBe(created.version_id)
    expect(moved.updated_at > created.updated_at).toBe(true)

    await expectProblem(await put("next", "v2-draft"), 412)
    await expectProblem(await put("next", "v9"), 404)
    await expectProblem(
      await app.request("PUT", "/v1/images/ghost/aliases/x", { token: writer, json: { version: "1" } }),
      404
    )
    await expectProblem(await put("bad+alias", "v1.0.0"), 400)
    await expectProblem(await put("ok", "bad version"), 400)
    await expectProblem(await app.request("PUT", "/v1/images/rel/aliases/x", { json: { version: "v1.0.0" } }), 401)

    await expectStatus<Alias>(await put("Stable", "v1.0.0"), 200)
    expect((await get<{ aliases: ReadonlyArray<Alias> }>("/v1/images/rel/aliases")).aliases.map((a) => a.alias))
      .toEqual(["Stable", "latest"])
    expect((await get<Alias>("/v1/images/rel/aliases/latest")).id).toBe(created.id)
    await expectProblem(await app.request("GET", "/v1/images/rel/aliases/none"), 404)
  })

  it("resolve refs: an exact published version first, then an alias; deleted aliases stop resolving", async () => {
    await app.request("PUT", "/v1/images/rel/aliases/v1.0.0", { token: writer, json: { version: "v1.1.0" } })
      .then((r) => expectStatus(r, 200))
    expect((await get<Manifest>("/v1/images/rel/refs/v1.0.0")).version.version).toBe("v1.0.0")
    expect((await get<Manifest>("/v1/images/rel/refs/latest")).version.version).toBe("v1.1.0")
    await expectProblem(await app.request("GET", "/v1/images/rel/refs/v2-draft"), 404)
    await expectProblem(await app.request("GET", "/v1/images/rel/refs/nothing"), 404)
    await expectProblem(await app.request("GET", "/v1/images/ghost/refs/latest"), 404)
    await expectProblem(await app.request("GET", "/v1/images/rel/refs/a%2Fb"), 400)

    expect((await app.request("DELETE", "/v1/images/rel/aliases/latest", { token: writer })).status).toBe(204)
    await expectProblem(await app.request("DELETE", "/v1/images/rel/aliases/latest", { token: writer }), 404)
    await expectProblem(await app.request("GET", "/v1/images/rel/aliases/latest"), 404)
    await expectProblem(await app.request("GET", "/v1/images/rel/refs/latest"), 404)
    expect((await get<Manifest>("/v1/images/rel/refs/v1.1.0")).version.version).toBe("v1.1.0")
  })
})
