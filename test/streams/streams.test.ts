import { createHash, randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Manifest } from "../../src/catalog/schema.js"
import type { IndexDocument, ProductsDocument, StreamProduct } from "../../src/streams/schema.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  createImage,
  expectStatus,
  publishVersion,
  startPublish,
  waitForJob
} from "../catalog/fixtures.js"
import { removeBlobBytes, seedBlob, type SeededBlob, sha256Hex, withDatabase } from "../support/blobs.js"
import { startTestApp, type StoreKind, type TestApp } from "../support/harness.js"

/**
 * The Incus Simple Streams documents (spec/streams.md): byte-level shape, eligibility,
 * arch mapping, the combined hash over the real downloaded items, live aliases,
 * variants, unique fingerprints, ETag/304, and every rule a real Incus client's
 * decoder applies (streams.md §2).
 */

const encoder = new TextEncoder()

const documents = (app: TestApp) => ({
  index: () => app.request("GET", "/streams/v1/index.json").then((r) => expectStatus<IndexDocument>(r, 200)),
  images: () => app.request("GET", "/streams/v1/images.json").then((r) => expectStatus<ProductsDocument>(r, 200))
})

/** Two fresh blobs: an Incus metadata tarball stand-in and a disk. */
const pair = async (app: TestApp, label: string) => ({
  meta: await seedBlob(app, encoder.encode(`${label} metadata ${randomBytes(4).toString("hex")}`)),
  disk: await seedBlob(app, encoder.encode(`${label} disk ${randomBytes(4).toString("hex")}`))
})

const eligible = (
  blobs: { meta: SeededBlob; disk: SeededBlob },
  extra: { architecture?: string; variant?: string } = {}
) => ({
  blob: blobs.disk,
  ...extra,
  attachments: [{ name: "incus.tar.xz", blob: blobs.meta }]
})

