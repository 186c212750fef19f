import { randomBytes } from "node:crypto"
import type pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { AliasList, ImageList } from "../../src/catalog/schema.js"
import { withDatabase } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { expectProblem, expectStatus } from "./fixtures.js"

/**
 * Paginated lists (platform/http/pagination.ts), on the image list: limit (default 100, at most
 * 1000), opaque cursor, next_cursor and Link rel="next", keyset order so that pages cover
 * every row exactly once while rows are inserted, and a correct first page for clients
 * that ignore paging.
 */

/** Adds `names` as images with one published version each (what publishing leaves behind), by SQL. */
const publishedImages = (client: pg.Client, names: ReadonlyArray<string>) =>
  client.query(
    `WITH blob AS (
       INSERT INTO cas_blobs (digest, size_bytes, storage_key)
       VALUES ('sha256:' || $2, 1, 'cas/sha256/' || substr($2, 1, 2) || '/' || substr($2, 3, 2) || '/' || $2)
       RETURNING digest
     ), img AS (
       INSERT INTO images (id, name) SELECT gen_random_uuid(), n FROM unnest($1::text[]) AS n RETURNING id
     ), ver AS (
       INSERT INTO image_versions (id, image_id, version) SELECT gen_random_uuid(), id, '1' FROM img RETURNING id
     )
     INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
       primary_blob_digest, primary_blob_size_bytes, primary_media_type)
     SELECT gen_random_uuid(), ver.id, 'linux', 'x86_64', 'raw', blob.digest, 1, 'application/octet-stream'
     FROM ver, blob`,
    [names, randomBytes(32).toString("hex")]
  ).then(() =>
    client.query(
      `UPDATE image_versions v SET state = 'publishing' FROM images i
       WHERE i.id = v.image_id AND i.name = ANY($1) AND v.state = 'draft'`,
      [names]
    )
  ).then(() =>
    client.query(
      `UPDATE image_versions v SET state = 'published', published_at = now() FROM images i
       WHERE i.id = v.image_id AND i.name = ANY($1) AND v.state = 'publishing'`,
      [names]
    )
  )

describe("paginated image list", () => {
  let app: TestApp

  beforeAll(async () => {
    app = await startTestApp()
  })
  afterAll(async () => app?.close())

  const list = async (query: string) => {
    const response = await app.request("GET", `/v1/images${query}`)
    return { body: await expectStatus<ImageList>(response, 200), link: response.headers.get("link") }
  }

  it("cover every image exactly once, page after page, while images are inserted", async () => {
    const initial = Array.from({ length: 45 }, (_, i) => `page-${String(i).padStart(3, "0")}`)
    await withDatabase(app, (client) => publishedImages(client, initial))
    const seen: Array<string> = []
    let query = "?limit=7"
    let pages = 0
    while (true) {
      const { body, link } = await list(query)
      pages++
      expect(body.images.length).toBeLessThanOrEqual(7)
      seen.push(...body.images.map((i) => i.name))
      // Inserted between pages: before, inside and after the part already served.
      await withDatabase(
        app,
        (client) =>
          publishedImages(client, [`a-${pages}`, `page-${String(pages * 6).padStart(3, "0")}x`, `zz-${pages}`])
      )
      if (body.next_cursor === undefined) {
        expect(link).toBeNull()
        break
      }
      expect(link).toBe(`</v1/images?limit=7&cursor=${body.next_cursor}>; rel="next"`)
      query = `?limit=7&cursor=${body.next_cursor}`
    }
    expect(new Set(seen).size).toBe(seen.length)
    for (const name of initial) expect(seen).toContain(name)
    // Code-point order throughout.
    expect([...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(seen)
  })

  it("give clients that ignore paging the first 100, in order, with a next cursor when more follow", async () => {
    await withDatabase(
      app,
      (client) => publishedImages(client, Array.from({ length: 120 }, (_, i) => `bulk-${String(i).padStart(3, "0")}`))
    )
    const { body, link } = await list("")
    expect(body.images).toHaveLength(100)
    expect(body.next_cursor).toEqual(expect.any(String))
    expect(link).toContain("limit=100")
    const all = await list("?limit=1000")
    expect(all.body.next_cursor).toBeUndefined()
    expect(all.body.images.slice(0, 100)).toEqual(body.images)
  })

  it("refuse a limit outside 1–1000 or a cursor it did not hand out", async () => {
    for (const bad of ["0", "1001", "-1", "ten", "1.5"]) {
      const problem = await expectProblem(await app.request("GET", `/v1/images?limit=${bad}`), 400)
      expect(problem.detail).toContain("limit")
    }
    for (const bad of ["garbage", Buffer.from("{\"name\":1}").toString("base64url")]) {
      const problem = await expectProblem(await app.request("GET", `/v1/images?cursor=${bad}`), 400)
      expect(problem.detail).toContain("cursor")
    }
  })

  it("page an image's aliases the same way, with the Link header naming the alias route", async () => {
    await withDatabase(app, (client) => publishedImages(client, ["aliased"]))
    const addAliases = (names: ReadonlyArray<string>) =>
      withDatabase(app, (client) =>
        client.query(
          `INSERT INTO aliases (id, image_id, alias, version_id)
           SELECT gen_random_uuid(), i.id, n, v.id
           FROM images i JOIN image_versions v ON v.image_id = i.id, unnest($1::text[]) AS n
           WHERE i.name = 'aliased'`,
          [names]
        ))
    const initial = Array.from({ length: 25 }, (_, i) => `al-${String(i).padStart(2, "0")}`)
    await addAliases(initial)
    const seen: Array<string> = []
    let query = "?limit=10"
    for (let page = 1;; page++) {
      const response = await app.request("GET", `/v1/images/aliased/aliases${query}`)
      const body = await expectStatus<AliasList>(response, 200)
      seen.push(...body.aliases.map((a) => a.alias))
      await addAliases([`a${page}`, `al-${String(page * 9).padStart(2, "0")}b`])
      if (body.next_cursor === undefined) break
      expect(response.headers.get("link")).toBe(
        `</v1/images/aliased/aliases?limit=10&cursor=${body.next_cursor}>; rel="next"`
      )
      query = `?limit=10&cursor=${body.next_cursor}`
    }
    expect(new Set(seen).size).toBe(seen.length)
    for (const alias of initial) expect(seen).toContain(alias)
  })
})
