import { spawn } from "node:child_process"
import { appendFile, chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort, type ImgsrvProcess, postmasterPid, spawnImgsrv, waitForStatus } from "../support/process.js"

/**
 * The embedded PostgreSQL server's life, seen from outside the real process: it is
 * supervised (restarted when it dies, `/healthz` failing once it cannot be), shutdown is
 * bounded whatever state it is in, and its data directory has exactly one owner.
 */

const dataDir = async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-embedded-"))
  await chmod(dir, 0o755) // as root, embedded PostgreSQL runs as "postgres"
  return dir
}

const startEmbedded = async (dir: string, env: Record<string, string> = {}) => {
  const port = await freePort()
  const proc = spawnImgsrv({
    env: { IMGSRV_DATA_DIR: dir, IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "", ...env }
  })
  const base = `http://127.0.0.1:${port}`
  await waitForStatus(`${base}/readyz`, 204, 90_000)
  return { proc, base }
}

/** Whether the process `pid` is alive. */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("supervision of the embedded PostgreSQL server", () => {
  let dir: string
  let running: ImgsrvProcess | undefined
  beforeAll(async () => {
    dir = await dataDir()
  })
  afterAll(async () => {
    if (running && running.child.exitCode === null) await running.stop("SIGKILL")
    await rm(dir, { recursive: true, force: true })
  })

  it("restarts a killed server: the catalog is served again without restarting imgsrv", async () => {
    const { proc, base } = await startEmbedded(dir)
    running = proc
    const first = await postmasterPid(dir)
    process.kill(first, "SIGKILL")
    await proc.waitFor(/embedded PostgreSQL restarted/, 60_000)
    await waitForStatus(`${base}/v1/images`, 200, 30_000)
    await waitForStatus(`${base}/readyz`, 204)
    expect(await postmasterPid(dir)).not.toBe(first)
    expect((await fetch(`${base}/healthz`)).status).toBe(204)
    expect(proc.child.exitCode).toBeNull()
    expect(await proc.stop("SIGTERM")).toBe(0)
    expect(proc.stderr()).toContain("embedded PostgreSQL stopped")
  })

  it("fails /healthz once the restart budget is spent", async () => {
    const { proc, base } = await startEmbedded(dir, {
      IMGSRV_EMBEDDED_RESTART_ATTEMPTS: "2",
      IMGSRV_EMBEDDED_RESTART_BACKOFF: "100ms",
      IMGSRV_SHUTDOWN_TIMEOUT: "5s"
    })
    running = proc
    // Every later start fails: PostgreSQL refuses a configuration file with an unknown setting.
    await appendFile(path.join(dir, "postgres", "postgresql.conf"), "\nimgsrv_test_broken_setting = 1\n")
    process.kill(await postmasterPid(dir), "SIGKILL")
    await waitForStatus(`${base}/healthz`, 503, 60_000)
    expect(proc.stderr()).toContain("embedded PostgreSQL cannot be brought back")
    expect((await fetch(`${base}/readyz`)).status).toBe(503)
    const catalog = await fetch(`${base}/v1/images`)
    expect(catalog.status).toBe(503)
    expect(catalog.headers.get("retry-after")).toMatch(/^\d+$/)
  })

  it("exits within --shutdown-timeout on SIGTERM while the server is dead", async () => {
    const proc = running!
    const signalled = Date.now()
    proc.child.kill("SIGTERM")
    const code = await Promise.race([proc.exited, new Promise((r) => setTimeout(() => r("still running"), 5_000))])
    expect(code).toBe(0)
    expect(Date.now() - signalled).toBeLessThan(5_000)
  })
})

describe("the data directory", () => {
  let dir: string
  let sleeper: ReturnType<typeof spawn> | undefined
  beforeAll(async () => {
    dir = await dataDir()
  })
  afterAll(async () => {
    sleeper?.kill("SIGKILL")
    await rm(dir, { recursive: true, force: true })
  })

  it("has one owner: a second imgsrv on it is refused with one line and the first is unharmed", async () => {
    const { proc: first, base } = await startEmbedded(dir)
    try {
      const server = await postmasterPid(dir)
      const second = spawnImgsrv({
        env: {
          IMGSRV_DATA_DIR: dir,
          IMGSRV_LISTEN: `127.0.0.1:${await freePort()}`,
          IMGSRV_METRICS_LISTEN: "",
          IMGSRV_VERBOSITY: "error"
        }
      })
      expect(await second.exited).toBe(1)
      expect(second.stderr().trim().split("\n")).toEqual([
        `imgsrv: data directory ${dir} is in use by another imgsrv (pid ${first.child.pid}); ` +
        `stop it or choose another --data-dir`
      ])
      expect(alive(server)).toBe(true)
      expect(await postmasterPid(dir)).toBe(server)
      expect((await fetch(`${base}/readyz`)).status).toBe(204)
      expect((await fetch(`${base}/v1/images`)).status).toBe(200)
    } finally {
      expect(await first.stop("SIGTERM")).toBe(0)
    }
  })

  it("never signals the unrelated process a stale postmaster.pid names", async () => {
    if (!(await stat(path.join(dir, "postgres", "PG_VERSION")).catch(() => undefined))) {
      // Run alone: the cluster must exist for a pid file to be found in it.
      expect(await (await startEmbedded(dir)).proc.stop("SIGTERM")).toBe(0)
    }
    sleeper = spawn("sleep", ["300"], { stdio: "ignore" })
    const pidFile = path.join(dir, "postgres", "postmaster.pid")
    // What a server killed with the machine leaves behind, its pid since taken by another process.
    await writeFile(pidFile, `${sleeper.pid}\n${path.join(dir, "postgres")}\n1700000000\n5432\n\n127.0.0.1\n`)
    const { proc, base } = await startEmbedded(dir)
    try {
      expect(sleeper.exitCode).toBeNull()
      expect(sleeper.signalCode).toBeNull()
      expect(alive(sleeper.pid!)).toBe(true)
      expect(proc.stderr()).toContain("removing a stale postmaster.pid")
      expect((await readFile(pidFile, "utf8")).split("\n")[0]).not.toBe(String(sleeper.pid))
      expect((await fetch(`${base}/v1/images`)).status).toBe(200)
    } finally {
      expect(await proc.stop("SIGTERM")).toBe(0)
    }
  })
})
