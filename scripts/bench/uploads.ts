/**
 * Upload benchmark (issue 3). Starts its own PostgreSQL (embedded), an S3 server (s3rver)
 * and imgsrv as a real child process per store, then prints, from this one run:
 *
 *   (a) upload of a 256 MiB file through imgsrv (4 parts of 64 MiB, sequential, incl. complete)
 *       vs a direct multipart upload of the same bytes to the same object store     target ≥ 0.8
 *   (b) sha256 of the same bytes from local disk vs promotion time of that upload    target ≥ 0.9
 *       (the streaming verification pass; also shown: promotion when hashed on the way in)
 *   (c) peak RSS of the server while 8 clients upload 256 MiB each concurrently      target < 200 MiB
 *   (d) event-loop lag p99 of the server while it verifies a 1 GiB upload            target < 50 ms
 *   (e) one 10 GiB upload end to end (filesystem store only): time and peak RSS
 *
 * Ratios are "baseline time / imgsrv time" (1.0 = as fast as the baseline).
 *
 *   npx tsx scripts/bench/uploads.ts [--store filesystem|s3|both] [--skip-10g] [--repeat 3]
 */
import { Effect, Exit, Redacted, Scope, Stream } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createHash, randomBytes, randomUUID } from "node:crypto"
import { createReadStream, readFileSync } from "node:fs"
import { chmod, mkdtemp, open, rm, writeFile } from "node:fs/promises"
import * as http from "node:http"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { makeFilesystemBlobStore } from "../../src/platform/storage/blob-store/filesystem.js"
import { stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { makeS3BlobStore } from "../../src/platform/storage/blob-store/s3.js"
import { startEmbeddedPostgres } from "../../src/platform/storage/embedded-postgres.js"
import { freePort } from "../../test/support/process.js"
import { type S3TestServer, startS3Server } from "../../test/support/s3-server.js"
import { mintWriterToken, runBench } from "./harness.js"

const MiB = 1024 * 1024
const PART = 64 * MiB
const CHUNK = MiB
const root = fileURLToPath(new URL("../..", import.meta.url))

// ---------------------------------------------------------------------------------------------
// arguments and output

const args = process.argv.slice(2)
const argValue = (name: string, fallback: string) => {
  const at = args.indexOf(name)
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : fallback
}
const storeArg = argValue("--store", "both")
const stores = storeArg === "both"
  ? (["filesystem", "s3"] as const)
  : ([storeArg] as ReadonlyArray<"filesystem" | "s3">)
const skip10g = args.includes("--skip-10g")
const repeat = Number(argValue("--repeat", "3"))
/** Which figures to measure, e.g. `--only a,c` (default: all). */
const only = new Set(argValue("--only", "a,b,c,d,e").split(","))
const verbose = args.includes("--verbose")
/** Extra node flags for the server, e.g. `--server-flags=--trace-gc` (diagnosis only). */
const serverFlags = args.filter((a) => a.startsWith("--server-flags=")).map((a) => a.slice("--server-flags=".length))

const say = (line: string) => process.stdout.write(`${line}\n`)
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`
const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`
const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// test data: every "file" is a list of 64 MiB parts; each part is one shared random 64 MiB
// buffer whose first 32 bytes are replaced by a tag unique to (file, part), served as slices
// (no copies), so many distinct gigabytes cost 64 MiB of memory in this process.

const base = randomBytes(PART)

interface TestFile {
  readonly name: string
  readonly parts: number
  /** The chunks of part `index` (0-based). */
  readonly chunks: (index: number) => Iterable<Uint8Array>
  readonly size: number
  digest: string
}

const makeFile = (name: string, parts: number): TestFile => {
  const chunks = function*(index: number) {
    yield createHash("sha256").update(`${name}/${index}`).digest()
    for (let offset = 32; offset < PART; offset += CHUNK) yield base.subarray(offset, Math.min(offset + CHUNK, PART))
  }
  const file: TestFile = { name, parts, chunks, size: parts * PART, digest: "" }
  const hash = createHash("sha256")
  for (let i = 0; i < parts; i++) for (const chunk of chunks(i)) hash.update(chunk)
  file.digest = `sha256:${hash.digest("hex")}`
  return file
}

// ---------------------------------------------------------------------------------------------
// the imgsrv process: the production build (`npm run build` → `node dist/main.js`, as in the
// container), with the lag probe preloaded.

interface Server {
  readonly child: ChildProcess
  readonly baseUrl: string
  readonly metricsUrl: string
  readonly lagFile: string
  readonly stop: () => Promise<void>
}

const startServer = async (env: Record<string, string>, dataDir: string): Promise<Server> => {
  const port = await freePort()
  const metricsPort = await freePort()
  const lagFile = path.join(dataDir, "lag.json")
  const child = spawn(
    process.execPath,
    // As the container and `npm start` run it (Dockerfile, package.json).
    ["--optimize-for-size", ...serverFlags, "--import", "./scripts/bench/lag-probe.mjs", "dist/main.js"],
    {
      cwd: root,
      stdio: ["ignore", verbose ? "inherit" : "ignore", "pipe"],
      env: {
        PATH: process.env["PATH"] ?? "/usr/bin:/bin",
        HOME: process.env["HOME"] ?? "/tmp",
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
        IMGSRV_DATA_DIR: dataDir,
        IMGSRV_VERBOSITY: "warn",
        IMGSRV_LOG_FORMAT: "json",
        IMGSRV_BENCH_LAG_FILE: lagFile,
        NODE_ENV: "production",
        ...env
      }
    }
  )
  let stderr = ""
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  const baseUrl = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  while (true) {
    if (child.exitCode !== null) throw new Error(`imgsrv exited during start-up:\n${stderr}`)
    const ready = await fetch(`${baseUrl}/readyz`).then((r) => r.status === 204, () => false)
    if (ready) break
    if (Date.now() > deadline) throw new Error(`imgsrv did not become ready:\n${stderr}`)
    await sleep(100)
  }
  return {
    child,
    baseUrl,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    lagFile,
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve))
      child.kill("SIGTERM")
      await exited
    }
  }
}

