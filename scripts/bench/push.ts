/**
 * Push benchmark (issue 13). Starts imgsrv as a child process (embedded PostgreSQL,
 * filesystem store, in a temporary data directory) and, in this one run, uploads two
 * different random files of the same size (default 1 GiB):
 *
 *   baseline  what the curl flow of docs/publishers.md does: `sha256sum`, begin, ONE part with
 *             `curl --upload-file` (streamed), complete, wait until the server has verified it;
 *   imgsrv    `imgsrv push --no-publish --concurrency 4` (the package's bin, as a user runs it).
 *
 * It prints the ratios baseline / imgsrv (≥ 1.0: the CLI is not slower than one stream) for
 * the whole flow and for the transfer alone (the curl PUT vs the CLI's first part to its
 * `uploaded` event), and the CLI's peak RSS (VmHWM; goal < 150 MiB). No assertions.
 *
 *   npx tsx scripts/bench/push.ts [--size-mib 1024] [--concurrency 4] [--repeat 1]
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmod, open, readFile, rm } from "node:fs/promises"
import { mkdtemp } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { freePort, waitForStatus, writerToken } from "../../test/support/process.js"

const MiB = 1024 * 1024
const root = fileURLToPath(new URL("../..", import.meta.url))
const args = process.argv.slice(2)
const argValue = (name: string, fallback: string) => {
  const at = args.indexOf(name)
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : fallback
}
const sizeMiB = Number(argValue("--size-mib", "1024"))
const concurrency = argValue("--concurrency", "4")
const repeat = Number(argValue("--repeat", "1"))
const say = (line: string) => process.stdout.write(`${line}\n`)
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`
const run = promisify(execFile)

/** A file of `size` random bytes, written in 64 MiB chunks (never held whole). */
const randomFile = async (file: string, size: number) => {
  const handle = await open(file, "w")
  const chunk = 64 * MiB
  for (let at = 0; at < size; at += chunk) await handle.write(randomBytes(Math.min(chunk, size - at)))
  await handle.close()
}

