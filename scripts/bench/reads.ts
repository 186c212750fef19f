/**
 * Read-path benchmark (issue 4):
 * `npx tsx scripts/bench/reads.ts [--store filesystem|s3] [--size-mib 256] [--seconds 10]`.
 *
 * Starts a real imgsrv in this process (embedded PostgreSQL; the filesystem store in a temp
 * dir, or with `--store s3` an s3rver started here) and prints, from one run, each figure
 * next to a baseline measured the same way. A "direct read" is a read of the object from
 * the store without imgsrv: the file, or an HTTP GET of the object from the S3 server.
 *
 *  (a) download of a 256 MiB artifact through imgsrv vs a direct read of the same object
 *      from the same store (and, for context, vs a bare Node HTTP file server)   — target ≥ 0.9
 *  (b) GET /v1/images/{name}/versions/{v} req/s (32 connections, 10 s) vs a bare Node
 *      `http` handler returning a same-size JSON body                               — target ≥ 0.5
 *  (c) images.json GET median with 1,000 published eligible versions (served from the
 *      cache since issue 15; the render itself is measured by scale.ts)              — target < 50 ms
 *  (d) incus_index step throughput vs sha256 of the same bytes                        — target ≥ 0.9
 *
 * Downloads (and the req/s load when `wrk` is not installed) are driven from a worker
 * thread (its own event loop, like a separate client) with keep-alive `http.Agent`s. The
 * req/s figure uses `wrk` (an external C load generator, `apt-get install wrk`) when it is
 * there: the worker-thread client needs more CPU per request than a bare handler, so it
 * cannot load a fast server to its limit (see `findWrk`).
 */
import { Effect, Exit, Redacted, Scope, Stream } from "effect"
import { execFile } from "node:child_process"
import { createHash, randomBytes, randomUUID } from "node:crypto"
import { createReadStream, existsSync } from "node:fs"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import * as http from "node:http"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { Worker } from "node:worker_threads"
import pg from "pg"
import { digestFromHex } from "../../src/contract/digest.js"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { makeFilesystemBlobStore } from "../../src/platform/storage/blob-store/filesystem.js"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { makeS3BlobStore } from "../../src/platform/storage/blob-store/s3.js"
import { startEmbeddedPostgres } from "../../src/platform/storage/embedded-postgres.js"
import { type S3TestServer, startS3Server } from "../../test/support/s3-server.js"
import { mintWriterToken, runBench, startInProcessApp } from "./harness.js"

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const STORE = (() => {
  const i = process.argv.indexOf("--store")
  const value = i === -1 ? "filesystem" : process.argv[i + 1]
  if (value !== "filesystem" && value !== "s3") throw new Error("--store takes filesystem or s3")
  return value
})()
const SIZE_MIB = arg("size-mib", 256)
const SECONDS = arg("seconds", 10)
const CONNECTIONS = 32
const VERSIONS = 1000

const out = (line: string) => process.stdout.write(`${line}\n`)
const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}
const mibPerSecond = (bytes: number, ms: number) => bytes / 1024 / 1024 / (ms / 1000)

// ---------------------------------------------------------------------------------
// The client side runs in a worker thread: plain JS, evaluated as CommonJS.
// ---------------------------------------------------------------------------------

const CLIENT = `
const { workerData, parentPort } = require("node:worker_threads")
const http = require("node:http")
const fs = require("node:fs")
const { mode } = workerData
const drain = (stream) => new Promise((resolve, reject) => {
  let bytes = 0
  stream.on("data", (c) => { bytes += c.length })
  stream.on("end", () => resolve(bytes))
  stream.on("error", reject)
})
async function download(url) {
  const started = performance.now()
  const bytes = await new Promise((resolve, reject) => {
    http.get(url, (res) => drain(res).then(resolve, reject)).on("error", reject)
  })
  return { bytes, ms: performance.now() - started }
}
async function file(p) {
  const started = performance.now()
  const bytes = await drain(fs.createReadStream(p, { highWaterMark: 1024 * 1024 }))
  return { bytes, ms: performance.now() - started }
}
async function load({ url, connections, seconds, warmupSeconds }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  const one = () => new Promise((resolve) => {
    const req = http.get(url, { agent }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode >= 200 && res.statusCode < 300))
    })
    req.on("error", () => resolve(false))
  })
  const run = async (ms) => {
    let ok = 0, failed = 0
    const end = performance.now() + ms
    await Promise.all(Array.from({ length: connections }, async () => {
      while (performance.now() < end) (await one()) ? ok++ : failed++
    }))
    return { ok, failed }
  }
  await run(warmupSeconds * 1000)
  const started = performance.now()
  const result = await run(seconds * 1000)
  agent.destroy()
  return { ...result, ms: performance.now() - started }
}
;(async () => {
  if (mode === "download") return download(workerData.url)
  if (mode === "file") return file(workerData.path)
  return load(workerData)
})().then((r) => parentPort.postMessage(r), (e) => parentPort.postMessage({ error: String(e) }))
`