/** Peak RSS tracking: resets the kernel's high-water mark and samples VmRSS. */
const rssTracker = (pid: number) => {
  const status = () => readFileSync(`/proc/${pid}/status`, "utf8")
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status())?.[1] ?? "0") * 1024
  let peak = 0
  let timer: NodeJS.Timeout | undefined
  return {
    start: async () => {
      // "5" resets VmHWM (peak RSS) of the process (Linux ≥ 4.0).
      await writeFile(`/proc/${pid}/clear_refs`, "5").catch(() => undefined)
      peak = field("VmRSS")
      timer = setInterval(() => {
        peak = Math.max(peak, field("VmRSS"))
      }, 20)
    },
    stop: () => {
      clearInterval(timer)
      return Math.max(peak, field("VmHWM"))
    }
  }
}

/**
 * CPU seconds (user + system) a process has used, from /proc (clock ticks of 10 ms): with
 * wall time, it says whether a path is CPU-bound and where the CPU went (server or client).
 */
const processCpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()!.split(" ")
  // utime and stime are fields 14 and 15 of stat(5); after "comm)" they are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const ownCpuSeconds = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

/** Event-loop delay of the server since the previous call (see lag-probe.ts). */
const serverLag = async (server: Server) => {
  await rm(server.lagFile, { force: true })
  server.child.kill("SIGUSR2")
  for (let i = 0; i < 100; i++) {
    try {
      return JSON.parse(readFileSync(server.lagFile, "utf8")) as { p50: number; p99: number; max: number }
    } catch {
      await sleep(20)
    }
  }
  throw new Error("the lag probe did not answer")
}

/** One sample of a Prometheus series (summed over label sets matching `match`). */
const metric = async (server: Server, name: string, match = "") => {
  const text = await (await fetch(server.metricsUrl)).text()
  let total = 0
  for (const line of text.split("\n")) {
    if ((line.startsWith(`${name}{`) || line.startsWith(`${name} `)) && line.includes(match)) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1))
    }
  }
  return total
}

// ---------------------------------------------------------------------------------------------
// HTTP client (node:http, streaming with backpressure)

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

