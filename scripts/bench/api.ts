/**
 * The uncached API path (issue 15): `npx tsx scripts/bench/api.ts [--seconds 5]`.
 *
 * Starts a real imgsrv in this process (embedded PostgreSQL, filesystem store), seeds one
 * published version with four artifacts by SQL, and measures from the same run, with `wrk`:
 *
 *  - `GET /v1/images/{name}/versions/{version}/artifacts` through imgsrv (uncached: every
 *    request reads PostgreSQL);
 *  - a minimal Effect `HttpApi` server with the same route and success schema returning
 *    the same artifacts from memory (no middleware, no database)          — target ≥ 0.5×;
 *  - a bare Node `http` handler sending the same bytes (reported beside it).
 *
 * It also reads CPU per request (this process and PostgreSQL's processes, from /proc), then
 * profiles imgsrv under the same load (V8 CPU profiler, in this process) and prints where the
 * time goes, by owner and by function (profile.ts); `--save-profile FILE` keeps the profile.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Exit, Layer, ManagedRuntime, Redacted, Schema, Scope } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import * as http from "node:http"
import { Session } from "node:inspector/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import pg from "pg"
import { ArtifactList } from "../../src/catalog/schema.js"
import { startEmbeddedPostgres } from "../../src/platform/storage/embedded-postgres.js"
import { runBench, startInProcessApp } from "./harness.js"
import { bareServer, findWrk, listen, type Load, out, rps, wrkRun } from "./load.js"
import { printAnalysis } from "./profile.js"

const SECONDS = (() => {
  const i = process.argv.indexOf("--seconds")
  return i === -1 ? 5 : Number(process.argv[i + 1])
})()
const CONNECTIONS = 32

const hex = () => randomBytes(32).toString("hex")

/** One published version `bench`/`1.0` with four artifacts, written as the publish workflow would. */
const seed = async (db: pg.Client) => {
  const disk = hex()
  await db.query("INSERT INTO cas_blobs (digest, size_bytes, storage_key) VALUES ($1, 1048576, $2)", [
    `sha256:${disk}`,
    `cas/sha256/${disk.slice(0, 2)}/${disk.slice(2, 4)}/${disk}`
  ])
  const imageId = randomUUID()
  const versionId = randomUUID()
  await db.query("INSERT INTO images (id, name) VALUES ($1, 'bench')", [imageId])
  await db.query("INSERT INTO image_versions (id, image_id, version) VALUES ($1, $2, '1.0')", [versionId, imageId])
  for (
    const [architecture, format] of [["x86_64", "qcow2"], ["aarch64", "qcow2"], ["x86_64", "raw"], [
      "aarch64",
      "raw"
    ]]
  ) {
    await db.query(
      `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
         primary_blob_digest, primary_blob_size_bytes, primary_media_type)
       VALUES ($1, $2, 'linux', $3, $4, $5, 1048576, 'application/octet-stream')`,
      [randomUUID(), versionId, architecture, format, `sha256:${disk}`]
    )
  }
  await db.query("UPDATE image_versions SET state = 'publishing' WHERE id = $1", [versionId])
  await db.query("UPDATE image_versions SET state = 'published', published_at = now() WHERE id = $1", [versionId])
}

/** CPU seconds (user + system) of a process, from /proc (clock ticks of 10 ms). */
const cpuSecondsOf = (pid: number): number => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()!.split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0 // exited meanwhile
  }
}

/** The embedded PostgreSQL: its postmaster (command line names `dataDir`) and its children. */
const postgresPids = (dataDir: string): ReadonlyArray<number> => {
  const pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number)
  const parentOf = (pid: number) => {
    try {
      return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()!.split(" ")[1])
    } catch {
      return -1
    }
  }
  const cmdline = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8")
    } catch {
      return ""
    }
  }
  const postmaster = pids.find((pid) => cmdline(pid).includes(dataDir) && cmdline(pid).includes("postgres"))
  return postmaster === undefined ? [] : [postmaster, ...pids.filter((pid) => parentOf(pid) === postmaster)]
}

/**
 * CPU per request of one wrk run: this process (the servers in it) and PostgreSQL. Unlike
 * req/s, CPU per request hardly moves when other work shares the machine.
 */
const cpuPerRequest = async (
  run: (onMeasuredRun: () => void) => Promise<Load>,
  dataDir: string
) => {
  let ownBefore = 0
  let pgBefore = 0
  let pids: ReadonlyArray<number> = []
  const load = await run(() => {
    pids = postgresPids(dataDir)
    const usage = process.cpuUsage()
    ownBefore = (usage.user + usage.system) / 1e6
    pgBefore = pids.reduce((sum, pid) => sum + cpuSecondsOf(pid), 0)
  })
  const usage = process.cpuUsage()
  const requests = Math.max(load.ok + load.failed, 1)
  return {
    load,
    nodeMicros: (((usage.user + usage.system) / 1e6 - ownBefore) / requests) * 1e6,
    postgresMicros: ((pids.reduce((sum, pid) => sum + cpuSecondsOf(pid), 0) - pgBefore) / requests) * 1e6
  }
}

