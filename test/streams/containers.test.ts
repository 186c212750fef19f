import { createHash, randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { ProductsDocument, StreamItem, StreamProduct } from "../../src/streams/schema.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  createImage,
  expectProblem,
  expectStatus,
  publishVersion
} from "../catalog/fixtures.js"
import { seedBlob, type SeededBlob, sha256Hex } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"

/**
 * Incus container images (squashfs root + metadata tarball) beside VM images, the
 * `lxd.tar.xz` twin LXD needs, and the rules both clients apply when they pair a
 * metadata item with a root item (lxc/incus and canonical/lxd 5.0
 * `shared/simplestreams/products.go`): here replayed on the served document, so every
 * product yields exactly the images that were published, under both clients.
 */

const encoder = new TextEncoder()

/** What a client derives from one product version: `[type, fingerprint, meta path, root path]` per image. */
const clientImages = (product: StreamProduct, metadataFtype: "incus.tar.xz" | "lxd.tar.xz") => {
  const images: Array<{ type: string; fingerprint: string; meta: string; root: string }> = []
  for (const version of Object.values(product.versions)) {
    const items = Object.values(version.items)
    for (const meta of items.filter((i) => i.ftype === metadataFtype)) {
      for (const root of items.filter((i) => i.ftype === "squashfs" || i.ftype === "disk-kvm.img")) {
        // The fingerprint field is chosen by the root's ftype; an empty one skips the pair.
        const fingerprint = root.ftype === "squashfs"
          ? meta.combined_squashfs_sha256
          : meta["combined_disk-kvm-img_sha256"]
        if (!fingerprint) continue
        images.push({
          type: root.ftype === "squashfs" ? "container" : "virtual-machine",
          fingerprint,
          meta: meta.path,
          root: root.path
        })
      }
    }
  }
  return images.sort((a, b) => a.type.localeCompare(b.type))
}

const combined = (meta: SeededBlob, root: SeededBlob) =>
  createHash("sha256").update(meta.bytes).update(root.bytes).digest("hex")