const request = (
  url: string,
  options: { method: string; token?: string; json?: unknown; chunks?: Iterable<Uint8Array>; length?: number }
): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string> = {}
    if (options.token) headers["authorization"] = `Bearer ${options.token}`
    const payload = options.json === undefined ? undefined : Buffer.from(JSON.stringify(options.json))
    if (payload) headers["content-length"] = String(payload.length)
    if (options.length !== undefined) headers["content-length"] = String(options.length)
    const req = http.request(url, { method: options.method, headers, agent }, (res) => {
      let body = ""
      res.setEncoding("utf8").on("data", (c: string) => (body += c)).on("end", () =>
        resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("error", reject)
    if (payload) {
      return void req.end(payload)
    }
    if (!options.chunks) {
      return void req.end()
    }
    const iterator = options.chunks[Symbol.iterator]()
    const pump = () => {
      while (true) {
        const next = iterator.next()
        if (next.done) {
          return void req.end()
        }
        if (!req.write(next.value)) {
          return void req.once("drain", pump)
        }
      }
    }
    pump()
  })

const ok = <T>(response: { status: number; body: string }, what: string): T => {
  if (response.status >= 300) throw new Error(`${what}: ${response.status} ${response.body}`)
  return JSON.parse(response.body) as T
}

/**
 * begin + parts (sequential) + complete through imgsrv; returns the upload id. `swapFirstTwo`
 * sends part 2 before part 1 (still one at a time), which makes the server fall back from
 * hashing on the way in to its streaming verification pass.
 */
const uploadThroughImgsrv = async (server: Server, token: string, file: TestFile, swapFirstTwo = false) => {
  const session = ok<{ id: string }>(
    await request(`${server.baseUrl}/v1/uploads`, {
      method: "POST",
      token,
      json: { expected_digest: file.digest, expected_size_bytes: file.size }
    }),
    "begin"
  )
  const parts: Array<{ number: number; etag: string; size_bytes: number }> = []
  const order = Array.from({ length: file.parts }, (_, i) => i)
  if (swapFirstTwo && file.parts > 1) order.splice(0, 2, 1, 0)
  for (const i of order) {
    const part = ok<{ etag: string }>(
      await request(`${server.baseUrl}/v1/uploads/${session.id}/parts/${i + 1}`, {
        method: "PUT",
        token,
        chunks: file.chunks(i),
        length: PART
      }),
      `part ${i + 1}`
    )
    parts.push({ number: i + 1, etag: part.etag, size_bytes: PART })
  }
  parts.sort((a, b) => a.number - b.number)
  ok(
    await request(`${server.baseUrl}/v1/uploads/${session.id}/complete`, { method: "POST", token, json: { parts } }),
    "complete"
  )
  return session.id
}

/**
 * Polls until `ready`. Gently (every 50 ms): promotion time is taken from the worker's own
 * histogram, and a tight poll would steal CPU from the verification it measures.
 */
const waitReady = async (server: Server, id: string) => {
  while (true) {
    const session = ok<{ state: string }>(
      await request(`${server.baseUrl}/v1/uploads/${id}`, { method: "GET" }),
      "status"
    )
    if (session.state === "ready") return
    if (session.state === "failed") throw new Error(`upload ${id} failed`)
    await sleep(50)
  }
}

// ---------------------------------------------------------------------------------------------
// baselines

/** The same multipart upload straight into the object store, with the driver imgsrv uses. */
const directUpload = (store: BlobStore["Type"], file: TestFile) =>
  Effect.gen(function*() {
    const key = stagingKey(randomUUID())
    const uploadId = yield* store.createMultipartUpload(key)
    const parts: Array<{ partNumber: number; etag: string }> = []
    for (let i = 0; i < file.parts; i++) {
      const part = yield* store.putPart(key, uploadId, i + 1, Stream.fromIterable(file.chunks(i)), PART)
      parts.push({ partNumber: i + 1, etag: part.etag })
    }
    yield* store.completeMultipartUpload(key, uploadId, parts)
    yield* store.delete(key)
  })

/** sha256 of the file read back from local disk (written first, so the page cache is warm as for imgsrv). */
const sha256FromDisk = async (file: TestFile, dir: string) => {
  const target = path.join(dir, `${file.name}.bin`)
  const handle = await open(target, "w")
  for (let i = 0; i < file.parts; i++) for (const chunk of file.chunks(i)) await handle.write(chunk)
  await handle.close()
  const started = performance.now()
  const hash = createHash("sha256")
  // 1 MiB reads, as the filesystem store reads: a baseline as fast as a plain read can be.
  for await (const chunk of createReadStream(target, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer)
  const elapsed = performance.now() - started
  await rm(target)
  if (`sha256:${hash.digest("hex")}` !== file.digest) throw new Error("baseline digest mismatch")
  return elapsed
}

// ---------------------------------------------------------------------------------------------
// one store

const benchStore = async (kind: "filesystem" | "s3", pg: { createDatabase: (name: string) => Promise<string> }) => {
  say(`\n=== ${kind} store ===`)
  const dataDir = await mkdtemp(path.join(tmpdir(), `imgsrv-bench-${kind}-`))
  let s3: S3TestServer | undefined
  let bucket = ""
  if (kind === "s3") {
    s3 = await startS3Server()
    bucket = `bench-${Date.now()}`
    await s3.createBucket(bucket)
  }
  const dbUrl = await pg.createDatabase(`bench_${kind}_${Date.now()}`)
  const env: Record<string, string> = { IMGSRV_POSTGRES_URL: dbUrl }
  if (s3) {
    Object.assign(env, {
      IMGSRV_S3_ENDPOINT: s3.endpoint,
      IMGSRV_S3_BUCKET: bucket,
      IMGSRV_S3_ACCESS_KEY_ID: s3.accessKeyId,
      IMGSRV_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      IMGSRV_S3_PATH_STYLE: "true"
    })
  }
  const server = await startServer(env, dataDir)
  const scope = Effect.runSync(Scope.make())
  try {
    const token = await mintWriterToken(dbUrl, 86_400_000)

    const direct = await Effect.runPromise(
      (kind === "s3"
        ? makeS3BlobStore({
          endpoint: s3!.endpoint,
          bucket,
          region: "",
          accessKeyId: s3!.accessKeyId,
          secretAccessKey: Redacted.make(s3!.secretAccessKey),
          useTls: false,
          pathStyle: true
        })
        : Effect.orDie(makeFilesystemBlobStore(path.join(dataDir, "direct-blobs")))).pipe(Scope.extend(scope))
    )

    if (verbose) {
      say(
        `    idle server: RSS ${mib(await metric(server, "process_resident_memory_bytes"))}, ` +
          `V8 heap used ${mib(await metric(server, "nodejs_heap_used_bytes"))}`
      )
    }

    // (a) and (b): 256 MiB, 4 × 64 MiB, `repeat` rounds, medians. Each round uploads the
    // file twice: in order (hashed on the way in), and with parts 1 and 2 swapped (the
    // server's fallback: one streaming verification pass over the staged object).
    if (only.has("a") || only.has("b")) {
      const through: Array<number> = []
      const throughSwapped: Array<number> = []
      const straight: Array<number> = []
      const promotedReceived: Array<number> = []
      const promotedStreamed: Array<number> = []
      const hashing: Array<number> = []
      // CPU seconds per upload: the server's and this process's (the client), and the direct path's.
      const serverCpu: Array<number> = []
      const clientCpu: Array<number> = []
      const directCpu: Array<number> = []
      const promotionSeconds = () => metric(server, "imgsrv_cas_promotion_duration_seconds_sum", "outcome=\"ready\"")
      for (let round = 0; round < repeat; round++) {
        const file = makeFile(`${kind}-a-${round}`, 4)
        const swapped = makeFile(`${kind}-a-${round}-swapped`, 4)
        let cpuBefore = ownCpuSeconds()
        let started = performance.now()
        await Effect.runPromise(directUpload(direct, file))
        straight.push(performance.now() - started)
        directCpu.push(ownCpuSeconds() - cpuBefore)

        let promotedBefore = await promotionSeconds()
        cpuBefore = ownCpuSeconds()
        const serverCpuBefore = processCpuSeconds(server.child.pid!)
        started = performance.now()
        let id = await uploadThroughImgsrv(server, token, file)
        through.push(performance.now() - started)
        serverCpu.push(processCpuSeconds(server.child.pid!) - serverCpuBefore)
        clientCpu.push(ownCpuSeconds() - cpuBefore)
        await waitReady(server, id)
        promotedReceived.push(((await promotionSeconds()) - promotedBefore) * 1000)

        promotedBefore = await promotionSeconds()
        started = performance.now()
        id = await uploadThroughImgsrv(server, token, swapped, true)
        throughSwapped.push(performance.now() - started)
        await waitReady(server, id)
        promotedStreamed.push(((await promotionSeconds()) - promotedBefore) * 1000)
        hashing.push(await sha256FromDisk(swapped, dataDir))
      }
      const list = (values: ReadonlyArray<number>) => values.map(seconds).join(", ")
      const a = median(straight) / median(through)
      const aSwapped = median(straight) / median(throughSwapped)
      const b = median(hashing) / median(promotedStreamed)
      const bReceived = median(hashing) / median(promotedReceived)
      say(
        `(a) 256 MiB upload (4 × 64 MiB, incl. complete): imgsrv ${seconds(median(through))} (${list(through)}); ` +
          `parts out of order (no hashing on the way in) ${seconds(median(throughSwapped))} (${
            list(throughSwapped)
          }); ` +
          `direct ${seconds(median(straight))} (${list(straight)})`
      )
      say(
        `    ratio direct/imgsrv = ${a.toFixed(2)}  (target ≥ 0.8) ${a >= 0.8 ? "OK" : "MISSED"}; ` +
          `without hashing on the way in ${aSwapped.toFixed(2)}`
      )
      say(
        `    CPU per upload (medians): through imgsrv — server ${median(serverCpu).toFixed(2)} s + client ` +
          `${median(clientCpu).toFixed(2)} s in ${seconds(median(through))} wall; direct ${
            median(directCpu).toFixed(2)
          } s in ${seconds(median(straight))} wall; load average ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`
      )
      say(
        `(b) promotion of 256 MiB, claim→ready in the worker: streaming pass ${seconds(median(promotedStreamed))} ` +
          `(${list(promotedStreamed)}); hashed on the way in ${seconds(median(promotedReceived))} (${
            list(promotedReceived)
          }); ` +
          `sha256 from disk ${seconds(median(hashing))} (${list(hashing)})`
      )
      say(
        `    ratio sha256/promotion = ${b.toFixed(2)} streaming pass  (target ≥ 0.9) ${b >= 0.9 ? "OK" : "MISSED"}; ` +
          `${bReceived.toFixed(1)} when hashed on the way in`
      )
    }

    // (c) 8 concurrent clients × 256 MiB.
    if (only.has("c")) {
      const files = Array.from({ length: 8 }, (_, i) => makeFile(`${kind}-c-${i}`, 4))
      const rss = rssTracker(server.child.pid!)
      await rss.start()
      const memory = { heap: 0, external: 0 }
      let sampling = verbose
      const sampler = (async () => {
        while (sampling) {
          memory.heap = Math.max(memory.heap, await metric(server, "nodejs_heap_used_bytes"))
          memory.external = Math.max(memory.external, await metric(server, "nodejs_external_memory_bytes"))
          await sleep(200)
        }
      })()
      const started = performance.now()
      const ids = await Promise.all(files.map((file) => uploadThroughImgsrv(server, token, file)))
      const uploaded = performance.now() - started
      await Promise.all(ids.map((id) => waitReady(server, id)))
      const peak = rss.stop()
      sampling = false
      await sampler
      say(
        `(c) 8 × 256 MiB concurrently: uploaded in ${seconds(uploaded)}, all ready after ${
          seconds(performance.now() - started)
        }, ` +
          `server peak RSS ${mib(peak)}  (target < 200 MiB) ${peak < 200 * MiB ? "OK" : "MISSED"}`
      )
      if (verbose) say(`    sampled peaks: V8 heap used ${mib(memory.heap)}, external ${mib(memory.external)}`)
    }

    // (d) event-loop lag while the server verifies 1 GiB by a streaming pass (parts 1 and 2
    // swapped: the worst case), and while it receives and hashes 1 GiB sent in order.
    if (only.has("d")) {
      /** Runs `work` while pinging /healthz every 10 ms; returns the server's lag and the pings. */
      const underWatch = async (work: () => Promise<void>) => {
        await serverLag(server) // starts the window
        const pings: Array<number> = []
        let watching = true
        const pinger = (async () => {
          while (watching) {
            const t = performance.now()
            await request(`${server.baseUrl}/healthz`, { method: "GET" })
            pings.push(performance.now() - t)
            await sleep(10)
          }
        })()
        const started = performance.now()
        await work()
        const elapsed = performance.now() - started
        watching = false
        await pinger
        return { lag: await serverLag(server), pings, elapsed }
      }
      const report = (what: string, watched: Awaited<ReturnType<typeof underWatch>>) =>
        `${what} (${seconds(watched.elapsed)}): server event-loop lag p50 ${watched.lag.p50.toFixed(1)} ms, ` +
        `p99 ${watched.lag.p99.toFixed(1)} ms, max ${watched.lag.max.toFixed(1)} ms  (target p99 < 50 ms) ` +
        `${watched.lag.p99 < 50 ? "OK" : "MISSED"}; /healthz p99 ${percentile(watched.pings, 99).toFixed(1)} ms ` +
        `over ${watched.pings.length} requests`

      const gib = makeFile(`${kind}-d`, 16)
      const id = await uploadThroughImgsrv(server, token, gib, true)
      say(`(d) ${report("verifying 1 GiB by a streaming pass", await underWatch(() => waitReady(server, id)))}`)
      const inOrder = makeFile(`${kind}-d-in-order`, 16)
      say(`    ${
        report(
          "receiving and hashing 1 GiB sent in order",
          await underWatch(async () => {
            await waitReady(server, await uploadThroughImgsrv(server, token, inOrder))
          })
        )
      }`)
    }

    // (e) 10 GiB end to end, filesystem only.
    if (kind === "filesystem" && !skip10g && only.has("e")) {
      const big = makeFile(`${kind}-e`, 160)
      const tracker = rssTracker(server.child.pid!)
      await tracker.start()
      const started = performance.now()
      const bigId = await uploadThroughImgsrv(server, token, big)
      const uploadedAt = performance.now()
      await waitReady(server, bigId)
      const peakBig = tracker.stop()
      say(
        `(e) 10 GiB end to end: ${seconds(performance.now() - started)} ` +
          `(parts + complete ${seconds(uploadedAt - started)}, promotion ${
            seconds(performance.now() - uploadedAt)
          }), ` +
          `server peak RSS ${mib(peakBig)}`
      )
    }
  } finally {
    await server.stop()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await s3?.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------

const build = () =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [
      path.join(root, "node_modules/typescript/bin/tsc"),
      "-p",
      "tsconfig.build.json"
    ], {
      cwd: root,
      stdio: "inherit"
    })
    child.on(
      "exit",
      (code) => (code === 0 ? resolve() : reject(new Error(`tsc -p tsconfig.build.json exited ${code}`)))
    )
  })

const main = async () => {
  say(`imgsrv upload benchmark — node ${process.version}, ${stores.join(" + ")}, ${repeat} rounds for (a)/(b)`)
  await build()
  const pgDir = await mkdtemp(path.join(tmpdir(), "imgsrv-bench-pg-"))
  await chmod(pgDir, 0o755)
  const scope = Effect.runSync(Scope.make())
  try {
    const pg = await Effect.runPromise(
      startEmbeddedPostgres(path.join(pgDir, "postgres"), { database: "postgres" }).pipe(Scope.extend(scope))
    )
    const createDatabase = (name: string) => Effect.runPromise(pg.createDatabase(name).pipe(Effect.map(Redacted.value)))
    for (const kind of stores) await benchStore(kind, { createDatabase })
  } finally {
    agent.destroy()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(pgDir, { recursive: true, force: true })
  }
}

runBench(main)