const client = <A>(data: Record<string, unknown>): Promise<A> =>
  new Promise((resolve, reject) => {
    const worker = new Worker(CLIENT, { eval: true, workerData: data })
    worker.once("message", (message: A & { error?: string }) => {
      void worker.terminate()
      if (message.error) reject(new Error(message.error))
      else resolve(message)
    })
    worker.once("error", reject)
  })

/**
 * The req/s figure (b) is measured with `wrk` when it is installed: a C load generator in
 * its own process. The worker-thread client above is the fallback; it costs more CPU per
 * request than a bare handler does, so against a fast server it measures itself (both
 * sides then show the client's ceiling and the ratio says nothing).
 */
const findWrk = (): string | undefined =>
  ["/usr/bin/wrk", "/usr/local/bin/wrk"].find((candidate) => existsSync(candidate))

const wrkRun = (wrk: string, url: string): Promise<{ ok: number; failed: number; ms: number }> => {
  const run = (seconds: number) =>
    new Promise<string>((resolve, reject) => {
      execFile(wrk, ["-t1", `-c${CONNECTIONS}`, `-d${seconds}s`, url], (error, stdout) =>
        error ? reject(error) : resolve(stdout))
    })
  // One second of warm-up (JIT, keep-alive connections), then the measured run.
  return run(1).then(() => run(SECONDS)).then((output) => {
    const number = (pattern: RegExp) => Number(pattern.exec(output)?.[1] ?? "0")
    const requests = number(/(\d+) requests in/)
    const seconds = number(/requests in ([\d.]+)s/)
    const non2xx = number(/Non-2xx or 3xx responses: (\d+)/)
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
    const socketErrors = errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0
    return { ok: requests - non2xx, failed: non2xx + socketErrors, ms: seconds * 1000 }
  })
}

const listen = (server: http.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : 0)
    })
  )

// ---------------------------------------------------------------------------------

