/**
 * Simple Streams at scale (issue 15):
 * `npx tsx scripts/bench/scale.ts [--seconds 5] [--counts 1000,20000]`.
 *
 * Starts a real imgsrv in this process (embedded PostgreSQL, filesystem store), seeds
 * published artifacts with SQL fixtures (set-based: what the publish workflow would leave
 * behind — versions, artifacts, `incus.tar.xz` attachments, projection rows, an alias per
 * ten versions), and prints, for each catalog size, from the same run:
 *
 *  - `images.json` req/s through imgsrv (served from the cache by the listener) vs a bare
 *    Node `http` server sending the same bytes with the same headers — target ≥ 0.8;
 *  - the render of both documents from one snapshot (SQL + build + serialise + hash),
 *    median of 3, and how much the process's RSS grew during it    — target < 2 s, bounded;
 *  - how long after a commit the change is served (notification + render).
 *
 * req/s uses `wrk` (`apt-get install wrk`); without it the figure is skipped.
 */
import { Effect, Exit, Layer, Logger, LogLevel, ManagedRuntime, Redacted, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import pg from "pg"
import { DatabaseLive } from "../../src/platform/storage/database.js"
import { startEmbeddedPostgres } from "../../src/platform/storage/embedded-postgres.js"
import { StreamsRepository, StreamsRepositoryLive } from "../../src/streams/repository.js"
import { renderDocuments } from "../../src/streams/service.js"
import { runBench, startInProcessApp } from "./harness.js"
import { bareServer, findWrk, median, out, rps, wrkRun } from "./load.js"

const argument = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : process.argv[i + 1]!
}
const SECONDS = Number(argument("seconds", "5"))
const COUNTS = argument("counts", "1000,20000").split(",").map(Number)
const CONNECTIONS = 32
const VERSIONS_PER_IMAGE = 100

const hex = () => randomBytes(32).toString("hex")

/** Adds `count` published artifacts (one per version, 100 versions per image), in one transaction. */
const seed = async (db: pg.Client, first: number, count: number, blobs: { disk: string; meta: string }) => {
  await db.query("BEGIN")
  await db.query(
    `CREATE TEMP TABLE seed ON COMMIT DROP AS
     SELECT n, 'fleet-' || (n / ${VERSIONS_PER_IMAGE}) AS image_name, '2026.' || lpad(n::text, 6, '0') AS version,
            gen_random_uuid() AS version_id, gen_random_uuid() AS artifact_id, gen_random_uuid() AS attachment_id
     FROM generate_series($1::int, $2::int) AS n`,
    [first, first + count - 1]
  )
  await db.query(
    `INSERT INTO images (id, name, display_name)
     SELECT gen_random_uuid(), image_name, 'Fleet ' || image_name FROM seed GROUP BY image_name
     ON CONFLICT (name) DO NOTHING`
  )
  await db.query(
    `INSERT INTO image_versions (id, image_id, version)
     SELECT s.version_id, i.id, s.version FROM seed s JOIN images i ON i.name = s.image_name`
  )
  await db.query(
    `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
       primary_blob_digest, primary_blob_size_bytes, primary_media_type)
     SELECT artifact_id, version_id, 'linux', CASE WHEN n % 2 = 0 THEN 'x86_64' ELSE 'aarch64' END, 'qcow2',
            'sha256:' || $1, 1073741824, 'application/x-qemu-disk' FROM seed`,
    [blobs.disk]
  )
  await db.query(
    `INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
     SELECT attachment_id, artifact_id, 'incus.tar.xz', 'application/x-incus-metadata', 'sha256:' || $1, 4096
     FROM seed`,
    [blobs.meta]
  )
  await db.query("UPDATE image_versions SET state = 'publishing' WHERE id IN (SELECT version_id FROM seed)")
  await db.query(
    `INSERT INTO incus_projection_items (artifact_id, version_id, metadata_attachment_id, metadata_path, root_path,
       metadata_sha256, metadata_size_bytes, root_sha256, root_size_bytes, combined_sha256, root_ftype)
     SELECT artifact_id, version_id, attachment_id,
            'v1/images/' || image_name || '/versions/' || version || '/artifacts/' || artifact_id ||
              '/attachments/' || attachment_id || '/download/incus.tar.xz',
            'v1/images/' || image_name || '/versions/' || version || '/artifacts/' || artifact_id ||
              '/download/disk.qcow2',
            $1, 4096, $2, 1073741824, encode(sha256(artifact_id::text::bytea), 'hex'), 'disk-kvm.img'
     FROM seed`,
    [blobs.meta, blobs.disk]
  )
  await db.query(
    `UPDATE image_versions SET state = 'published', published_at = now()
     WHERE id IN (SELECT version_id FROM seed)`
  )
  await db.query(
    `INSERT INTO aliases (id, image_id, alias, version_id)
     SELECT gen_random_uuid(), v.image_id, 'a' || s.n, s.version_id
     FROM seed s JOIN image_versions v ON v.id = s.version_id WHERE s.n % 10 = 0`
  )
  await db.query("COMMIT")
}

