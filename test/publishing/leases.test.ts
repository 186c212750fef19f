import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Option } from "effect"
import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { closeSync, constants, openSync } from "node:fs"
import { rm } from "node:fs/promises"
import * as path from "node:path"
import { CatalogRepositoryLive } from "../../src/catalog/repository.js"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { PublishRepository, PublishRepositoryLive } from "../../src/publishing/repository.js"
import { type ClaimedStep, JobId, type PublishJob, StepId } from "../../src/publishing/schema.js"
import { addArtifact, addAttachment, createDraft, createImage, startPublish, waitForJob } from "../catalog/fixtures.js"
import { restoreBlobBytes, seedBlob, type SeededBlob, withDatabase } from "../support/blobs.js"
import { createDatabase, startTestApp, tempDir, type TestApp, TestDatabaseLive } from "../support/harness.js"
import { freePort, spawnImgsrv } from "../support/process.js"
import { publishableDraft } from "./drafts.js"

/**
 * Step leases (api.md §2.9 "Worker semantics", our improvement over the reference's
 * fixed 5-minute stale cutoff): a claim holds a lease that a heartbeat renews while the
 * step runs; a dead worker's step is re-claimed once the lease expires; and a worker
 * that lost its lease can no longer renew or complete the step.
 */

const encoder = new TextEncoder()

// ---------------------------------------------------------------------------------
// Claims and fencing, on the repository the worker uses.
// ---------------------------------------------------------------------------------

const RepositoriesLive = Layer.mergeAll(PublishRepositoryLive, CatalogRepositoryLive).pipe(
  Layer.provideMerge(TestDatabaseLive)
)

/** A version in `publishing` with a queued job, set up with plain SQL. */
const queuedJob = Effect.gen(function*() {
  const repo = yield* PublishRepository
  const versionId = yield* publishableDraft(`lease-${randomUUID().slice(0, 8)}`)
  const jobId = JobId.make(randomUUID())
  yield* Effect.orDie(repo.markPublishing(versionId))
  yield* Effect.orDie(
    repo.insertJob({
      id: jobId,
      versionId,
      stepIds: [StepId.make(randomUUID()), StepId.make(randomUUID()), StepId.make(randomUUID())],
      traceParent: undefined
    })
  )
  return jobId
})

const claim = (workerId: string, lease = Duration.minutes(1)) =>
  Effect.flatMap(PublishRepository, (repo) => repo.claimNextStep(workerId, lease))

const expireLease = (step: ClaimedStep) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`UPDATE publish_job_steps
        SET lease_expires_at = now() - interval '1 second', locked_at = now() - interval '10 minutes'
        WHERE id = ${step.id}`)