const main = async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-bench-"))
  await chmod(dir, 0o755) // as root, embedded PostgreSQL runs as "postgres"
  const pgScope = Effect.runSync(Scope.make())
  let s3: S3TestServer | undefined
  try {
    const wrk = findWrk()
    out(
      `imgsrv read-path benchmark — ${STORE} store, artifact ${SIZE_MIB} MiB, load ${CONNECTIONS} connections × ${SECONDS} s ` +
        `(req/s by ${wrk !== undefined ? `wrk -t1 (${wrk})` : "the worker-thread client: wrk not found"})`
    )
    const postgres = await Effect.runPromise(
      startEmbeddedPostgres(path.join(dir, "postgres"), { database: "postgres" }).pipe(Scope.extend(pgScope))
    )
    const dbUrl = Redacted.value(postgres.url)
    const bucket = "bench"
    if (STORE === "s3") {
      s3 = await startS3Server()
      await s3.createBucket(bucket)
    }
    const { app, base, config } = await startInProcessApp(dir, dbUrl, {
      "publish-worker-poll-interval": "100ms",
      ...(s3 === undefined ? {} : {
        "s3-endpoint": s3.endpoint,
        "s3-bucket": bucket,
        "s3-access-key-id": s3.accessKeyId,
        "s3-secret-access-key": s3.secretAccessKey,
        "s3-path-style": "true"
      })
    }, (config) => {
      if (config.storage._tag !== STORE) throw new Error(`expected the ${STORE} store, got ${config.storage._tag}`)
    })
    /** Where a direct read of `key` goes: the file, or the object's URL on the S3 server (anonymous GET). */
    const directSource = (key: string) =>
      config.storage._tag === "filesystem"
        ? { mode: "file" as const, path: path.join(config.storage.root, key) }
        : { mode: "download" as const, url: `http://${s3!.endpoint}/${bucket}/${key}` }

    const token = await mintWriterToken(dbUrl, 3_600_000)

    const db = new pg.Client({ connectionString: dbUrl })
    await db.connect()
    const api = async (method: string, p: string, body?: unknown) => {
      const res = await fetch(`${base}${p}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      const text = await res.text()
      if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`)
      return JSON.parse(text) as Record<string, unknown>
    }

    // Blobs, written through the store's driver and recorded as verified CAS blobs.
    const storeScope = Effect.runSync(Scope.make())
    const store = await Effect.runPromise(
      (config.storage._tag === "filesystem"
        ? makeFilesystemBlobStore(config.storage.root)
        : makeS3BlobStore({ ...config.storage.s3, sessionToken: undefined })).pipe(Scope.extend(storeScope))
    )
    const seed = async (bytes: Uint8Array) => {
      const hex = createHash("sha256").update(bytes).digest("hex")
      const digest = digestFromHex(hex)
      await Effect.runPromise(
        Effect.gen(function*() {
          const key = casKey(digest)
          const upload = yield* store.createMultipartUpload(key)
          const chunks = Stream.fromIterable(
            Array.from(
              { length: Math.ceil(bytes.length / (8 << 20)) },
              (_, i) => bytes.subarray(i * (8 << 20), (i + 1) * (8 << 20))
            )
          )
          const part = yield* store.putPart(key, upload, 1, chunks, bytes.length)
          yield* store.completeMultipartUpload(key, upload, [{ partNumber: 1, etag: part.etag }])
        }).pipe(Effect.provideService(BlobStore, store))
      )
      await db.query(
        "INSERT INTO cas_blobs (digest, size_bytes, storage_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [digest, bytes.length, casKey(digest)]
      )
      return { digest, hex, size: bytes.length }
    }
    const diskBytes = randomBytes(SIZE_MIB * 1024 * 1024)
    const metaBytes = randomBytes(64 * 1024)
    const disk = await seed(diskBytes)
    const meta = await seed(metaBytes)

    // Publish it (seven versions citing the same blobs): each job's incus_index step hashes
    // both blobs from the store (figure d); the first version is also the download (a).
    type Step = { name: string; started_at: string; finished_at?: string }
    await api("POST", "/v1/images", { name: "bench" })
    const indexRuns: Array<number> = []
    let artifactId = ""
    const versions = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"]
    for (const version of versions) {
      await api("POST", "/v1/images/bench/versions", { version })
      const artifact = await api("POST", `/v1/images/bench/versions/${version}/artifacts`, {
        operating_system: "linux",
        architecture: "x86_64",
        format: "qcow2",
        primary_blob_digest: disk.digest,
        primary_blob_size_bytes: disk.size,
        primary_media_type: "application/x-qemu-disk"
      })
      artifactId ||= String(artifact["id"])
      await api("POST", `/v1/images/bench/versions/${version}/artifacts/${artifact["id"]}/attachments`, {
        name: "incus.tar.xz",
        media_type: "application/x-incus-metadata",
        blob_digest: meta.digest,
        blob_size_bytes: meta.size
      })
      const job = await api("POST", `/v1/images/bench/versions/${version}/publish`)
      let finished: Record<string, unknown> = job
      while (finished["state"] !== "succeeded") {
        if (finished["state"] === "failed") throw new Error(`publish failed: ${JSON.stringify(finished)}`)
        await new Promise((r) => setTimeout(r, 50))
        finished = await api("GET", `/v1/publish-jobs/${job["id"]}`)
      }
      const step = (finished["steps"] as ReadonlyArray<Step>).find((s) => s.name === "incus_index")!
      // The first two publishes warm the JIT and the page cache; steady state is measured.
      if (versions.indexOf(version) >= 2) indexRuns.push(Date.parse(step.finished_at!) - Date.parse(step.started_at))
    }
    const indexMs = median(indexRuns)
    const hashedBytes = disk.size + meta.size

    // (d) baselines: sha256 of the same bytes read directly from the store (1 MiB file
    // reads, or GETs from the S3 server), and from memory.
    const directBytes = (key: string): NodeJS.ReadableStream | Promise<http.IncomingMessage> => {
      const source = directSource(key)
      if (source.mode === "file") return createReadStream(source.path, { highWaterMark: 1024 * 1024 })
      return new Promise((resolve, reject) => http.get(source.url, resolve).on("error", reject))
    }
    const fileHashRuns: Array<number> = []
    for (let i = 0; i < 5; i++) {
      const started = performance.now()
      const hash = createHash("sha256")
      for (const key of [casKey(meta.digest), casKey(disk.digest)]) {
        const bytes = await directBytes(key)
        await new Promise<void>((resolve, reject) => {
          bytes.on("data", (c: Buffer) => hash.update(c))
          bytes.on("end", resolve)
          bytes.on("error", reject)
        })
      }
      hash.digest()
      fileHashRuns.push(performance.now() - started)
    }
    const fileHashMs = median(fileHashRuns)
    const memoryHashMs = (() => {
      const started = performance.now()
      createHash("sha256").update(metaBytes).update(diskBytes).digest()
      return performance.now() - started
    })()

    // (a) downloads: through imgsrv vs the same object read directly from the store, vs a
    // bare Node HTTP server sending the same bytes from the same source (file or S3 GET).
    const downloadPath = `/v1/images/bench/versions/1.0/artifacts/${artifactId}/download`
    const diskSource = directSource(casKey(disk.digest))
    const bare = http.createServer((_req, res) => {
      res.writeHead(200, { "content-length": String(disk.size), "content-type": "application/octet-stream" })
      void Promise.resolve(directBytes(casKey(disk.digest))).then((bytes) => bytes.pipe(res))
    })
    const barePort = await listen(bare)
    type Timed = { bytes: number; ms: number }
    const runs = { imgsrv: [] as Array<number>, direct: [] as Array<number>, bareHttp: [] as Array<number> }
    for (let i = 0; i < 4; i++) {
      const viaImgsrv = await client<Timed>({ mode: "download", url: `${base}${downloadPath}` })
      const direct = await client<Timed>(diskSource)
      const viaBare = await client<Timed>({ mode: "download", url: `http://127.0.0.1:${barePort}/` })
      if (viaImgsrv.bytes !== disk.size || direct.bytes !== disk.size || viaBare.bytes !== disk.size) {
        throw new Error("short read")
      }
      if (i === 0) continue // warm-up: page cache, JIT
      runs.imgsrv.push(mibPerSecond(disk.size, viaImgsrv.ms))
      runs.direct.push(mibPerSecond(disk.size, direct.ms))
      runs.bareHttp.push(mibPerSecond(disk.size, viaBare.ms))
    }
    await new Promise((r) => bare.close(r))

    // (b) manifest GETs vs a bare handler returning a same-size JSON body.
    const manifestPath = "/v1/images/bench/versions/1.0"
    const manifestBody = await fetch(`${base}${manifestPath}`).then((r) => r.arrayBuffer())
    type Load = { ok: number; failed: number; ms: number }
    const loadRun = (url: string) =>
      wrk !== undefined
        ? wrkRun(wrk, url)
        : client<Load>({ mode: "load", url, connections: CONNECTIONS, seconds: SECONDS, warmupSeconds: 1 })
    const manifestLoad = await loadRun(`${base}${manifestPath}`)
    // The spine's own ceiling on this machine: a route with no body and no database.
    const healthzLoad = await loadRun(`${base}/healthz`)
    const jsonServer = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(manifestBody.byteLength) })
      res.end(Buffer.from(manifestBody))
    })
    const jsonPort = await listen(jsonServer)
    const bareLoad = await loadRun(`http://127.0.0.1:${jsonPort}/`)
    await new Promise((r) => jsonServer.close(r))
    const rps = (l: Load) => l.ok / (l.ms / 1000)

    // (c) images.json with 1,000 published eligible versions (rows written with SQL: the
    // projection is what incus_index would store). The cache renders once per catalog
    // generation (streams/cache.ts); the first GET waits for that render.
    await db.query("BEGIN")
    const imageId = randomUUID()
    await db.query("INSERT INTO images (id, name, display_name) VALUES ($1, 'fleet', 'Fleet')", [imageId])
    for (let i = 0; i < VERSIONS; i++) {
      const versionId = randomUUID()
      const artifactId = randomUUID()
      const attachmentId = randomUUID()
      const version = `2026.${String(i).padStart(4, "0")}`
      await db.query("INSERT INTO image_versions (id, image_id, version) VALUES ($1, $2, $3)", [
        versionId,
        imageId,
        version
      ])
      await db.query(
        `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
           primary_blob_digest, primary_blob_size_bytes, primary_media_type)
         VALUES ($1, $2, 'linux', 'x86_64', 'qcow2', $3, $4, 'application/x-qemu-disk')`,
        [artifactId, versionId, disk.digest, disk.size]
      )
      await db.query(
        `INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
         VALUES ($1, $2, 'incus.tar.xz', 'application/x-incus-metadata', $3, $4)`,
        [attachmentId, artifactId, meta.digest, meta.size]
      )
      await db.query("UPDATE image_versions SET state = 'publishing' WHERE id = $1", [versionId])
      const prefix = `v1/images/fleet/versions/${version}/artifacts/${artifactId}`
      await db.query(
        `INSERT INTO incus_projection_items (artifact_id, version_id, metadata_attachment_id, metadata_path, root_path,
           metadata_sha256, metadata_size_bytes, root_sha256, root_size_bytes, combined_sha256, root_ftype)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'disk-kvm.img')`,
        [
          artifactId,
          versionId,
          attachmentId,
          `${prefix}/attachments/${attachmentId}/download/incus.tar.xz`,
          `${prefix}/download/disk.qcow2`,
          meta.hex,
          meta.size,
          disk.hex,
          disk.size,
          createHash("sha256").update(versionId).digest("hex")
        ]
      )
      await db.query("UPDATE image_versions SET state = 'published', published_at = now() WHERE id = $1", [versionId])
      if (i % 10 === 0) {
        await db.query("INSERT INTO aliases (id, image_id, alias, version_id) VALUES ($1, $2, $3, $4)", [
          randomUUID(),
          imageId,
          `a${i}`,
          versionId
        ])
      }
    }
    await db.query("COMMIT")
    const renders: Array<number> = []
    let documentBytes = 0
    for (let i = 0; i < 33; i++) {
      const started = performance.now()
      const res = await fetch(`${base}/streams/v1/images.json`)
      const body = await res.arrayBuffer()
      const ms = performance.now() - started
      documentBytes = body.byteLength
      if (i >= 3) renders.push(ms)
    }
    const products = Object.keys(
      (JSON.parse(await fetch(`${base}/streams/v1/images.json`).then((r) => r.text())) as { products: object }).products
    ).length

    await db.end()
    await Effect.runPromise(Scope.close(storeScope, Exit.void))
    await app.dispose()

    const a = median(runs.imgsrv) / median(runs.direct)
    const b = rps(manifestLoad) / rps(bareLoad)
    const c = median(renders)
    const dMiB = mibPerSecond(hashedBytes, indexMs)
    const d = dMiB / mibPerSecond(hashedBytes, fileHashMs)
    const verdict = (ok: boolean) => (ok ? "PASS" : "MISS")
    out("")
    out(
      `(a) download ${SIZE_MIB} MiB artifact: imgsrv ${median(runs.imgsrv).toFixed(0)} MiB/s, ` +
        `direct ${STORE === "s3" ? "GET from the S3 server" : "file read"} ${
          median(runs.direct).toFixed(0)
        } MiB/s → ratio ${a.toFixed(2)} (target ≥ 0.9) ${verdict(a >= 0.9)}`
    )
    out(
      `    context: bare Node HTTP server piping the same source ${
        median(runs.bareHttp).toFixed(0)
      } MiB/s → imgsrv/bare-http ` +
        `${(median(runs.imgsrv) / median(runs.bareHttp)).toFixed(2)}`
    )
    out(
      `(b) GET ${manifestPath} (${manifestBody.byteLength} B): imgsrv ${rps(manifestLoad).toFixed(0)} req/s, ` +
        `bare handler ${rps(bareLoad).toFixed(0)} req/s → ratio ${b.toFixed(2)} (target ≥ 0.5) ${verdict(b >= 0.5)}` +
        ` [failures ${manifestLoad.failed}/${bareLoad.failed}]`
    )
    out(
      `    context: GET /healthz through the same HTTP stack ${rps(healthzLoad).toFixed(0)} req/s → ` +
        `ratio ${(rps(healthzLoad) / rps(bareLoad)).toFixed(2)}; manifest/healthz ${
          (rps(manifestLoad) / rps(healthzLoad)).toFixed(2)
        }`
    )
    out(
      `(c) images.json with ${VERSIONS} published eligible versions (${products} products, ${documentBytes} B): ` +
        `median ${c.toFixed(1)} ms over ${renders.length} GETs (target < 50 ms) ${verdict(c < 50)}`
    )
    out(
      `(d) incus_index over ${(hashedBytes / 1024 / 1024).toFixed(1)} MiB: median ${indexMs} ms of [${
        indexRuns.join(", ")
      }] = ` +
        `${dMiB.toFixed(0)} MiB/s; ` +
        `sha256 of the same bytes read directly ${mibPerSecond(hashedBytes, fileHashMs).toFixed(0)} MiB/s → ratio ${
          d.toFixed(2)
        } ` +
        `(target ≥ 0.9) ${verdict(d >= 0.9)}`
    )
    out(
      `    context: sha256 of the same bytes in memory ${mibPerSecond(hashedBytes, memoryHashMs).toFixed(0)} MiB/s → ` +
        `ratio ${(dMiB / mibPerSecond(hashedBytes, memoryHashMs)).toFixed(2)}`
    )
  } finally {
    await Effect.runPromise(Scope.close(pgScope, Exit.void))
    await s3?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

runBench(main)
