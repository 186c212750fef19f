import { Schema } from "effect"
import { rm } from "node:fs/promises"
import pg from "pg"
import { afterAll, beforeAll, expect, it } from "vitest"
import { Sha256Digest } from "../../src/contract/digest.js"
import type { PublishJob } from "../../src/publishing/schema.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  createImage,
  expectStatus,
  startPublish,
  waitForJob
} from "../catalog/fixtures.js"
import { sha256Hex } from "../support/blobs.js"
import { type ApiClient, apiClient, createBucket, createDatabase, tempDir, type TestS3 } from "../support/harness.js"
import { freePort, type ImgsrvProcess, spawnImgsrv, waitForStatus } from "../support/process.js"
import {
  beginUpload,
  completeUpload,
  getUpload,
  MiB,
  putPart,
  sha256Digest,
  testBytes,
  uploadBlob,
  waitForUploadState
} from "../support/uploads.js"
import { counterOf, scrapeExposition } from "./exposition.js"

/**
 * Two imgsrv processes on one PostgreSQL database and one S3 bucket behave as one
 * service: one bootstrap token between them; an upload begun on A, its parts spread over
 * A and B, completed on B and promoted by whichever worker claims it; a publish begun on
 * A whose worker is killed mid-step, finished by B's worker once the lease runs out; and
 * the same answers from both for manifests, Simple Streams documents and downloads.
 */

const LEASE = "2s"

let db: Awaited<ReturnType<typeof createDatabase>>
let s3: TestS3
let dataDir = ""
const started: Array<ImgsrvProcess> = []

beforeAll(async () => {
  ;[db, s3, dataDir] = await Promise.all([createDatabase(), createBucket(), tempDir()])
})
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop("SIGKILL")))
  await db?.drop()
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
})

interface Replica {
  readonly name: string
  readonly proc: ImgsrvProcess
  readonly api: ApiClient
  readonly baseUrl: string
  readonly metricsUrl: string
}