/** The serial Incus reads: `published_at` in UTC as YYYYMMDD_HH:MM. */
const serialOf = (publishedAt: string) => {
  const d = new Date(publishedAt)
  const pad = (n: number) => String(n).padStart(2, "0")
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}_${pad(d.getUTCHours())}:${
    pad(d.getUTCMinutes())
  }`
}

describe("Simple Streams documents", () => {
  let app: TestApp
  let token: string
  let docs: ReturnType<typeof documents>

  beforeAll(async () => {
    app = await startTestApp()
    token = await app.tokenFor("content-writer")
    docs = documents(app)
  })
  afterAll(async () => app?.close())

  const manifest = (name: string, version: string) =>
    app.request("GET", `/v1/images/${name}/versions/${version}`).then((r) => expectStatus<Manifest>(r, 200))
  const putAlias = (name: string, alias: string, version: string) =>
    app.request("PUT", `/v1/images/${name}/aliases/${alias}`, { token, json: { version } }).then((r) =>
      expectStatus(r, 200)
    )

  it("render an empty catalog exactly like the reference, anonymously", async () => {
    const index = await app.request("GET", "/streams/v1/index.json", { headers: { authorization: "Bearer junk" } })
    expect(index.headers.get("content-type")).toBe("application/json")
    expect(await index.text()).toBe(
      "{\n  \"format\": \"index:1.0\",\n  \"index\": {\n    \"images\": {\n      \"datatype\": \"image-downloads\",\n" +
        "      \"format\": \"products:1.0\",\n      \"path\": \"streams/v1/images.json\"\n    }\n  }\n}\n"
    )
    const images = await app.request("GET", "/streams/v1/images.json")
    expect(await images.text()).toBe(
      "{\n  \"content_id\": \"images\",\n  \"datatype\": \"image-downloads\",\n  \"format\": \"products:1.0\",\n" +
        "  \"products\": {}\n}\n"
    )
  })

  it("render the tutorial image byte for byte as spec/streams.md §3 shows it, with the lxd.tar.xz twin", async () => {
    const blobs = {
      meta: await seedBlob(app, encoder.encode("incus metadata bytes")),
      disk: await seedBlob(app, encoder.encode("qcow2 disk bytes"))
    }
    const { artifacts } = await publishVersion(app, token, {
      name: "tutorial",
      version: "0.1.0",
      artifacts: [eligible(blobs, { architecture: "amd64" })]
    })
    await putAlias("tutorial", "latest", "0.1.0")
    const art = artifacts[0]!.id
    const att = artifacts[0]!.attachments[0]!
    const serial = serialOf((await manifest("tutorial", "0.1.0")).version.published_at!)
    const expected = `{
  "content_id": "images",
  "datatype": "image-downloads",
  "format": "products:1.0",
  "products": {
    "tutorial:0.1.0:amd64:default": {
      "aliases": "tutorial/0.1.0,tutorial/latest",
      "arch": "amd64",
      "os": "linux",
      "release": "0.1.0",
      "release_title": "tutorial 0.1.0",
      "requirements": {},
      "variant": "default",
      "versions": {
        "${serial}": {
          "items": {
            "disk-kvm.img": {
              "ftype": "disk-kvm.img",
              "path": "v1/images/tutorial/versions/0.1.0/artifacts/${art}/download/disk.qcow2",
              "sha256": "9a29574a88979879188427349329f1159792e16bac20847247e5d901829408a5",
              "size": 16
            },
            "incus.tar.xz": {
              "combined_disk-kvm-img_sha256": "221253ccd912c915a99c12034293225a76620367dbf2e0a3e5e89e8cb41843d8",
              "ftype": "incus.tar.xz",
              "path": "v1/images/tutorial/versions/0.1.0/artifacts/${art}/attachments/${att}/download/incus.tar.xz",
              "sha256": "270c79454350fb789bed59327984dc2b5d98eeaf100c202e21e1dfa7726e5845",
              "size": 20
            },
            "lxd.tar.xz": {
              "combined_disk-kvm-img_sha256": "221253ccd912c915a99c12034293225a76620367dbf2e0a3e5e89e8cb41843d8",
              "ftype": "lxd.tar.xz",
              "path": "v1/images/tutorial/versions/0.1.0/artifacts/${art}/attachments/${att}/download/incus.tar.xz",
              "sha256": "270c79454350fb789bed59327984dc2b5d98eeaf100c202e21e1dfa7726e5845",
              "size": 20
            }
          }
        }
      }
    }
  }
}
`
    expect(await app.request("GET", "/streams/v1/images.json").then((r) => r.text())).toBe(expected)
    expect((await docs.index()).index.images.products).toEqual(["tutorial:0.1.0:amd64:default"])
  })

  it("list only published qcow2 or squashfs artifacts with an incus.tar.xz attachment", async () => {
    const raw = await pair(app, "raw")
    const bare = await pair(app, "bare")
    await publishVersion(app, token, {
      name: "elig",
      version: "1",
      artifacts: [
        { blob: raw.disk, format: "raw", attachments: [{ name: "incus.tar.xz", blob: raw.meta }] },
        { blob: bare.disk, architecture: "aarch64", attachments: [{ name: "rootfs.sha256", blob: bare.meta }] }
      ]
    })
    // A draft with an eligible artifact.
    const draft = await pair(app, "draft")
    await createDraft(app, token, "elig", "2-draft")
    const artifact = await addArtifact(app, token, "elig", "2-draft", { blob: draft.disk })
    await addAttachment(app, token, "elig", "2-draft", artifact.id, { name: "incus.tar.xz", blob: draft.meta })
    // A version stuck in publishing, with a projection row already written for it.
    const stuck = await pair(app, "stuck")
    await createDraft(app, token, "elig", "3-stuck")
    const stuckArtifact = await addArtifact(app, token, "elig", "3-stuck", { blob: stuck.disk })
    const stuckMeta = await addAttachment(app, token, "elig", "3-stuck", stuckArtifact.id, {
      name: "incus.tar.xz",
      blob: stuck.meta
    })
    await removeBlobBytes(app, stuck.disk)
    const job = await startPublish(app, token, "elig", "3-stuck")
    expect((await waitForJob(app, token, job.id)).state).toBe("failed")
    await withDatabase(app, (c) =>
      c.query(
        `INSERT INTO incus_projection_items (artifact_id, version_id, metadata_attachment_id, metadata_path, root_path,
           metadata_sha256, metadata_size_bytes, root_sha256, root_size_bytes, combined_sha256, root_ftype)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6, 'disk-kvm.img')`,
        [
          stuckArtifact.id,
          job.version_id,
          stuckMeta.id,
          `v1/images/elig/versions/3-stuck/artifacts/${stuckArtifact.id}/attachments/${stuckMeta.id}/download/incus.tar.xz`,
          `v1/images/elig/versions/3-stuck/artifacts/${stuckArtifact.id}/download/disk.qcow2`,
          stuck.meta.hex,
          stuck.meta.size,
          stuck.disk.hex,
          stuck.disk.size
        ]
      ))

    const names = (await docs.index()).index.images.products ?? []
    expect(names.filter((n) => n.startsWith("elig:"))).toEqual([])
    expect(Object.keys((await docs.images()).products).filter((n) => n.startsWith("elig:"))).toEqual([])
  })

  it("map architectures to Incus names and keep release_title from the display name", async () => {
    await publishVersion(app, token, {
      name: "arches",
      version: "2024.1",
      image: { display_name: "Arches <&> Co" },
      artifacts: [
        eligible(await pair(app, "x86"), { architecture: "x86_64" }),
        eligible(await pair(app, "arm"), { architecture: "aarch64" }),
        eligible(await pair(app, "rv"), { architecture: "riscv64" })
      ]
    })
    const products = (await docs.images()).products
    expect(Object.keys(products).filter((n) => n.startsWith("arches:")).sort()).toEqual([
      "arches:2024.1:amd64:default",
      "arches:2024.1:arm64:default",
      "arches:2024.1:riscv64:default"
    ])
    expect(products["arches:2024.1:arm64:default"]).toMatchObject({
      arch: "arm64",
      os: "linux",
      release: "2024.1",
      release_title: "Arches <&> Co",
      variant: "default",
      aliases: "arches/2024.1"
    })
    // Go's encoder escapes <, > and & — byte parity with the reference.
    const text = await app.request("GET", "/streams/v1/images.json").then((r) => r.text())
    expect(text).toContain("\"release_title\": \"Arches \\u003c\\u0026\\u003e Co\"")
  })

  it("resolve aliases live: a move shows on the next GET, with a new ETag; a deleted alias disappears", async () => {
    await publishVersion(app, token, { name: "live", version: "v1", artifacts: [eligible(await pair(app, "v1"))] })
    await publishVersion(app, token, { name: "live", version: "v2", artifacts: [eligible(await pair(app, "v2"))] })
    await putAlias("live", "latest", "v1")
    await putAlias("live", "stable", "v1")
    const first = await app.request("GET", "/streams/v1/images.json")
    const etag = first.headers.get("etag")!
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/)
    const before = ((await first.json()) as ProductsDocument).products
    expect(before["live:v1:amd64:default"]!.aliases).toBe("live/v1,live/latest,live/stable")
    expect(before["live:v2:amd64:default"]!.aliases).toBe("live/v2")

    expect((await app.request("GET", "/streams/v1/images.json", { headers: { "if-none-match": etag } })).status).toBe(
      304
    )

    await putAlias("live", "latest", "v2")
    const moved = await app.request("GET", "/streams/v1/images.json", { headers: { "if-none-match": etag } })
    expect(moved.status).toBe(200)
    expect(moved.headers.get("etag")).not.toBe(etag)
    const after = ((await moved.json()) as ProductsDocument).products
    expect(after["live:v1:amd64:default"]!.aliases).toBe("live/v1,live/stable")
    expect(after["live:v2:amd64:default"]!.aliases).toBe("live/v2,live/latest")

    await app.request("DELETE", "/v1/images/live/aliases/stable", { token })
    expect((await docs.images()).products["live:v1:amd64:default"]!.aliases).toBe("live/v1")
  })

  it("answer conditional requests and HEAD on both documents", async () => {
    for (const path of ["/streams/v1/index.json", "/streams/v1/images.json"]) {
      const full = await app.request("GET", path)
      const body = await full.text()
      const etag = full.headers.get("etag")!
      for (const inm of [etag, `W/${etag}`, `"x", ${etag}`, "*"]) {
        const cached = await app.request("GET", path, { headers: { "if-none-match": inm } })
        expect([cached.status, await cached.text(), cached.headers.get("etag")]).toEqual([304, "", etag])
      }
      expect((await app.request("GET", path, { headers: { "if-none-match": "\"other\"" } })).status).toBe(200)
      const head = await app.request("HEAD", path)
      expect([head.status, head.headers.get("etag"), head.headers.get("content-length"), await head.text()])
        .toEqual([200, etag, String(Buffer.byteLength(body)), ""])
    }
  })

  it("honour variants: siblings that differ only by variant are two products, bare aliases go to default", async () => {
    await publishVersion(app, token, {
      name: "variants",
      version: "1",
      artifacts: [
        eligible(await pair(app, "default"), { architecture: "x86_64" }),
        eligible(await pair(app, "secure"), { architecture: "x86_64", variant: "secureboot" })
      ]
    })
    await putAlias("variants", "latest", "1")
    const products = (await docs.images()).products
    expect(products["variants:1:amd64:default"]!.aliases).toBe("variants/1,variants/latest")
    expect(products["variants:1:amd64:secureboot"]).toMatchObject({
      variant: "secureboot",
      aliases: "variants/1/secureboot,variants/latest/secureboot"
    })

    // A version with only a non-default variant: it gets the bare aliases (reference test, domain.md §8.20–21).
    await publishVersion(app, token, {
      name: "incus-flow",
      version: "20260511_0524",
      artifacts: [eligible(await pair(app, "flow"), { architecture: "x86_64", variant: "secureboot" })]
    })
    await putAlias("incus-flow", "latest", "20260511_0524")
    expect((await docs.index()).index.images.products).toContain("incus-flow:20260511_0524:amd64:secureboot")
    const flow = (await docs.images()).products["incus-flow:20260511_0524:amd64:secureboot"]!
    expect(flow).toMatchObject({ arch: "amd64", os: "linux", release: "20260511_0524", variant: "secureboot" })
    expect(flow.aliases).toBe("incus-flow/20260511_0524,incus-flow/latest")
    const [version] = Object.values(flow.versions)
    expect(Object.keys(version!.items).sort()).toEqual(["disk-kvm.img", "incus.tar.xz", "lxd.tar.xz"])
  })

  it("keep fingerprints unique: the same metadata and disk published twice is one product with both aliases", async () => {
    const same = await pair(app, "same")
    await publishVersion(app, token, { name: "twins", version: "a", artifacts: [eligible(same)] })
    await publishVersion(app, token, { name: "twins", version: "b", artifacts: [eligible(same)] })
    await putAlias("twins", "latest", "b")
    const products = (await docs.images()).products
    const twins = Object.keys(products).filter((n) => n.startsWith("twins:"))
    expect(twins).toEqual(["twins:a:amd64:default"])
    expect(products["twins:a:amd64:default"]!.aliases).toBe("twins/a,twins/b,twins/latest")
  })

  it("satisfy every rule a real Incus client's decoder applies (streams.md §2.3–2.8)", async () => {
    const index = await docs.index()
    const images = await docs.images()
    const names = index.index.images.products!
    expect(index.index.images).toMatchObject({ datatype: "image-downloads", path: "streams/v1/images.json" })
    expect(names.length).toBeGreaterThan(0)
    expect(names).toEqual([...new Set(names)].sort())
    expect(names).toEqual(Object.keys(images.products).sort())
    const fingerprints = new Set<string>()
    const known = new Set(["amd64", "arm64", "riscv64"])
    for (const [name, product] of Object.entries(images.products) as Array<[string, StreamProduct]>) {
      for (const field of ["aliases", "arch", "os", "release", "release_title", "variant"] as const) {
        expect(typeof product[field], `${name}.${field}`).toBe("string")
      }
      expect(product.aliases).not.toMatch(/\s/)
      expect(product.requirements).toEqual({})
      expect(known.has(product.arch), product.arch).toBe(true)
      const keys = Object.keys(product.versions)
      expect(keys).toHaveLength(1)
      expect(keys[0]).toMatch(/^\d{8}_\d{2}:\d{2}$/)
      const items = product.versions[keys[0]!]!.items
      expect(Object.keys(items).sort()).toEqual(["disk-kvm.img", "incus.tar.xz", "lxd.tar.xz"])
      for (const [key, item] of Object.entries(items)) {
        expect(item.ftype).toBe(key)
        expect(Number.isSafeInteger(item.size)).toBe(true)
        expect(item.sha256).toMatch(/^[0-9a-f]{64}$/)
        expect(item.path).toMatch(
          /^v1\/images\/[^/]+\/versions\/[^/]+\/artifacts\/[0-9a-f-]{36}\/(attachments\/[0-9a-f-]{36}\/)?download\/[^/]+$/
        )
      }
      // Distinct last segments: `lxc image export REMOTE:x DIR/` names the files after them.
      expect(items["incus.tar.xz"]!.path.split("/").pop()).toBe("incus.tar.xz")
      expect(items["disk-kvm.img"]!.path.split("/").pop()).toBe("disk.qcow2")
      const { ftype: _incus, ...incus } = items["incus.tar.xz"]!
      const { ftype: _lxd, ...lxd } = items["lxd.tar.xz"]!
      expect(lxd).toEqual(incus)
      const fingerprint = items["incus.tar.xz"]!["combined_disk-kvm-img_sha256"]!
      expect(fingerprint).toMatch(/^[0-9a-f]{64}$/)
      expect(fingerprints.has(fingerprint), `duplicate fingerprint in ${name}`).toBe(false)
      fingerprints.add(fingerprint)
    }
  })
})

for (const store of ["filesystem", "s3"] as const satisfies ReadonlyArray<StoreKind>) {
  describe(`Simple Streams items (${store} store)`, () => {
    let app: TestApp
    beforeAll(async () => {
      app = await startTestApp({ store })
    })
    afterAll(async () => app?.close())

    it("download through their relative paths, and the combined hash is sha256(metadata ‖ disk)", async () => {
      const token = await app.tokenFor("content-writer")
      const meta = await seedBlob(app, randomBytes(70_000))
      const disk = await seedBlob(app, randomBytes(1_100_000))
      await createImage(app, token, "items")
      await publishVersion(app, token, { name: "items", version: "1.0", artifacts: [eligible({ meta, disk })] })
      const product = (await documents(app).images()).products["items:1.0:amd64:default"]!
      const items = Object.values(product.versions)[0]!.items
      const fetchItem = async (path: string) => {
        // Incus joins the item path to the remote URL it was given.
        const response = await fetch(new URL(path, `${app.baseUrl}/`))
        expect(response.status).toBe(200)
        return new Uint8Array(await response.arrayBuffer())
      }
      const metaBytes = await fetchItem(items["incus.tar.xz"]!.path)
      const diskBytes = await fetchItem(items["disk-kvm.img"]!.path)
      expect([items["incus.tar.xz"]!.size, items["incus.tar.xz"]!.sha256]).toEqual([
        metaBytes.length,
        sha256Hex(metaBytes)
      ])
      expect([items["disk-kvm.img"]!.size, items["disk-kvm.img"]!.sha256]).toEqual([
        diskBytes.length,
        sha256Hex(diskBytes)
      ])
      const combined = createHash("sha256").update(metaBytes).update(diskBytes).digest("hex")
      expect(items["incus.tar.xz"]!["combined_disk-kvm-img_sha256"]).toBe(combined)
    })
  })
}
