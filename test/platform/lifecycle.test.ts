import { Readable } from "node:stream"
import type { ReadableStream as WebReadableStream } from "node:stream/web"
import { describe, expect, it } from "vitest"
import { createDatabase } from "../support/harness.js"
import { freePort, spawnImgsrv, waitForStatus } from "../support/process.js"
import { sha256Digest, testBytes } from "../support/uploads.js"

/**
 * Graceful shutdown of the real process: in-flight requests finish, new connections
 * are refused, a client that stalls past --shutdown-timeout does not hold the process.
 */

const tokenFromBanner = (stdout: string) => stdout.match(/imgsrv_at_[A-Za-z0-9_-]+/)![0]

const json = async (res: Response, status: number) => {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${await res.text()}`)
  return res.json() as Promise<Record<string, unknown>>
}

/** Starts imgsrv on a fresh database and returns a content-writer token and a 16 MiB verified blob. */
const started = async (shutdownTimeout: string) => {
  const db = await createDatabase()
  const port = await freePort()
  const dataDir = `/tmp/imgsrv-life-${port}`
  const proc = spawnImgsrv({
    env: {
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_SHUTDOWN_TIMEOUT: shutdownTimeout,
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "100ms"
    }
  })
  const base = `http://127.0.0.1:${port}`
  await waitForStatus(`${base}/readyz`, 204)
  const admin = tokenFromBanner(proc.stdout())
  const call = (method: string, path: string, token: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
  const principal = await json(
    await call("POST", "/v1/auth/principals", admin, { kind: "service", display_name: "w" }),
    201
  )
  expect((await call("PUT", `/v1/auth/principals/${principal["id"]}/roles/content-writer`, admin)).status).toBe(204)
  const issued = await json(
    await call("POST", `/v1/auth/principals/${principal["id"]}/api-tokens`, admin, {
      expires_at: new Date(Date.now() + 3_600_000).toISOString()
    }),
    201
  )
  const writer = String(issued["plaintext"])
  const bytes = testBytes(16 * 1024 * 1024, 7)
  const digest = sha256Digest(bytes)
  const session = await json(
    await call("POST", "/v1/uploads", writer, {
      expected_digest: digest,
      expected_size_bytes: bytes.length
    }),
    201
  )
  const part = await fetch(`${base}/v1/uploads/${session["id"]}/parts/1`, {
    method: "PUT",
    headers: { authorization: `Bearer ${writer}` },
    body: bytes
  })
  const partBody = await json(part, 200)
  await json(
    await call("POST", `/v1/uploads/${session["id"]}/complete`, writer, {
      parts: [{ number: 1, etag: partBody["etag"], size_bytes: bytes.length }]
    }),
    200
  )
  for (let i = 0; i < 200; i++) {
    const state = (await json(await fetch(`${base}/v1/uploads/${session["id"]}`), 200))["state"]
    if (state === "ready") break
    await new Promise((r) => setTimeout(r, 50))
  }
  return { proc, base, digest, size: bytes.length, close: () => db.drop() }
}

/** Opens a download and reads only its first chunk, leaving the rest in flight. */
const openSlowly = async (url: string) => {
  const res = await fetch(url)
  expect(res.status).toBe(200)
  const body = Readable.fromWeb(res.body! as WebReadableStream<Uint8Array>)
  body.pause()
  return body
}

const drain = (body: Readable) =>
  new Promise<number>((resolve, reject) => {
    let n = 0
    body.on("data", (chunk: Buffer) => (n += chunk.length))
    body.on("end", () => resolve(n))
    body.on("error", reject)
    body.resume()
  })

describe("graceful shutdown", () => {
  it("lets an in-flight download finish after SIGTERM, refuses new connections, then exits 0", async () => {
    const { proc, base, digest, size, close } = await started("20s")
    try {
      const body = await openSlowly(`${base}/v1/blobs/${digest}`)
      proc.child.kill("SIGTERM")
      await proc.waitFor(/stopping http server/)
      await expect(fetch(`${base}/healthz`)).rejects.toThrow()
      expect(await drain(body)).toBe(size)
      expect(await proc.exited).toBe(0)
      // Drained, not cut: idle keep-alive connections did not hold shutdown to the deadline.
      expect(proc.stderr()).not.toContain("shutdown timeout reached")
    } finally {
      await close()
    }
  })

  it("cuts a client that stalls past --shutdown-timeout and still exits 0", async () => {
    const { proc, base, digest, close } = await started("1s")
    try {
      const body = await openSlowly(`${base}/v1/blobs/${digest}`)
      const stoppedAt = Date.now()
      proc.child.kill("SIGTERM")
      expect(await proc.exited).toBe(0)
      expect(Date.now() - stoppedAt).toBeLessThan(15_000)
      expect(proc.stderr()).toContain("shutdown timeout reached")
      body.destroy()
    } finally {
      await close()
    }
  })
})