const main = async () => {
  const wrk = findWrk()
  if (wrk === undefined) throw new Error("this benchmark needs wrk (apt-get install wrk)")
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-bench-api-"))
  await chmod(dir, 0o755)
  const pgScope = Effect.runSync(Scope.make())
  try {
    const postgres = await Effect.runPromise(
      startEmbeddedPostgres(path.join(dir, "postgres"), { database: "postgres" }).pipe(Scope.extend(pgScope))
    )
    const dbUrl = Redacted.value(postgres.url)
    const { app, base } = await startInProcessApp(dir, dbUrl)
    const db = new pg.Client({ connectionString: dbUrl })
    await db.connect()
    await seed(db)
    await db.end()

    const route = "/v1/images/bench/versions/1.0/artifacts"
    const response = await fetch(`${base}${route}`)
    if (response.status !== 200) throw new Error(`${route}: ${response.status}`)
    const body = new Uint8Array(await response.arrayBuffer())
    const artifacts = Schema.decodeUnknownSync(ArtifactList)(JSON.parse(new TextDecoder().decode(body)))

    // The minimal HttpApi server: same route, same schema, the value from memory.
    const MinimalApi = HttpApi.make("minimal").add(
      HttpApiGroup.make("g").add(
        HttpApiEndpoint.get("list", "/v1/images/:name/versions/:version/artifacts").addSuccess(ArtifactList)
      )
    )
    const minimalServer = http.createServer()
    const minimalPort = await listen(minimalServer)
    const minimal = ManagedRuntime.make(
      HttpApiBuilder.serve().pipe(
        Layer.provide(HttpApiBuilder.api(MinimalApi)),
        Layer.provide(
          HttpApiBuilder.group(MinimalApi, "g", (handlers) => handlers.handle("list", () => Effect.succeed(artifacts)))
        ),
        Layer.provide(NodeHttpServer.layer(() => minimalServer, { port: minimalPort })),
        Layer.provide(Layer.effectDiscard(Effect.sync(() => minimalServer.close())))
      )
    )
    await minimal.runPromise(Effect.void)
    const bare = await bareServer(body, { "content-type": "application/json" })

    const options = { connections: CONNECTIONS, seconds: SECONDS }
    const measured = (url: string) =>
      cpuPerRequest((onMeasuredRun) => wrkRun(wrk, url, { ...options, onMeasuredRun }), dir)
    const imgsrvCpu = await measured(`${base}${route}`)
    const minimalCpu = await measured(`http://127.0.0.1:${minimalPort}${route}`)
    const bareCpu = await measured(bare.url)
    const healthzCpu = await measured(`${base}/healthz`)
    const viaImgsrv = imgsrvCpu.load
    const viaMinimal = minimalCpu.load
    const viaBare = bareCpu.load
    const healthz = healthzCpu.load

    out(`imgsrv uncached API path — wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, body ${body.byteLength} B`)
    const ratio = rps(viaImgsrv) / rps(viaMinimal)
    out(
      `  GET ${route}: imgsrv ${rps(viaImgsrv).toFixed(0)} req/s, minimal HttpApi ${
        rps(viaMinimal).toFixed(0)
      } req/s → ratio ${ratio.toFixed(2)} (target ≥ 0.5) ${ratio >= 0.5 ? "PASS" : "MISS"} ` +
        `[failures ${viaImgsrv.failed}/${viaMinimal.failed}]`
    )
    out(
      `  bare Node ${rps(viaBare).toFixed(0)} req/s → imgsrv/bare ${(rps(viaImgsrv) / rps(viaBare)).toFixed(2)}, ` +
        `minimal HttpApi/bare ${(rps(viaMinimal) / rps(viaBare)).toFixed(2)}`
    )
    out(
      `  context: GET /healthz through imgsrv's stack (no database) ${rps(healthz).toFixed(0)} req/s → ` +
        `${(rps(healthz) / rps(viaMinimal)).toFixed(2)}× the minimal HttpApi route`
    )

    const micros = (value: number) => `${value.toFixed(0)} µs`
    out(
      `  CPU per request (this process + PostgreSQL; robust to other load): imgsrv ${
        micros(imgsrvCpu.nodeMicros)
      } + PostgreSQL ${micros(imgsrvCpu.postgresMicros)}; minimal HttpApi ${micros(minimalCpu.nodeMicros)}; ` +
        `bare Node ${micros(bareCpu.nodeMicros)}; /healthz through imgsrv ${micros(healthzCpu.nodeMicros)} → ` +
        `minimal/imgsrv (node CPU only) ${(minimalCpu.nodeMicros / imgsrvCpu.nodeMicros).toFixed(2)}, ` +
        `minimal/(imgsrv + PostgreSQL) ${
          (minimalCpu.nodeMicros / (imgsrvCpu.nodeMicros + imgsrvCpu.postgresMicros)).toFixed(2)
        }; load average ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`
    )

    // Where imgsrv's time goes under the same load.
    const session = new Session()
    session.connect()
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 200 })
    await session.post("Profiler.start")
    await wrkRun(wrk, `${base}${route}`, options)
    const { profile } = await session.post("Profiler.stop")
    session.disconnect()
    const saveAt = process.argv.indexOf("--save-profile")
    if (saveAt !== -1) await writeFile(process.argv[saveAt + 1]!, JSON.stringify(profile))
    out("  profile of imgsrv under that load:")
    printAnalysis(profile, 20, out)

    await bare.close()
    await minimal.dispose()
    await app.dispose()
  } finally {
    await Effect.runPromise(Scope.close(pgScope, Exit.void))
    await rm(dir, { recursive: true, force: true })
  }
}

runBench(main)