describe("container images in Simple Streams", () => {
  let app: TestApp
  let token: string

  beforeAll(async () => {
    app = await startTestApp()
    token = await app.tokenFor("content-writer")
  })
  afterAll(async () => app?.close())

  const images = () => app.request("GET", "/streams/v1/images.json").then((r) => expectStatus<ProductsDocument>(r, 200))
  const blob = (label: string) => seedBlob(app, encoder.encode(`${label} ${randomBytes(6).toString("hex")}`))
  const fetchItem = async (item: StreamItem) => {
    const response = await fetch(new URL(item.path, `${app.baseUrl}/`))
    expect(response.status).toBe(200)
    return new Uint8Array(await response.arrayBuffer())
  }

  it("serve a squashfs artifact with its metadata as a container: squashfs item, combined hashes, lxd.tar.xz twin", async () => {
    const meta = await blob("container metadata")
    const rootfs = await blob("squashfs rootfs")
    const { artifacts } = await publishVersion(app, token, {
      name: "ct",
      version: "1",
      artifacts: [{
        blob: rootfs,
        format: "squashfs",
        media_type: "application/vnd.squashfs",
        attachments: [{ name: "incus.tar.xz", blob: meta }]
      }]
    })
    const product = (await images()).products["ct:1:amd64:default"]!
    expect(product.aliases).toBe("ct/1")
    const items = Object.values(product.versions)[0]!.items
    expect(Object.keys(items).sort()).toEqual(["incus.tar.xz", "lxd.tar.xz", "squashfs"])
    const fingerprint = combined(meta, rootfs)
    const art = artifacts[0]!
    expect(items["squashfs"]).toEqual({
      ftype: "squashfs",
      path: `v1/images/ct/versions/1/artifacts/${art.id}/download/rootfs.squashfs`,
      sha256: rootfs.hex,
      size: rootfs.size
    })
    const metadataItem = {
      path: `v1/images/ct/versions/1/artifacts/${art.id}/attachments/${art.attachments[0]}/download/incus.tar.xz`,
      sha256: meta.hex,
      size: meta.size,
      combined_squashfs_sha256: fingerprint,
      combined_sha256: fingerprint
    }
    expect(items["incus.tar.xz"]).toEqual({ ftype: "incus.tar.xz", ...metadataItem })
    expect(items["lxd.tar.xz"]).toEqual({ ftype: "lxd.tar.xz", ...metadataItem })
    // What the bytes behind the paths hash to is what the items and the fingerprint say.
    const metaBytes = await fetchItem(items["incus.tar.xz"]!)
    const rootBytes = await fetchItem(items["squashfs"]!)
    expect([sha256Hex(metaBytes), sha256Hex(rootBytes)]).toEqual([meta.hex, rootfs.hex])
    expect(createHash("sha256").update(metaBytes).update(rootBytes).digest("hex")).toBe(fingerprint)
    for (const client of ["incus.tar.xz", "lxd.tar.xz"] as const) {
      expect(clientImages(product, client).map((i) => [i.type, i.fingerprint])).toEqual([["container", fingerprint]])
    }
  })

  it("offer a container and a VM build of one version under the same product and aliases", async () => {
    const ctMeta = await blob("both ct metadata")
    const rootfs = await blob("both rootfs")
    const vmMeta = await blob("both vm metadata")
    const disk = await blob("both disk")
    await publishVersion(app, token, {
      name: "both",
      version: "2024.1",
      artifacts: [
        { blob: rootfs, format: "squashfs", attachments: [{ name: "incus.tar.xz", blob: ctMeta }] },
        { blob: disk, format: "qcow2", attachments: [{ name: "incus.tar.xz", blob: vmMeta }] }
      ]
    })
    await app.request("PUT", "/v1/images/both/aliases/latest", { token, json: { version: "2024.1" } })
      .then((r) => expectStatus(r, 200))
    const products = (await images()).products
    expect(Object.keys(products).filter((n) => n.startsWith("both:"))).toEqual(["both:2024.1:amd64:default"])
    const product = products["both:2024.1:amd64:default"]!
    expect(product.aliases).toBe("both/2024.1,both/latest")
    const items = Object.values(product.versions)[0]!.items
    expect(Object.keys(items).sort()).toEqual([
      "disk-kvm.img",
      "incus.tar.xz@disk-kvm.img",
      "incus.tar.xz@squashfs",
      "lxd.tar.xz@disk-kvm.img",
      "lxd.tar.xz@squashfs",
      "squashfs"
    ])
    // Each metadata item carries only its own build's fingerprint, so a client pairs it
    // with its own root and skips the cross pairs (no fingerprint for them).
    expect(items["incus.tar.xz@squashfs"]).not.toHaveProperty("combined_disk-kvm-img_sha256")
    expect(items["incus.tar.xz@disk-kvm.img"]).not.toHaveProperty("combined_squashfs_sha256")
    expect(items["disk-kvm.img"]!.path.split("/").pop()).toBe("disk.qcow2")
    expect(items["squashfs"]!.path.split("/").pop()).toBe("rootfs.squashfs")
    for (const client of ["incus.tar.xz", "lxd.tar.xz"] as const) {
      const found = clientImages(product, client)
      expect(found.map((i) => [i.type, i.fingerprint])).toEqual([
        ["container", combined(ctMeta, rootfs)],
        ["virtual-machine", combined(vmMeta, disk)]
      ])
      expect(found.map((i) => [i.meta, i.root])).toEqual([
        [items["incus.tar.xz@squashfs"]!.path, items["squashfs"]!.path],
        [items["incus.tar.xz@disk-kvm.img"]!.path, items["disk-kvm.img"]!.path]
      ])
    }
    expect(await fetchItem(items["incus.tar.xz@squashfs"]!)).toEqual(ctMeta.bytes)
    expect(await fetchItem(items["lxd.tar.xz@disk-kvm.img"]!)).toEqual(vmMeta.bytes)
  })

  it("keep a product's other build when one build's fingerprint was published before", async () => {
    const meta = await blob("dup metadata")
    const disk = await blob("dup disk")
    await publishVersion(app, token, {
      name: "dup",
      version: "1",
      artifacts: [{ blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] }]
    })
    const rootfs = await blob("dup rootfs")
    await publishVersion(app, token, {
      name: "dup",
      version: "2",
      artifacts: [
        { blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] },
        { blob: rootfs, format: "squashfs", attachments: [{ name: "incus.tar.xz", blob: meta }] }
      ]
    })
    const products = (await images()).products
    // The VM of version 2 is the VM of version 1: it stays only there; version 2 keeps its container.
    expect(clientImages(products["dup:1:amd64:default"]!, "incus.tar.xz").map((i) => i.type)).toEqual([
      "virtual-machine"
    ])
    expect(clientImages(products["dup:2:amd64:default"]!, "incus.tar.xz").map((i) => i.type)).toEqual(["container"])
    expect(products["dup:1:amd64:default"]!.aliases).toBe("dup/1")
    expect(products["dup:2:amd64:default"]!.aliases).toBe("dup/2")
  })

  it("refuse to publish two builds of one type in a product, or a container and a VM of different OSes", async () => {
    const meta = await blob("refused metadata")
    const publish = (version: string) =>
      app.request("POST", `/v1/images/refused/versions/${version}/publish`, { token })
    await createImage(app, token, "refused")

    await createDraft(app, token, "refused", "two-containers")
    for (const architecture of ["x86_64", "amd64"]) {
      const a = await addArtifact(app, token, "refused", "two-containers", {
        blob: await blob(`rootfs ${architecture}`),
        format: "squashfs",
        architecture
      })
      await addAttachment(app, token, "refused", "two-containers", a.id, { name: "incus.tar.xz", blob: meta })
    }
    expect((await expectProblem(await publish("two-containers"), 412)).detail).toContain(
      "would both be the squashfs image of the Simple Streams product refused:two-containers:amd64:default"
    )

    await createDraft(app, token, "refused", "two-oses")
    for (const [format, os] of [["squashfs", "debian"], ["qcow2", "ubuntu"]] as const) {
      const a = await addArtifact(app, token, "refused", "two-oses", {
        blob: await blob(`root ${os}`),
        format,
        operating_system: os
      })
      await addAttachment(app, token, "refused", "two-oses", a.id, { name: "incus.tar.xz", blob: meta })
    }
    expect((await expectProblem(await publish("two-oses"), 412)).detail).toContain("with different operating systems")
  })
})