layer(RepositoriesLive)("step claims", (it) => {
  it.effect("run strictly in sequence, one worker at a time", () =>
    Effect.gen(function*() {
      const repo = yield* PublishRepository
      const jobId = yield* queuedJob
      const first = Option.getOrThrow(yield* claim("worker-a"))
      expect([first.job_id, first.name, first.attempt_count]).toEqual([jobId, "validate_catalog", 1])
      // The step is held and incus_index waits for it: nothing else to claim.
      expect(Option.isNone(yield* claim("worker-b"))).toBe(true)
      expect(yield* repo.succeedStep(first, "worker-a")).toBe(true)
      const second = Option.getOrThrow(yield* claim("worker-b"))
      expect(second.name).toBe("incus_index")
      const job = Option.getOrThrow(yield* repo.findJob(jobId))
      expect(job.job.state).toBe("running")
      expect(job.job.started_at).not.toBeNull()
    }))

  it.effect("an expired lease is re-claimed (attempt + 1) and the old holder is fenced out", () =>
    Effect.gen(function*() {
      const repo = yield* PublishRepository
      yield* queuedJob
      const old = Option.getOrThrow(yield* claim("old-worker"))
      expect(yield* repo.renewLease(old, "old-worker", Duration.minutes(1))).toBe(true)
      yield* expireLease(old)
      const fresh = Option.getOrThrow(yield* claim("new-worker"))
      expect([fresh.id, fresh.attempt_count]).toEqual([old.id, old.attempt_count + 1])
      // The old holder can neither renew nor complete: its results are dropped.
      expect(yield* repo.renewLease(old, "old-worker", Duration.minutes(1))).toBe(false)
      expect(yield* repo.succeedStep(old, "old-worker")).toBe(false)
      expect(yield* repo.failStep(old, "old-worker", "stale")).toBe(false)
      // Same worker id, older attempt: still fenced (the attempt is part of the token).
      expect(yield* repo.succeedStep({ ...fresh, attempt_count: old.attempt_count }, "new-worker")).toBe(false)
      expect(yield* repo.renewLease(fresh, "new-worker", Duration.minutes(1))).toBe(true)
      // None of the refused writes touched the step or its job; the holder's own write goes
      // through (a failure, so nothing of this job is left for the next test to claim).
      const before = Option.getOrThrow(yield* repo.findJob(fresh.job_id))
      expect(before.job.state).toBe("running")
      expect(before.steps.find((s) => s.id === fresh.id)?.state).toBe("running")
      expect(yield* repo.failStep(fresh, "new-worker", "stopped by the test")).toBe(true)
      const after = Option.getOrThrow(yield* repo.findJob(fresh.job_id))
      expect([after.job.state, after.job.failure_message]).toEqual(["failed", "stopped by the test"])
    }))

  it.effect("a renewed lease is not re-claimed", () =>
    Effect.gen(function*() {
      const repo = yield* PublishRepository
      const sql = yield* SqlClient.SqlClient
      yield* queuedJob
      // Leases are measured by PostgreSQL's now(): wait in real time, not on the test clock.
      const wait = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 600)))
      const held = Option.getOrThrow(yield* claim("holder", Duration.seconds(1)))
      yield* wait
      expect(yield* repo.renewLease(held, "holder", Duration.seconds(1))).toBe(true)
      yield* wait
      // 1.2 s after a 1 s claim, but renewed at 0.6 s: still held.
      expect(Option.isNone(yield* claim("thief"))).toBe(true)
      const rows = yield* sql<{ locked_by: string }>`SELECT locked_by FROM publish_job_steps WHERE id = ${held.id}`
      expect(rows[0]!.locked_by).toBe("holder")
    }))
})

// ---------------------------------------------------------------------------------
// Through the real worker: a step blocked in the blob store (a FIFO instead of the
// metadata blob makes `open` wait) stands in for a long or hung step.
// ---------------------------------------------------------------------------------

const blobFile = (app: TestApp, blob: SeededBlob) => {
  const storage = app.config.storage
  if (storage._tag !== "filesystem") throw new Error("FIFO tests need the filesystem store")
  return path.join(storage.root, casKey(blob.digest))
}

/** Replaces the blob's file with a FIFO: opening it for reading blocks until a writer appears. */
const blockBlob = async (app: TestApp, blob: SeededBlob) => {
  const file = blobFile(app, blob)
  await rm(file)
  execFileSync("mkfifo", [file])
}

/** Lets the blocked reader through (it then reads zero bytes) and removes the FIFO. */
const releaseBlob = (app: TestApp, blob: SeededBlob) => {
  const file = blobFile(app, blob)
  // Non-blocking: fails (ENXIO) unless a reader is waiting, which is what we assert.
  closeSync(openSync(file, constants.O_WRONLY | constants.O_NONBLOCK))
}

const stepRow = (app: TestApp, jobId: string, name: string) =>
  withDatabase(app, (c) =>
    c.query(
      "SELECT state, attempt_count, locked_by, lease_expires_at > now() AS leased FROM publish_job_steps WHERE job_id = $1 AND name = $2",
      [jobId, name]
    )).then((r) => r.rows[0] as { state: string; attempt_count: number; locked_by: string | null; leased: boolean })

const waitForStep = async (
  app: TestApp,
  jobId: string,
  name: string,
  predicate: (row: Awaited<ReturnType<typeof stepRow>>) => boolean,
  timeoutMs = 30_000
) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const row = await stepRow(app, jobId, name)
    if (row && predicate(row)) return row
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`step ${name} of ${jobId} never matched: ${JSON.stringify(await stepRow(app, jobId, name))}`)
}