const main = async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-bench-scale-"))
  await chmod(dir, 0o755) // as root, embedded PostgreSQL runs as "postgres"
  const pgScope = Effect.runSync(Scope.make())
  try {
    const wrk = findWrk()
    out(
      `imgsrv Simple Streams at scale — images.json req/s by ${
        wrk ?? "nothing (wrk not found: req/s skipped)"
      }, ${CONNECTIONS} connections × ${SECONDS} s`
    )
    const postgres = await Effect.runPromise(
      startEmbeddedPostgres(path.join(dir, "postgres"), { database: "postgres" }).pipe(Scope.extend(pgScope))
    )
    const dbUrl = Redacted.value(postgres.url)
    const { app, base } = await startInProcessApp(dir, dbUrl)
    const imagesUrl = `${base}/streams/v1/images.json`

    const db = new pg.Client({ connectionString: dbUrl })
    await db.connect()
    const blobs = { disk: hex(), meta: hex() }
    for (const [digest, size] of [[blobs.disk, 1073741824], [blobs.meta, 4096]] as const) {
      await db.query("INSERT INTO cas_blobs (digest, size_bytes, storage_key) VALUES ($1, $2, $3)", [
        `sha256:${digest}`,
        size,
        `cas/sha256/${digest.slice(0, 2)}/${digest.slice(2, 4)}/${digest}`
      ])
    }
    // The renderer on its own, as the cache runs it (its own pool, the app's code).
    const renderer = ManagedRuntime.make(
      StreamsRepositoryLive.pipe(
        Layer.provide(DatabaseLive({ url: Redacted.make(dbUrl), maxConnections: 2 })),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
      )
    )
    const productCount = async () =>
      ((await fetch(`${base}/streams/v1/index.json`).then((r) => r.json())) as {
        index: { images: { products?: ReadonlyArray<string> } }
      }).index.images.products?.length ?? 0

    let seeded = 0
    for (const count of COUNTS) {
      const started = performance.now()
      await seed(db, seeded, count - seeded, blobs)
      seeded = count
      while ((await productCount()) < count) await new Promise((r) => setTimeout(r, 20))
      const seedMs = performance.now() - started

      // Render: median of 3, with the RSS growth during each.
      const renders: Array<number> = []
      let rssGrowth = 0
      let bytes = 0
      for (let i = 0; i < 3; i++) {
        globalThis.gc?.()
        const before = process.memoryUsage().rss
        let peak = before
        const sampler = setInterval(() => {
          peak = Math.max(peak, process.memoryUsage().rss)
        }, 5)
        const t0 = performance.now()
        const documents = await renderer.runPromise(
          Effect.flatMap(StreamsRepository, (repo) => repo.snapshot).pipe(
            Effect.flatMap((rows) => renderDocuments(rows.rows, rows.aliases))
          )
        )
        renders.push(performance.now() - t0)
        clearInterval(sampler)
        peak = Math.max(peak, process.memoryUsage().rss)
        rssGrowth = Math.max(rssGrowth, peak - before)
        bytes = documents.images.body.byteLength
      }

      // A change is served after: the commit, the notification, the render.
      const etag = (await fetch(imagesUrl, { method: "HEAD" })).headers.get("etag")
      const t0 = performance.now()
      await db.query(
        "UPDATE images SET display_name = $1 WHERE name = 'fleet-0'",
        [`Fleet ${randomBytes(3).toString("hex")}`]
      )
      while ((await fetch(imagesUrl, { method: "HEAD" })).headers.get("etag") === etag) {
        await new Promise((r) => setTimeout(r, 2))
      }
      const visibleMs = performance.now() - t0

      out("")
      out(
        `${count} published artifacts: images.json ${(bytes / 1024 / 1024).toFixed(1)} MiB (seeded in ${
          seedMs.toFixed(0)
        } ms)`
      )
      const renderMs = median(renders)
      out(
        `  render of both documents: median ${renderMs.toFixed(0)} ms of [${
          renders.map((r) => r.toFixed(0)).join(", ")
        }]` +
          ` (target < 2000 ms) ${renderMs < 2000 ? "PASS" : "MISS"}; RSS grew at most ${
            (rssGrowth / 1024 / 1024).toFixed(0)
          } MiB during a render`
      )
      out(`  a committed change is served after ${visibleMs.toFixed(0)} ms (notification + render)`)
      if (wrk !== undefined) {
        const response = await fetch(imagesUrl)
        const body = new Uint8Array(await response.arrayBuffer())
        const bare = await bareServer(body, {
          "content-type": "application/json",
          "cache-control": "no-cache",
          etag: response.headers.get("etag") ?? ""
        })
        // Bigger documents take longer per request: fewer connections keep wrk from timing out.
        const options = { connections: body.byteLength > 4 << 20 ? 8 : CONNECTIONS, seconds: SECONDS }
        const viaImgsrv = await wrkRun(wrk, imagesUrl, options)
        const viaBare = await wrkRun(wrk, bare.url, options)
        const revalidate = await wrkRun(wrk, imagesUrl, {
          ...options,
          headers: { "if-none-match": response.headers.get("etag") ?? "" }
        })
        await bare.close()
        const ratio = rps(viaImgsrv) / rps(viaBare)
        out(
          `  GET images.json: imgsrv ${rps(viaImgsrv).toFixed(0)} req/s, bare Node same bytes ${
            rps(viaBare).toFixed(0)
          } req/s → ratio ${ratio.toFixed(2)} (target ≥ 0.8) ${ratio >= 0.8 ? "PASS" : "MISS"} ` +
            `[${options.connections} connections; failures ${viaImgsrv.failed}/${viaBare.failed}]`
        )
        out(`  context: If-None-Match revalidation (304) through imgsrv ${rps(revalidate).toFixed(0)} req/s`)
      }
    }
    await db.end()
    await renderer.dispose()
    await app.dispose()
  } finally {
    await Effect.runPromise(Scope.close(pgScope, Exit.void))
    await rm(dir, { recursive: true, force: true })
  }
}

runBench(main)
