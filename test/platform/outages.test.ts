import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase } from "../support/harness.js"
import {
  freePort,
  type ImgsrvProcess,
  postmasterPid,
  processTree,
  spawnImgsrv,
  waitForStatus,
  writerToken
} from "../support/process.js"
import { type S3ServerProcess, startS3ServerProcess } from "../support/s3-server.js"
import { MiB, sha256Digest, testBytes } from "../support/uploads.js"

/**
 * Dependencies going away under a running imgsrv (a real process): a killed or frozen
 * database or object store makes requests fail fast with `503` + `Retry-After` — never a
 * `500`, never a request hanging for the whole outage — and service resumes by itself.
 */

/** A request that must be answered: a hang fails the test instead of timing it out. */
const answered = (url: string, init: RequestInit = {}) => fetch(url, { ...init, signal: AbortSignal.timeout(30_000) })

const expectUnavailable = async (response: Response) => {
  const body = await response.text()
  expect(response.status, body).toBe(503)
  expect(response.headers.get("content-type")).toBe("application/problem+json")
  expect(response.headers.get("retry-after")).toMatch(/^\d+$/)
  expect(JSON.parse(body)).toMatchObject({ status: 503, title: "Service Unavailable" })
}

describe("a frozen database", () => {
  let dir: string
  let proc: ImgsrvProcess | undefined
  let frozen: Array<number> = []
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "imgsrv-frozen-db-"))
    await chmod(dir, 0o755)
  })
  afterAll(async () => {
    for (const pid of frozen) process.kill(pid, "SIGCONT")
    if (proc) await proc.stop("SIGKILL")
    await rm(dir, { recursive: true, force: true })
  })

  it("answers 503 with Retry-After within the statement timeout, and serves again once it thaws", async () => {
    const port = await freePort()
    proc = spawnImgsrv({
      env: {
        IMGSRV_DATA_DIR: dir,
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: "",
        IMGSRV_POSTGRES_CONNECT_TIMEOUT: "1s",
        IMGSRV_POSTGRES_STATEMENT_TIMEOUT: "1s"
      }
    })
    const base = `http://127.0.0.1:${port}`
    await waitForStatus(`${base}/readyz`, 204, 90_000)
    expect((await fetch(`${base}/v1/images`)).status).toBe(200)

    // SIGSTOP every process of the server: the postmaster first, so it forks no new backend.
    const postmaster = await postmasterPid(dir)
    process.kill(postmaster, "SIGSTOP")
    frozen = await processTree(postmaster)
    for (const pid of frozen) process.kill(pid, "SIGSTOP")

    await expectUnavailable(await answered(`${base}/v1/images`))
    await expectUnavailable(await answered(`${base}/v1/images`))
    expect((await answered(`${base}/readyz`)).status).toBe(503)

    for (const pid of frozen) process.kill(pid, "SIGCONT")
    frozen = []
    await waitForStatus(`${base}/v1/images`, 200, 30_000)
    await waitForStatus(`${base}/readyz`, 204)
    expect(proc.stderr()).not.toContain("status=500")
    expect(await proc.stop("SIGTERM")).toBe(0)
  })
})

describe("an object store that dies or freezes (S3 mode, JSON logs)", () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  let s3: S3ServerProcess
  let dir: string
  let proc: ImgsrvProcess
  let base: string
  let token: string
  beforeAll(async () => {
    db = await createDatabase()
    s3 = await startS3ServerProcess(await freePort())
    dir = await mkdtemp(path.join(tmpdir(), "imgsrv-store-outage-"))
    const port = await freePort()
    proc = spawnImgsrv({
      env: {
        IMGSRV_POSTGRES_URL: db.url,
        IMGSRV_S3_ENDPOINT: s3.endpoint,
        IMGSRV_S3_BUCKET: s3.bucket,
        IMGSRV_S3_ACCESS_KEY_ID: s3.accessKeyId,
        IMGSRV_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        IMGSRV_S3_PATH_STYLE: "true",
        IMGSRV_S3_CONNECT_TIMEOUT: "1s",
        IMGSRV_S3_IDLE_TIMEOUT: "2s",
        IMGSRV_DATA_DIR: dir,
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: "",
        IMGSRV_LOG_FORMAT: "json",
        IMGSRV_VERBOSITY: "debug"
      }
    })
    base = `http://127.0.0.1:${port}`
    await waitForStatus(`${base}/readyz`, 204, 60_000)
    token = await writerToken(base, proc.stdout())
  })
  afterAll(async () => {
    s3?.signal("SIGCONT")
    if (proc && proc.child.exitCode === null) await proc.stop("SIGKILL")
    await s3?.stop()
    await db?.drop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  const bytes = testBytes(2 * MiB, 11)
  const begin = () =>
    answered(`${base}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.byteLength })
    })
  const putPart = (uploadId: string) =>
    answered(`${base}/v1/uploads/${uploadId}/parts/1`, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}` },
      body: bytes
    })

  it("answers 503 (not 500) with Retry-After while the store is down, and works again once it is back", async () => {
    const session = (await (await begin()).json()) as { id: string }
    await s3.kill()
    await expectUnavailable(await putPart(session.id))
    await expectUnavailable(await begin())
    expect((await answered(`${base}/readyz`)).status).toBe(503)
    await s3.restart()
    await waitForStatus(`${base}/readyz`, 204)
    expect((await putPart(session.id)).status).toBe(200)
    expect((await begin()).status).toBe(201)
  })

  it("does not hang a part upload on a frozen store past the idle timeout", async () => {
    const session = (await (await begin()).json()) as { id: string }
    s3.signal("SIGSTOP")
    try {
      await expectUnavailable(await putPart(session.id))
    } finally {
      s3.signal("SIGCONT")
    }
    expect((await putPart(session.id)).status).toBe(200)
  })

  it("writes only JSON lines on stderr, the AWS SDK's warnings included", async () => {
    expect(await proc.stop("SIGTERM")).toBe(0)
    const lines = proc.stderr().split("\n").filter((line) => line !== "")
    expect(lines.length).toBeGreaterThan(5)
    const notJson = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== "object"
      } catch {
        return true
      }
    })
    expect(notJson).toEqual([])
  })
})
