import { Effect, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { DatabaseLive, defaultMigrationsDir, migrate } from "../../src/platform/storage/database.js"
import type { ProductsDocument } from "../../src/streams/schema.js"
import { expectStatus } from "../catalog/fixtures.js"
import { describeBlob, query, seedBlob, sha256Hex } from "../support/blobs.js"
import { createDatabase, startTestApp, type TestApp } from "../support/harness.js"

/**
 * Versions published before migration 0004 had item paths ending in `download`, which
 * `lxc image export REMOTE:x DIR/` turned into one file (the disk overwrote the
 * metadata). The migration gives their frozen projection rows the new file-name paths,
 * which serve the same bytes, and leaves the rows as immutable as before.
 */

const encoder = new TextEncoder()

describe("Simple Streams rows published before file-name paths", () => {
  let app: TestApp
  let drop: () => Promise<void>
  const meta = describeBlob(encoder.encode("old metadata"))
  const disk = describeBlob(encoder.encode("old qcow2 disk"))
  const ids = { image: randomUUID(), version: randomUUID(), artifact: randomUUID(), attachment: randomUUID() }
  const prefix = `v1/images/old/versions/1.0/artifacts/${ids.artifact}`

  beforeAll(async () => {
    const db = await createDatabase()
    drop = db.drop
    // The schema as it was: migrations up to 0003 only.
    const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-migrations-"))
    for (const file of (await readdir(defaultMigrationsDir)).filter((f) => f < "0004")) {
      await copyFile(path.join(defaultMigrationsDir, file), path.join(dir, file))
    }
    await Effect.runPromise(
      migrate(dir).pipe(Effect.provide(DatabaseLive({ url: Redacted.make(db.url), maxConnections: 2 })))
    )
    await rm(dir, { recursive: true, force: true })
    const sql = (text: string, params: ReadonlyArray<unknown>) => query({ databaseUrl: db.url }, text, params)
    for (const blob of [meta, disk]) {
      await sql("INSERT INTO cas_blobs (digest, size_bytes, storage_key) VALUES ($1, $2, $3)", [
        blob.digest,
        blob.size,
        casKey(blob.digest)
      ])
    }
    await sql("INSERT INTO images (id, name) VALUES ($1, 'old')", [ids.image])
    await sql("INSERT INTO image_versions (id, image_id, version) VALUES ($1, $2, '1.0')", [ids.version, ids.image])
    await sql(
      `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
         primary_blob_digest, primary_blob_size_bytes, primary_media_type)
       VALUES ($1, $2, 'linux', 'x86_64', 'qcow2', $3, $4, 'application/x-qemu-disk')`,
      [ids.artifact, ids.version, disk.digest, disk.size]
    )
    await sql(
      `INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
       VALUES ($1, $2, 'incus.tar.xz', 'application/x-incus-metadata', $3, $4)`,
      [ids.attachment, ids.artifact, meta.digest, meta.size]
    )
    await sql("UPDATE image_versions SET state = 'publishing' WHERE id = $1", [ids.version])
    await sql(
      `INSERT INTO incus_projection_items (artifact_id, version_id, metadata_attachment_id, metadata_path, disk_path,
         metadata_sha256, metadata_size_bytes, disk_sha256, disk_size_bytes, combined_disk_kvm_img_sha256)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6)`,
      [
        ids.artifact,
        ids.version,
        ids.attachment,
        `${prefix}/attachments/${ids.attachment}/download`,
        `${prefix}/download`,
        meta.hex,
        meta.size,
        disk.hex,
        disk.size
      ]
    )
    await sql("UPDATE image_versions SET state = 'published', published_at = now() WHERE id = $1", [ids.version])
    // Start-up applies 0004.
    app = await startTestApp({ databaseUrl: db.url })
    await seedBlob(app, meta.bytes)
    await seedBlob(app, disk.bytes)
  })
  afterAll(async () => {
    await app?.close()
    await drop?.()
  })

  it("get paths ending in their file names, which serve the same bytes as the old ones", async () => {
    const products = await app.request("GET", "/streams/v1/images.json").then((r) =>
      expectStatus<ProductsDocument>(r, 200)
    )
    const items = Object.values(products.products["old:1.0:amd64:default"]!.versions)[0]!.items
    expect(items["incus.tar.xz"]!.path).toBe(`${prefix}/attachments/${ids.attachment}/download/incus.tar.xz`)
    expect(items["lxd.tar.xz"]!.path).toBe(items["incus.tar.xz"]!.path)
    expect(items["disk-kvm.img"]!.path).toBe(`${prefix}/download/disk.qcow2`)
    for (const [item, blob] of [[items["incus.tar.xz"]!, meta], [items["disk-kvm.img"]!, disk]] as const) {
      for (const url of [item.path, item.path.slice(0, item.path.lastIndexOf("/"))]) {
        const response = await app.request("GET", `/${url}`)
        expect(response.status, url).toBe(200)
        expect(sha256Hex(new Uint8Array(await response.arrayBuffer()))).toBe(blob.hex)
      }
    }
  })

  it("stay immutable: the guard trigger is back on after the rewrite", async () => {
    const refused = await query(app, "UPDATE incus_projection_items SET root_path = 'x' WHERE version_id = $1", [
      ids.version
    ]).then(() => undefined, (error: { code?: string }) => error.code)
    expect(refused).toBe("23514")
  })
})