/** Spawns one replica (it is not ready yet; see `ready`). */
const spawnReplica = async (name: string): Promise<Replica> => {
  const [port, metricsPort] = [await freePort(), await freePort()]
  const proc = spawnImgsrv({
    env: {
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_S3_ENDPOINT: s3.endpoint,
      IMGSRV_S3_BUCKET: s3.bucket,
      IMGSRV_S3_ACCESS_KEY_ID: s3.accessKeyId,
      IMGSRV_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      IMGSRV_S3_PATH_STYLE: "true",
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      IMGSRV_NODE_NAME: name,
      IMGSRV_PUBLISH_JOB_LEASE: LEASE,
      IMGSRV_CAS_PROMOTION_LEASE: LEASE,
      IMGSRV_PUBLISH_WORKER_POLL_INTERVAL: "200ms",
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms",
      IMGSRV_LOG_FORMAT: "json",
      IMGSRV_VERBOSITY: "warn"
    }
  })
  started.push(proc)
  const baseUrl = `http://127.0.0.1:${port}`
  return { name, proc, api: apiClient(baseUrl), baseUrl, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` }
}

const ready = (r: Replica) => waitForStatus(`${r.baseUrl}/readyz`, 204, 60_000)

const sql = async <R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown> = []) => {
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  try {
    return (await client.query<R>(text, [...values])).rows
  } finally {
    await client.end()
  }
}

/** Status, the headers that must agree, and the body of one GET. */
const read = async (r: Replica, path: string) => {
  const response = await r.api.request("GET", path)
  const body = new Uint8Array(await response.arrayBuffer())
  return {
    status: response.status,
    etag: response.headers.get("etag"),
    contentType: response.headers.get("content-type"),
    contentLength: response.headers.get("content-length"),
    body: sha256Hex(body),
    size: body.byteLength
  }
}

/** Both replicas answer every path identically (and successfully). */
const expectSameReads = async (a: Replica, b: Replica, paths: ReadonlyArray<string>) => {
  for (const path of paths) {
    const [fromA, fromB] = [await read(a, path), await read(b, path)]
    expect(fromA.status, path).toBe(200)
    expect(fromB, path).toEqual(fromA)
  }
}

/** A draft with one qcow2 artifact and its Incus metadata; the calls alternate between `a` and `b`. */
const draftVersion = async (
  a: Replica,
  b: Replica,
  token: string,
  version: string,
  disk: { digest: string; size: number },
  meta: { digest: string; size: number }
) => {
  await createDraft(b.api, token, "multi", version)
  const blob = (x: { digest: string; size: number }) => ({
    digest: Schema.decodeSync(Sha256Digest)(x.digest),
    size: x.size
  })
  const artifact = await addArtifact(a.api, token, "multi", version, { blob: blob(disk) })
  await addAttachment(b.api, token, "multi", version, artifact.id, { name: "incus.tar.xz", blob: blob(meta) })
  return artifact.id
}

it("runs as one service across two processes: bootstrap, uploads, publishing with failover, identical reads", async () => {
  // --- Both start together on an empty database: exactly one bootstrap token. -------------
  let a = await spawnReplica("replica-a")
  let b = await spawnReplica("replica-b")
  await Promise.all([ready(a), ready(b)])
  const banners = [a, b].map((r) => r.proc.stdout().match(/imgsrv_at_[A-Za-z0-9_-]+/g) ?? [])
  expect(banners.flat()).toHaveLength(1)
  const admin = banners.flat()[0]!
  expect((await sql("SELECT 1 FROM auth_api_tokens WHERE name = 'bootstrap'")).length).toBe(1)

  // A token minted on A works on B.
  const principal = await a.api.request("POST", "/v1/auth/principals", {
    token: admin,
    json: { kind: "service", display_name: "multi-replica publisher" }
  }).then((r) => expectStatus<{ id: string }>(r, 201))
  expect(
    (await b.api.request("PUT", `/v1/auth/principals/${principal.id}/roles/content-writer`, { token: admin })).status
  )
    .toBe(204)
  const token = (await a.api.request("POST", `/v1/auth/principals/${principal.id}/api-tokens`, {
    token: admin,
    json: { name: "multi", expires_at: new Date(Date.now() + 3_600_000).toISOString() }
  }).then((r) => expectStatus<{ plaintext: string }>(r, 201))).plaintext

  // --- One upload: begun on A, parts alternating A/B, completed on B. ---------------------
  const part = 6 * MiB
  const diskBytes = testBytes(4 * part, 81)
  const digest = sha256Digest(diskBytes)
  const begun = await beginUpload(a.api, token, { expected_digest: digest, expected_size_bytes: diskBytes.byteLength })
  const parts = []
  for (let n = 1; n <= 4; n++) {
    const replica = n % 2 === 1 ? a : b
    parts.push(await putPart(replica.api, token, begun.session.id, n, diskBytes.subarray((n - 1) * part, n * part)))
  }
  expect((await getUpload(a.api, begun.session.id)).parts?.map((p) => p.number)).toEqual([1, 2, 3, 4])
  expect((await completeUpload(b.api, token, begun.session.id, parts)).state).toBe("completed")
  expect((await waitForUploadState(a.api, begun.session.id, ["ready", "failed"])).state).toBe("ready")
  expect((await getUpload(b.api, begun.session.id)).state).toBe("ready")
  expect(await sql("SELECT size_bytes::int AS size FROM cas_blobs WHERE digest = $1", [digest])).toEqual([
    { size: diskBytes.byteLength }
  ])
  const [job] = await sql<{ state: string; attempt_count: number }>(
    "SELECT state, attempt_count FROM cas_ingest_jobs WHERE upload_id = $1",
    [begun.session.id]
  )
  expect(job).toMatchObject({ state: "succeeded", attempt_count: 1 })
  // No replica saw every part, so whichever worker promoted it read the object back once.
  const streamed = await Promise.all(
    [a, b].map(async (r) =>
      counterOf(await scrapeExposition(r.metricsUrl), "imgsrv_cas_promotion_verifications_total", { mode: "streamed" })
    )
  )
  expect(streamed.reduce((x, y) => x + y, 0)).toBe(1)
  const metaBytes = testBytes(3000, 82)
  const meta = await uploadBlob(b.api, token, metaBytes)
  const disk = { digest, size: diskBytes.byteLength }
  const metaBlob = { digest: meta.digest, size: metaBytes.byteLength }

  // --- Publish with both running; then the same reads from both. ----------------------
  await createImage(a.api, token, "multi")
  const firstArtifact = await draftVersion(a, b, token, "1", disk, metaBlob)
  const first = await startPublish(a.api, token, "multi", "1")
  expect((await waitForJob(b.api, token, first.id, ["succeeded", "failed"], 30_000)).state).toBe("succeeded")
  const readsOf = (version: string, artifactId: string) => [
    `/v1/images/multi/versions/${version}`,
    `/v1/images/multi/versions/${version}/artifacts/${artifactId}/download`,
    "/streams/v1/index.json",
    "/streams/v1/images.json",
    `/v1/blobs/${digest}`
  ]
  await expectSameReads(a, b, readsOf("1", firstArtifact))
  expect((await read(a, `/v1/images/multi/versions/1/artifacts/${firstArtifact}/download`)).body).toBe(
    sha256Hex(diskBytes)
  )

  // --- A publish on A alone; A dies mid-step; B (restarted) finishes it. ---------------
  expect(await b.proc.stop("SIGTERM")).toBe(0)
  const secondArtifact = await draftVersion(a, a, token, "2", disk, metaBlob)
  const second = await startPublish(a.api, token, "multi", "2")
  const heldByA = () =>
    sql<{ id: string; name: string }>(
      "SELECT id, name FROM publish_job_steps WHERE job_id = $1 AND state = 'running' AND locked_by LIKE 'replica-a/%'",
      [second.id]
    )
  let killed: { id: string; name: string } | undefined
  const deadline = Date.now() + 20_000
  while (killed === undefined && Date.now() < deadline) {
    if ((await heldByA()).length > 0) {
      // Freeze A, then make sure it still holds a step (it may have just finished one).
      a.proc.child.kill("SIGSTOP")
      await new Promise((r) => setTimeout(r, 50))
      const [held] = await heldByA()
      if (held) {
        a.proc.child.kill("SIGKILL")
        killed = held
      } else {
        a.proc.child.kill("SIGCONT")
      }
    }
    const [job] = await sql<{ state: string }>("SELECT state FROM publish_jobs WHERE id = $1", [second.id])
    if (killed === undefined && job?.state === "succeeded") {
      throw new Error("A finished the whole job before it could be stopped")
    }
  }
  expect(killed, "A never held a step").toBeDefined()
  expect(await a.proc.exited).toBe("SIGKILL")
  const [stranded] = await sql<{ state: string; attempt_count: number }>(
    "SELECT state, attempt_count FROM publish_job_steps WHERE id = $1",
    [killed!.id]
  )
  expect(stranded).toEqual({ state: "running", attempt_count: 1 })

  b = await spawnReplica("replica-b")
  await ready(b)
  const done: PublishJob = await waitForJob(b.api, token, second.id, ["succeeded", "failed"], 30_000)
  expect(done.state).toBe("succeeded")
  const step = done.steps.find((s) => s.name === killed!.name)!
  expect(step.attempt_count).toBeGreaterThanOrEqual(2)
  expect(step.state).toBe("succeeded")
  const finished = await scrapeExposition(b.metricsUrl)
  expect(
    counterOf(finished, "imgsrv_publish_step_duration_seconds_count", { step: killed!.name, outcome: "succeeded" })
  )
    .toBe(1)

  // --- A comes back: both answer alike for the version published through the failover. ---
  a = await spawnReplica("replica-a")
  await ready(a)
  await expectSameReads(a, b, readsOf("2", secondArtifact))
  await expectSameReads(a, b, readsOf("1", firstArtifact))
  // Restarts print no new banner: the one token stays the only one.
  expect([a, b].map((r) => r.proc.stdout())).toEqual(["", ""])
  expect((await sql("SELECT 1 FROM auth_api_tokens WHERE name = 'bootstrap'")).length).toBe(1)
})
