import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { withClient } from "../support/blobs.js"
import { type ServedImgsrv, startServedImgsrv } from "../support/shell.js"
import { describeCli, runCli } from "./support.js"

/**
 * `imgsrv images` and `imgsrv versions` as processes against a catalog longer than one
 * page: they follow `next_cursor` to the end (pages of 1000, the most a list answers), for
 * tables and for `--json`.
 */

const COUNT = 1050

let server: ServedImgsrv
let token: string

beforeAll(async () => {
  server = await startServedImgsrv()
  token = await server.writerToken()
  const digest = randomBytes(32).toString("hex")
  const names = Array.from({ length: COUNT }, (_, i) => `many-${String(i).padStart(4, "0")}`)
  const versions = Array.from({ length: COUNT }, (_, i) => `1.${String(i).padStart(4, "0")}`)
  // What publishing leaves behind, by SQL: COUNT images with one published version each,
  // and one image ("long") with COUNT published versions, newest = highest number.
  await withClient(server.databaseUrl, async (client) => {
    await client.query(
      `INSERT INTO cas_blobs (digest, size_bytes, storage_key)
       VALUES ('sha256:' || $1, 1, 'cas/sha256/' || substr($1, 1, 2) || '/' || substr($1, 3, 2) || '/' || $1)`,
      [digest]
    )
    await client.query(
      `INSERT INTO images (id, name) SELECT gen_random_uuid(), n FROM unnest($1::text[]) AS n
       UNION ALL SELECT gen_random_uuid(), 'long'`,
      [names]
    )
    await client.query(
      `INSERT INTO image_versions (id, image_id, version, created_at)
       SELECT gen_random_uuid(), i.id, '1', now() FROM images i WHERE i.name = ANY($1)
       UNION ALL
       SELECT gen_random_uuid(), i.id, v, now() + (ord * interval '1 millisecond')
       FROM images i, unnest($2::text[]) WITH ORDINALITY AS t(v, ord) WHERE i.name = 'long'`,
      [names, versions]
    )
    await client.query(
      `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
         primary_blob_digest, primary_blob_size_bytes, primary_media_type)
       SELECT gen_random_uuid(), v.id, 'linux', 'x86_64', 'raw', 'sha256:' || $1, 1, 'application/octet-stream'
       FROM image_versions v`,
      [digest]
    )
    await client.query(`UPDATE image_versions SET state = 'publishing' WHERE state = 'draft'`)
    await client.query(`UPDATE image_versions SET state = 'published', published_at = now() WHERE state = 'publishing'`)
  })
}, 180_000)
afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0)
})

const env = () => ({ IMGSRV_URL: server.baseUrl, IMGSRV_TOKEN: token, IMGSRV_STATE_DIR: server.workDir })

describe("CLI lists longer than a page", () => {
  it("imgsrv images lists every image, following the next cursor", { timeout: 60_000 }, async () => {
    const table = await runCli(["images"], env())
    expect(table.code, describeCli(table)).toBe(0)
    const rows = table.stdout.trimEnd().split("\n").slice(1).map((line) => line.split(/\s+/)[0])
    expect(rows).toEqual(["long", ...Array.from({ length: COUNT }, (_, i) => `many-${String(i).padStart(4, "0")}`)])
    // More than one page can hold (1000): the CLI followed the cursor.

    const json = await runCli(["images", "--json"], env())
    expect(json.code, describeCli(json)).toBe(0)
    const body = JSON.parse(json.stdout) as { images: Array<{ name: string }>; next_cursor?: string }
    expect(body.images).toHaveLength(COUNT + 1)
    expect(new Set(body.images.map((i) => i.name)).size).toBe(COUNT + 1)
    expect(body.next_cursor).toBeUndefined()
  })

  it("imgsrv versions lists every version, newest first, following the next cursor", { timeout: 60_000 }, async () => {
    const table = await runCli(["versions", "long"], env())
    expect(table.code, describeCli(table)).toBe(0)
    const rows = table.stdout.trimEnd().split("\n").slice(1).map((line) => line.split(/\s+/)[0])
    expect(rows).toEqual(Array.from({ length: COUNT }, (_, i) => `1.${String(COUNT - 1 - i).padStart(4, "0")}`))

    const json = await runCli(["versions", "long", "--json"], env())
    expect(json.code, describeCli(json)).toBe(0)
    const body = JSON.parse(json.stdout) as { versions: Array<{ version: string }> }
    expect(body.versions.map((v) => v.version)).toEqual(rows)

    // `pull`/`inspect` without a ref take the newest: the first item of the first page.
    const inspected = await runCli(["inspect", "long", "--json"], env())
    expect(inspected.code, describeCli(inspected)).toBe(0)
    expect((JSON.parse(inspected.stdout) as { version: { version: string } }).version.version).toBe("1.1049")
  })
})