const work = await mkdtemp(path.join(tmpdir(), "imgsrv-bench-push-"))
// Run as root, embedded PostgreSQL runs as "postgres", which must be able to enter the data dir.
await chmod(work, 0o755)
const port = await freePort()
const api = `http://127.0.0.1:${port}`
let server: ChildProcess | undefined
try {
  say(`push benchmark: ${sizeMiB} MiB, concurrency ${concurrency}, filesystem store, ${repeat} run(s)`)
  server = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: root,
    env: {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: process.env["HOME"] ?? "/tmp",
      IMGSRV_DATA_DIR: path.join(work, "data"),
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_VERBOSITY: "warn",
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms"
    },
    stdio: ["ignore", "pipe", "inherit"]
  })
  let banner = ""
  server.stdout!.setEncoding("utf8").on("data", (chunk: string) => (banner += chunk))
  await waitForStatus(`${api}/healthz`, 204, 120_000)
  while (!/imgsrv_at_/.test(banner)) await new Promise((resolve) => setTimeout(resolve, 100))
  const token = await writerToken(api, banner)

  // The compiled form (what the container image runs), built inside the checkout so that it
  // resolves the same node_modules.
  const dist = path.join(root, "node_modules", ".cache", "imgsrv-bench-push-dist")
  await run(process.execPath, [
    path.join(root, "node_modules", "typescript", "bin", "tsc"),
    "-p",
    "tsconfig.build.json",
    "--outDir",
    dist
  ], { cwd: root })

  /** `imgsrv push --no-publish` of `file` through `command`, its time, transfer time and peak RSS. */
  const pushFile = async (file: string, ref: string, command: ReadonlyArray<string>) => {
    const c0 = performance.now()
    const child = spawn(process.execPath, [
      ...command,
      "push",
      ref,
      "--disk",
      file,
      "--format",
      "raw",
      "--no-publish",
      "--json",
      "--concurrency",
      concurrency
    ], {
      cwd: root,
      env: {
        PATH: process.env["PATH"] ?? "/usr/bin:/bin",
        HOME: work,
        IMGSRV_URL: api,
        IMGSRV_TOKEN: token,
        IMGSRV_STATE_DIR: path.join(work, "state")
      },
      stdio: ["ignore", "pipe", "inherit"]
    })
    let hashed = 0
    let uploaded = 0
    let output = ""
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
      // The first part event comes when the first part is done: parts started one part earlier.
      if (hashed === 0 && chunk.includes("\"event\":\"part\"")) hashed = performance.now()
      if (uploaded === 0 && chunk.includes("\"event\":\"uploaded\"")) uploaded = performance.now()
    })
    let peakKiB = 0
    const sampler = setInterval(() => {
      readFile(`/proc/${child.pid}/status`, "utf8").then((status) => {
        peakKiB = Math.max(peakKiB, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0))
      }, () => {})
    }, 50)
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve))
    clearInterval(sampler)
    if (code !== 0) throw new Error(`imgsrv push exited ${code}: ${output}`)
    return { ms: performance.now() - c0, transferMs: uploaded - hashed, peakMiB: peakKiB / 1024 }
  }

  const ratios: Array<
    Record<"total" | "transfer" | "rss" | "compiledTotal" | "compiledTransfer" | "compiledRss", number>
  > = []
  for (let i = 0; i < repeat; i++) {
    const a = path.join(work, `baseline-${i}.img`)
    const b = path.join(work, `push-${i}.img`)
    await randomFile(a, sizeMiB * MiB)
    await randomFile(b, sizeMiB * MiB)
    const c = path.join(work, `compiled-${i}.img`)
    await randomFile(c, sizeMiB * MiB)

    // Baseline: the curl flow of docs/publishers.md with one part.
    const t0 = performance.now()
    const digest = `sha256:${(await run("sha256sum", [a])).stdout.split(" ")[0]}`
    const auth = { authorization: `Bearer ${token}` }
    const begun = await (await fetch(`${api}/v1/uploads`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ expected_digest: digest, expected_size_bytes: sizeMiB * MiB })
    })).json() as { id: string }
    const p0 = performance.now()
    const { stdout: etag } = await run("curl", [
      "-sS",
      "--fail-with-body",
      "-X",
      "PUT",
      `${api}/v1/uploads/${begun.id}/parts/1`,
      "-H",
      `Authorization: Bearer ${token}`,
      "-H",
      "Content-Type: application/octet-stream",
      // `--upload-file` streams the file (PUT with Content-Length); `--data-binary @file`,
      // the curl flow's form, reads it into memory first and gives up on 1 GiB.
      "--upload-file",
      a
    ], { maxBuffer: MiB })
    const curlMs = performance.now() - p0
    await fetch(`${api}/v1/uploads/${begun.id}/complete`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({
        parts: [{ number: 1, etag: (JSON.parse(etag) as { etag: string }).etag, size_bytes: sizeMiB * MiB }]
      })
    })
    for (;;) {
      const state = (await (await fetch(`${api}/v1/uploads/${begun.id}`)).json() as { state: string }).state
      if (state === "ready") break
      if (state !== "completed" && state !== "ingesting") throw new Error(`baseline upload ${state}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const baselineMs = performance.now() - t0

    const fromCheckout = await pushFile(b, `bench:${i}`, [path.join(root, "bin", "imgsrv.mjs")])
    const compiled = await pushFile(c, `bench-compiled:${i}`, [path.join(dist, "cli", "main.js")])
    ratios.push({
      total: baselineMs / fromCheckout.ms,
      transfer: curlMs / fromCheckout.transferMs,
      rss: fromCheckout.peakMiB,
      compiledTotal: baselineMs / compiled.ms,
      compiledTransfer: curlMs / compiled.transferMs,
      compiledRss: compiled.peakMiB
    })
    say(`run ${i + 1}:`)
    say(
      `  baseline (sha256sum + begin + 1 curl PUT + complete + verified)   ${seconds(baselineMs)}, PUT ${
        seconds(curlMs)
      }`
    )
    for (const [name, r] of [["bin/imgsrv.mjs (tsx) ", fromCheckout], ["compiled (dist/)     ", compiled]] as const) {
      say(
        `  imgsrv push ${name} ${seconds(r.ms)} (parts ${seconds(r.transferMs)})  ratio whole flow ${
          (baselineMs / r.ms).toFixed(2)
        }, transfer ${(curlMs / r.transferMs).toFixed(2)}, peak RSS ${r.peakMiB.toFixed(0)} MiB`
      )
    }
    await rm(c)
    await rm(a)
    await rm(b)
  }
  const median = (key: keyof (typeof ratios)[number]) =>
    [...ratios.map((r) => r[key])].sort((x, y) => x - y)[Math.floor(ratios.length / 2)]!.toFixed(2)
  say(
    `summary (median of ${repeat}): baseline/imgsrv whole flow ${median("total")} (compiled ${
      median("compiledTotal")
    }), ` +
      `transfer ${median("transfer")} (compiled ${median("compiledTransfer")}); peak RSS ${median("rss")} MiB ` +
      `(compiled ${median("compiledRss")} MiB)`
  )
} finally {
  server?.kill("SIGTERM")
  await new Promise((resolve) => server === undefined ? resolve(undefined) : server.on("exit", resolve))
  await rm(work, { recursive: true, force: true })
  await rm(path.join(root, "node_modules", ".cache", "imgsrv-bench-push-dist"), { recursive: true, force: true })
}
