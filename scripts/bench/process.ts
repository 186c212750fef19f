/**
 * The process itself (issue 15): `npx tsx scripts/bench/process.ts [--rounds 3]`.
 *
 * Starts one embedded PostgreSQL, then imgsrv as a child process several times in each of
 * these ways, and prints the median time from spawn to `/readyz` 204 and the idle RSS of
 * the whole process tree (every Node process the command starts; PostgreSQL is outside):
 *
 *  - `tsx src/main.ts` — what `npm start` ran before (tsx CLI + node with tsx's loader);
 *  - `npm start` — now `node --optimize-for-size scripts/start.mjs` (transpiles src/ to dist/
 *    when it changed, then loads dist/main.js in the same process);
 *  - `node dist/main.js` without V8 flags, and `node --optimize-for-size dist/main.js`, the
 *    container's command.
 *
 * Target: idle RSS < 130 MiB.
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { startEmbeddedPostgres } from "../../src/platform/storage/embedded-postgres.js"
import { freePort } from "../../test/support/process.js"
import { runBench } from "./harness.js"
import { median, out } from "./load.js"

const root = fileURLToPath(new URL("../..", import.meta.url))
const ROUNDS = (() => {
  const i = process.argv.indexOf("--rounds")
  return i === -1 ? 3 : Number(process.argv[i + 1])
})()
const MiB = 1024 * 1024
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The pid and every descendant of it (from /proc). */
const tree = (pid: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)])
    } catch {
      // The process ended while we looked.
    }
  }
  const all: Array<number> = []
  const visit = (p: number) => {
    all.push(p)
    for (const c of children.get(p) ?? []) visit(c)
  }
  visit(pid)
  return all
}

const rssOf = (pid: number) => {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? "0") * 1024
  } catch {
    return 0
  }
}

/** `--flags "<node flags>;<node flags>"`: extra ways of starting, for exploring V8 settings. */
const EXTRA = (() => {
  const i = process.argv.indexOf("--flags")
  return i === -1 ? [] : process.argv[i + 1]!.split(";").filter((f) => f.trim() !== "")
})()

const MODES: ReadonlyArray<{ readonly name: string; readonly command: ReadonlyArray<string> }> = [
  { name: "tsx src/main.ts (npm start before)", command: [path.join(root, "node_modules/.bin/tsx"), "src/main.ts"] },
  { name: "npm start now", command: ["npm", "start", "--silent"] },
  { name: "node dist/main.js (no V8 flag)", command: [process.execPath, "dist/main.js"] },
  {
    name: "node --optimize-for-size dist/main.js (container)",
    command: [process.execPath, "--optimize-for-size", "dist/main.js"]
  },
  ...EXTRA.map((flags) => ({
    name: `node ${flags} dist/main.js`,
    command: [process.execPath, ...flags.split(" "), "dist/main.js"]
  }))
]

const run = async (command: ReadonlyArray<string>, env: Record<string, string>) => {
  const port = await freePort()
  const started = performance.now()
  const child: ChildProcess = spawn(command[0]!, command.slice(1), {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: process.env["HOME"] ?? "/tmp",
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_VERBOSITY: "warn",
      ...env
    }
  })
  let stderr = ""
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
  while (!(await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 204, () => false))) {
    if (child.exitCode !== null) throw new Error(`imgsrv exited:\n${stderr}`)
    await sleep(25)
  }
  const readyMs = performance.now() - started
  // Idle: start-up work (first render, workers' first polls) is over and V8's memory reducer
  // (which shrinks the heap after a few quiet seconds) has run.
  await sleep(10_000)
  const pids = tree(child.pid!)
  const each = pids.map(rssOf)
  const rss = each.reduce((sum, value) => sum + value, 0)
  /** The server: the process that holds the most (wrappers — npm, sh, the tsx CLI — are smaller). */
  const server = Math.max(...each)
  const exited = new Promise((resolve) => child.once("exit", resolve))
  child.kill("SIGTERM")
  await exited
  return { readyMs, rss, server, processes: pids.length }
}

const main = async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-bench-process-"))
  await chmod(dir, 0o755)
  const pgScope = Effect.runSync(Scope.make())
  try {
    const postgres = await Effect.runPromise(
      startEmbeddedPostgres(path.join(dir, "postgres"), { database: "postgres" }).pipe(Scope.extend(pgScope))
    )
    const env = { IMGSRV_POSTGRES_URL: Redacted.value(postgres.url), IMGSRV_DATA_DIR: path.join(dir, "data") }
    out(`imgsrv process benchmark — node ${process.version}, ${ROUNDS} rounds per way of starting, medians`)
    // Prime: migrations, and the transpile of scripts/start.mjs (timed separately below).
    await run([process.execPath, "scripts/start.mjs"], env)
    const results: Array<{ name: string; readyMs: number; rss: number; server: number; processes: number }> = []
    for (const mode of MODES) {
      const rounds = []
      for (let i = 0; i < ROUNDS; i++) rounds.push(await run(mode.command, env))
      results.push({
        name: mode.name,
        readyMs: median(rounds.map((r) => r.readyMs)),
        rss: median(rounds.map((r) => r.rss)),
        server: median(rounds.map((r) => r.server)),
        processes: rounds[0]!.processes
      })
    }
    const base = results[0]!
    for (const r of results) {
      out(
        `  ${r.name.padEnd(52)} ready after ${r.readyMs.toFixed(0).padStart(5)} ms; idle RSS: server ${
          (r.server / MiB).toFixed(0).padStart(4)
        } MiB (target < 130 MiB) ${r.server < 130 * MiB ? "PASS" : "MISS"}, all ${r.processes} process(es) ${
          (r.rss / MiB).toFixed(0).padStart(4)
        } MiB → ${(r.rss / base.rss).toFixed(2)}× the RSS and ${
          (r.readyMs / base.readyMs).toFixed(2)
        }× the start time of tsx`
      )
    }
    // The first `npm start` after a change pays the transpile once.
    await rm(path.join(root, "dist/.transpiled-from"), { force: true })
    const cold = await run([process.execPath, "scripts/start.mjs"], env)
    out(`  first npm start after a source change (transpile included): ready after ${cold.readyMs.toFixed(0)} ms`)
  } finally {
    await Effect.runPromise(Scope.close(pgScope, Exit.void))
    await rm(dir, { recursive: true, force: true })
  }
}

runBench(main)