/** A draft with a qcow2 artifact and its incus.tar.xz attachment, published (job queued). */
const queuePublish = async (app: TestApp, token: string, name: string) => {
  const disk = await seedBlob(app, encoder.encode(`${name} disk`))
  const meta = await seedBlob(app, encoder.encode(`${name} metadata`))
  await createImage(app, token, name)
  await createDraft(app, token, name, "1")
  const artifact = await addArtifact(app, token, name, "1", { blob: disk })
  await addAttachment(app, token, name, "1", artifact.id, { name: "incus.tar.xz", blob: meta })
  return { meta, startJob: () => startPublish(app, token, name, "1") }
}

const attempts = (job: PublishJob) => job.steps.map((s) => s.attempt_count)

describe("the publish worker's lease", () => {
  it("is renewed by the heartbeat while a step outlives it, so no other worker takes the step", async () => {
    const settings = { "publish-job-lease": "1s", "publish-worker-poll-interval": "50ms" } as const
    const first = await startTestApp({ settings })
    const second = await startTestApp({ databaseUrl: first.databaseUrl, dataDir: first.dataDir, settings })
    try {
      const token = await first.tokenFor("content-writer")
      const { meta, startJob } = await queuePublish(first, token, "heartbeat")
      await blockBlob(first, meta)
      const job = await startJob()
      await waitForStep(first, job.id, "incus_index", (r) => r.state === "running")
      // Three leases long: without renewals the other app's worker would have re-claimed it.
      await new Promise((resolve) => setTimeout(resolve, 3000))
      expect(await stepRow(first, job.id, "incus_index")).toMatchObject({
        state: "running",
        attempt_count: 1,
        leased: true
      })

      releaseBlob(first, meta)
      const failed = await waitForJob(first, token, job.id)
      expect(failed).toMatchObject({ state: "failed", failed_step: "incus_index" })
      expect(failed.failure_message).toContain("0 bytes")
      await restoreBlobBytes(first, meta)
      await first.request("POST", `/v1/publish-jobs/${job.id}/retry`, { token })
      const done = await waitForJob(second, token, job.id)
      expect([done.state, ...attempts(done)]).toEqual(["succeeded", 1, 2, 1])
    } finally {
      await second.close()
      await first.close()
    }
  })

  it("expires when its worker dies mid-step: another worker re-claims the step and the job succeeds once", async () => {
    const db = await createDatabase()
    const dataDir = await tempDir()
    const setup = await startTestApp({ databaseUrl: db.url, dataDir, settings: { "publish-worker-enabled": "false" } })
    let survivor: TestApp | undefined
    try {
      const token = await setup.tokenFor("content-writer")
      const { meta, startJob } = await queuePublish(setup, token, "crash")
      await blockBlob(setup, meta)
      const job = await startJob()

      const doomed = spawnImgsrv({
        env: {
          IMGSRV_POSTGRES_URL: db.url,
          IMGSRV_DATA_DIR: dataDir,
          IMGSRV_LISTEN: `127.0.0.1:${await freePort()}`,
          IMGSRV_METRICS_LISTEN: "",
          IMGSRV_NODE_NAME: "doomed",
          IMGSRV_PUBLISH_JOB_LEASE: "1s",
          IMGSRV_PUBLISH_WORKER_POLL_INTERVAL: "100ms",
          IMGSRV_LOG_FORMAT: "json"
        }
      })
      try {
        const claimed = await waitForStep(setup, job.id, "incus_index", (r) => r.state === "running", 60_000)
        expect(claimed.locked_by).toMatch(/^doomed\//)
      } finally {
        expect(await doomed.stop("SIGKILL")).toBe("SIGKILL")
      }
      await restoreBlobBytes(setup, meta)
      // The dead worker's claim is still there until its lease runs out.
      expect(await stepRow(setup, job.id, "incus_index")).toMatchObject({ state: "running", attempt_count: 1 })

      survivor = await startTestApp({
        databaseUrl: db.url,
        dataDir,
        settings: { "publish-job-lease": "1s", "publish-worker-poll-interval": "100ms", "node-name": "survivor" }
      })
      const done = await waitForJob(survivor, token, job.id)
      expect(done.state).toBe("succeeded")
      expect(attempts(done)).toEqual([1, 2, 1])
      const rows = await withDatabase(
        setup,
        (c) => c.query("SELECT count(*)::int AS n FROM incus_projection_items WHERE version_id = $1", [done.version_id])
      )
      expect(rows.rows[0].n).toBe(1)
    } finally {
      await survivor?.close()
      await setup.close()
      await db.drop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
