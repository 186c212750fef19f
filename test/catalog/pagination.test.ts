import { randomBytes, randomUUID } from "node:crypto"
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

/**
 * Every other list endpoint, table-driven: each case seeds rows by SQL, then pages through
 * its list while more rows are inserted at the same time as each page request (before,
 * among and after what was served), and checks every seeded row is served exactly once, in
 * the list's order, with `Link: rel="next"` on every page but the last.
 */
interface ListCase {
  /** The list's path (no query). */
  readonly path: string
  /** The body field holding the items. */
  readonly field: string
  readonly token?: string
  /** The label of an item (what `seed` was given for it). */
  readonly label: (item: Record<string, unknown>) => string
  /** Inserts one row per label. */
  readonly seed: (client: pg.Client, labels: ReadonlyArray<string>) => Promise<unknown>
  /** Labels of rows inserted during page `page` (none: the list cannot change, e.g. a published version's artifacts). */
  readonly during?: (page: number) => ReadonlyArray<string>
  /** Order of the seeded labels in the list: as given, reversed, or unspecified. */
  readonly order: "as-seeded" | "reversed" | "any"
  readonly seeded: ReadonlyArray<string>
}

const padded = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`)
const base32Id = () => Array.from(randomBytes(26), (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[b % 32]).join("")

describe("every list endpoint", () => {
  let app: TestApp
  let cases: ReadonlyArray<readonly [string, ListCase]>
  const digest = randomBytes(32).toString("hex")

  /** Versions `labels` of `image`, published, each with one artifact. Groups of three share a `created_at`, and the groups are a microsecond apart (a millisecond cursor would skip or repeat them). */
  const publishedVersions = async (client: pg.Client, image: string, labels: ReadonlyArray<string>) => {
    await client.query(
      `WITH ver AS (
         INSERT INTO image_versions (id, image_id, version, created_at)
         SELECT gen_random_uuid(), (SELECT id FROM images WHERE name = $1), l,
                now() - ((ord / 3) * interval '1 microsecond')
         FROM unnest($2::text[]) WITH ORDINALITY AS t(l, ord) RETURNING id
       )
       INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
         primary_blob_digest, primary_blob_size_bytes, primary_media_type)
       SELECT gen_random_uuid(), ver.id, 'linux', 'x86_64', 'raw', 'sha256:' || $3, 1, 'application/octet-stream'
       FROM ver`,
      [image, labels, digest]
    )
    for (
      const [from, to, stamp] of [["draft", "publishing", ""], ["publishing", "published", ", published_at = now()"]]
    ) {
      await client.query(
        `UPDATE image_versions v SET state = '${to}'${stamp} FROM images i
         WHERE i.id = v.image_id AND i.name = $1 AND v.version = ANY($2) AND v.state = '${from}'`,
        [image, labels]
      )
    }
  }

  beforeAll(async () => {
    app = await startTestApp()
    const manager = await app.tokenFor("auth-manager")
    const subscription = randomUUID()
    const deliveryIds = Array.from({ length: 40 }, () => randomUUID())
    await withDatabase(app, async (client) => {
      await client.query(
        `INSERT INTO cas_blobs (digest, size_bytes, storage_key)
         VALUES ('sha256:' || $1, 1, 'cas/sha256/' || substr($1, 1, 2) || '/' || substr($1, 3, 2) || '/' || $1)`,
        [digest]
      )
      await client.query(
        `INSERT INTO images (id, name) VALUES (gen_random_uuid(), 'paged'), (gen_random_uuid(), 'arts')`
      )
      await client.query(`INSERT INTO auth_principals (id, kind, display_name) VALUES ('token-owner', 'service', 'o')`)
      await client.query(
        `INSERT INTO auth_oidc_providers (issuer, jwks_url, audiences)
         VALUES ('https://idp.example', 'https://idp.example/jwks', '{imgsrv}')`
      )
      await client.query(
        `INSERT INTO webhook_subscriptions (id, url, event_types, secret, enabled)
         VALUES ($1, 'https://hooks.example/x', '{version.published}', 'whsec_x', false)`,
        [subscription]
      )
    })
    const deliveries = (client: pg.Client, ids: ReadonlyArray<string>) =>
      client.query(
        `WITH ev AS (
           INSERT INTO events (id, type, payload)
           SELECT gen_random_uuid(), 'version.published', jsonb_build_object('delivery', d)
           FROM unnest($2::uuid[]) WITH ORDINALITY AS t(d, ord) ORDER BY ord
           RETURNING id, tx, seq, payload
         )
         INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_tx, event_seq, status)
         SELECT (payload->>'delivery')::uuid, $1, id, tx, seq, 'delivered' FROM ev`,
        [subscription, ids]
      )
    cases = [
      ["versions of an image", {
        path: "/v1/images/paged/versions",
        field: "versions",
        label: (item) => String(item["version"]),
        seed: (client, labels) => publishedVersions(client, "paged", labels),
        during: (page) => [`2.${page}.a`, `2.${page}.b`],
        order: "as-seeded",
        seeded: padded("1.", 40)
      }],
      ["artifacts of a published version", {
        path: "/v1/images/arts/versions/1/artifacts",
        field: "artifacts",
        label: (item) => String(item["variant"]),
        seed: async (client, labels) => {
          await client.query(
            `INSERT INTO image_versions (id, image_id, version) SELECT gen_random_uuid(), id, '1' FROM images WHERE name = 'arts'`
          )
          await client.query(
            `INSERT INTO release_artifacts (id, version_id, variant, operating_system, architecture, format,
               primary_blob_digest, primary_blob_size_bytes, primary_media_type)
             SELECT gen_random_uuid(), v.id, l, 'linux', 'x86_64', 'raw', 'sha256:' || $2, 1, 'application/octet-stream'
             FROM image_versions v JOIN images i ON i.id = v.image_id, unnest($1::text[]) AS l
             WHERE i.name = 'arts'`,
            [labels, digest]
          )
          await client.query(`UPDATE image_versions SET state = 'publishing' WHERE version = '1' AND state = 'draft'`)
          await client.query(
            `UPDATE image_versions SET state = 'published', published_at = now() WHERE version = '1' AND state = 'publishing'`
          )
        },
        // A published version never changes (database guard), so nothing is inserted meanwhile.
        order: "as-seeded",
        seeded: padded("v", 40)
      }],
      ["principals", {
        path: "/v1/auth/principals",
        field: "principals",
        token: manager,
        label: (item) => String(item["id"]),
        seed: (client, labels) =>
          client.query(
            `INSERT INTO auth_principals (id, kind, display_name) SELECT l, 'service', l FROM unnest($1::text[]) AS l`,
            [labels]
          ),
        during: (page) => [`pa-${page}`, `pg-${String(page * 6).padStart(3, "0")}x`, `pz-${page}`],
        order: "as-seeded",
        seeded: padded("pg-", 40)
      }],
      ["API tokens of a principal", {
        path: "/v1/auth/principals/token-owner/api-tokens",
        field: "api_tokens",
        token: manager,
        label: (item) => String(item["name"]),
        seed: (client, labels) =>
          client.query(
            `INSERT INTO auth_api_tokens (id, principal_id, name, secret_hash, expires_at)
             SELECT id, 'token-owner', l, decode(repeat('00', 32), 'hex'), now() + interval '1 day'
             FROM unnest($1::text[], $2::text[]) AS t(l, id)`,
            [labels, labels.map(base32Id)]
          ),
        during: (page) => [`late-${page}-a`, `late-${page}-b`, `late-${page}-c`],
        // By id, which is random.
        order: "any",
        seeded: padded("tok-", 40)
      }],
      ["OIDC provisioning rules", {
        path: "/v1/auth/oidc-provisioning-rules",
        field: "rules",
        token: manager,
        label: (item) => String(item["id"]),
        seed: (client, labels) =>
          client.query(
            `INSERT INTO auth_provisioning_rules (id, display_name, provider, audience, condition)
             SELECT l, l, 'https://idp.example', 'imgsrv', 'true' FROM unnest($1::text[]) AS l`,
            [labels]
          ),
        during: (page) => [`ra-${page}`, `rg-${String(page * 6).padStart(3, "0")}x`, `rz-${page}`],
        order: "as-seeded",
        seeded: padded("rg-", 40)
      }],
      ["webhook subscriptions", {
        path: "/v1/webhooks",
        field: "webhooks",
        token: manager,
        label: (item) => String(item["description"]),
        seed: (client, labels) =>
          client.query(
            `INSERT INTO webhook_subscriptions (id, url, event_types, secret, enabled, description, created_at)
             SELECT gen_random_uuid(), 'https://hooks.example/' || l, '{version.published}', 'whsec_x', false, l,
                    now() + (ord * interval '1 microsecond')
             FROM unnest($1::text[]) WITH ORDINALITY AS t(l, ord)`,
            [labels]
          ),
        during: (page) => [`later-${page}-a`, `later-${page}-b`],
        order: "as-seeded",
        seeded: padded("hook-", 40)
      }],
      ["webhook deliveries", {
        path: `/v1/webhooks/${subscription}/deliveries`,
        field: "deliveries",
        token: manager,
        label: (item) => String(item["id"]),
        seed: deliveries,
        during: () => [randomUUID(), randomUUID()],
        // Newest first; all seeded in one transaction, so by event order, descending.
        order: "reversed",
        seeded: deliveryIds
      }]
    ]
    await withDatabase(app, async (client) => {
      for (const [, list] of cases) await list.seed(client, list.seeded)
    })
  }, 120_000)
  afterAll(async () => app?.close())

  it("page every list: each row present from the start is served exactly once, in order, while rows are inserted", async () => {
    for (const [name, list] of cases) {
      const seen: Array<string> = []
      let query = "?limit=7"
      for (let page = 1;; page++) {
        const extra = list.during?.(page) ?? []
        const [response] = await Promise.all([
          app.request("GET", `${list.path}${query}`, list.token === undefined ? {} : { token: list.token }),
          extra.length === 0 ? undefined : withDatabase(app, (client) => list.seed(client, extra))
        ])
        const body = await expectStatus<Record<string, unknown>>(response, 200)
        const items = body[list.field] as Array<Record<string, unknown>>
        expect(items.length, name).toBeLessThanOrEqual(7)
        seen.push(...items.map(list.label))
        const next = body["next_cursor"]
        if (next === undefined) {
          expect(response.headers.get("link"), name).toBeNull()
          break
        }
        expect(next, name).toEqual(expect.any(String))
        expect(response.headers.get("link"), name).toBe(`<${list.path}?limit=7&cursor=${String(next)}>; rel="next"`)
        query = `?limit=7&cursor=${String(next)}`
        expect(page, name).toBeLessThan(50)
      }
      expect(new Set(seen).size, `${name}: no row twice`).toBe(seen.length)
      const seeded = new Set(list.seeded)
      const servedSeeded = seen.filter((label) => seeded.has(label))
      if (list.order === "any") expect([...servedSeeded].sort(), name).toEqual([...list.seeded].sort())
      else {
        expect(servedSeeded, name).toEqual(list.order === "as-seeded" ? list.seeded : [...list.seeded].reverse())
      }
    }
  })

  it("answer a first page of 100 to clients that ignore paging, and refuse bad limits and cursors with a 400", async () => {
    for (const [name, list] of cases) {
      const options = list.token === undefined ? {} : { token: list.token }
      const first = await expectStatus<Record<string, unknown>>(await app.request("GET", list.path, options), 200)
      expect((first[list.field] as Array<unknown>).length, name).toBeLessThanOrEqual(100)
      for (const bad of ["0", "1001", "ten"]) {
        const problem = await expectProblem(await app.request("GET", `${list.path}?limit=${bad}`, options), 400)
        expect(problem.detail, name).toContain("limit")
      }
      // Garbage, and a cursor of another list (an image list's key).
      const foreign = Buffer.from(JSON.stringify({ name: "x", id: 1 })).toString("base64url")
      for (const bad of ["garbage", foreign]) {
        const problem = await expectProblem(await app.request("GET", `${list.path}?cursor=${bad}`, options), 400)
        expect(problem.detail, name).toContain("cursor")
      }
    }
  })

  it("keep the event feed's own keyset cursor (after, next_after), adding Link rel=next while more events follow", async () => {
    const writer = await app.tokenFor("content-writer")
    const seen: Array<string> = []
    let query = "?limit=9"
    for (;;) {
      const response = await app.request("GET", `/v1/events${query}`, { token: writer })
      const body = await expectStatus<{ events: Array<{ id: string }>; next_after?: string }>(response, 200)
      seen.push(...body.events.map((e) => e.id))
      const link = response.headers.get("link")
      if (link === null) {
        // The last page is short; a tailing client keeps `next_after` and asks again later.
        expect(body.events.length).toBeLessThan(9)
        break
      }
      expect(body.events).toHaveLength(9)
      expect(link).toBe(`</v1/events?limit=9&after=${body.next_after}>; rel="next"`)
      query = `?limit=9&after=${body.next_after}`
    }
    // The deliveries' seeded and inserted events (public: not pings), each once.
    expect(seen.length).toBeGreaterThanOrEqual(40)
    expect(new Set(seen).size).toBe(seen.length)
  })

  it("show limit and cursor on every list in the OpenAPI document", async () => {
    const doc = await expectStatus<
      { paths: Record<string, { get?: { parameters?: Array<{ name: string; in: string }> } }> }
    >(
      await app.request("GET", "/openapi.json"),
      200
    )
    const lists = [
      "/v1/images",
      "/v1/images/{name}/versions",
      "/v1/images/{name}/versions/{version}/artifacts",
      "/v1/images/{name}/aliases",
      "/v1/auth/principals",
      "/v1/auth/principals/{principal_id}/api-tokens",
      "/v1/auth/oidc-provisioning-rules",
      "/v1/webhooks",
      "/v1/webhooks/{webhook_id}/deliveries"
    ]
    for (const path of lists) {
      const query = (doc.paths[path]?.get?.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name)
      expect(query, path).toEqual(expect.arrayContaining(["limit", "cursor"]))
    }
  })
})
