/**
 * The promotion worker under crashes, races and storage trouble, on both stores. Uploads
 * are completed through the HTTP API of an app whose own worker is off; promotion then
 * runs through real workers: `runOnce` of a worker built on the same database and store
 * (to control exactly when it runs), or whole extra app instances sharing them.
 */
import { Deferred, Duration, Effect, Fiber, Layer, Logger, LogLevel, ManagedRuntime, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlobStoreFromConfig } from "../../src/app.js"
import type { Sha256Digest } from "../../src/contract/digest.js"
import { AppConfig } from "../../src/platform/config/config.js"
import { BlobStore, BlobStoreError } from "../../src/platform/storage/blob-store/blob-store.js"
import { casKey, stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { DatabaseLive } from "../../src/platform/storage/database.js"
import { CasPromotion, CasPromotionLive } from "../../src/uploads/promotion-worker.js"
import { UploadRepository, UploadRepositoryLive } from "../../src/uploads/repository.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  beginUpload,
  completeUpload,
  getUpload,
  MiB,
  putPart,
  sha256Digest,
  testBytes,
  waitForUploadState
} from "../support/uploads.js"
import { counterValue, sleep, storeOf, STORES } from "./fixtures.js"

type Store = BlobStore["Type"]

/**
 * A promotion worker on `app`'s database and store (lease 30 s unless given, retry backoff
 * 5 s). `wrap` may replace store operations (to hang or fail them).
 */
const workerOn = (
  app: TestApp,
  options: { readonly wrap?: (store: Store) => Store; readonly lease?: Duration.Duration } = {}
) => {
  const wrap = options.wrap ?? ((s: Store) => s)
  const config = {
    ...app.config,
    casPromotion: {
      ...app.config.casPromotion,
      lease: options.lease ?? Duration.seconds(30),
      errorBackoff: Duration.seconds(5)
    }
  }
  const store = Layer.effect(BlobStore, Effect.map(BlobStore, wrap)).pipe(
    Layer.provide(Layer.orDie(BlobStoreFromConfig(config)))
  )
  const layer = CasPromotionLive.pipe(
    Layer.provideMerge(UploadRepositoryLive),
    Layer.provide(store),
    Layer.provide(Layer.orDie(DatabaseLive({ url: Redacted.make(app.databaseUrl), maxConnections: 3 }))),
    Layer.provide(Layer.succeed(AppConfig, config)),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
  )
  const runtime = ManagedRuntime.make(layer)
  return {
    runtime,
    runOnce: (workerId: string) => runtime.runPromise(Effect.flatMap(CasPromotion, (p) => p.runOnce(workerId))),
    dispose: () => runtime.dispose()
  }
}

type JobRow = {
  readonly state: string
  readonly attempt_count: number
  readonly locked_by: string | null
}

const jobOf = async (app: TestApp, uploadId: string) =>
  (await query<JobRow>(app, "SELECT state, attempt_count, locked_by FROM cas_ingest_jobs WHERE upload_id = $1", [
    uploadId
  ]))[0]

const blobRows = async (app: TestApp, digest: string) =>
  (await query<{ n: number }>(app, "SELECT count(*)::int AS n FROM cas_blobs WHERE digest = $1", [digest]))[0]!.n

for (const store of STORES) {
  describe(`promotion worker (${store} store)`, () => {
    let app: TestApp
    let token: string
    let objects: ReturnType<typeof storeOf>

    beforeAll(async () => {
      app = await startTestApp({ store, settings: { "cas-promotion-enabled": "false" } })
      token = await app.tokenFor("content-writer")
      objects = storeOf(app)
    })
    afterAll(async () => {
      await objects?.dispose()
      await app?.close()
    })

    /** Begin, PUT one part, complete: a session waiting for promotion. */
    const completed = async (bytes: Uint8Array, claimedDigest = sha256Digest(bytes)) => {
      const { session } = await beginUpload(app, token, {
        expected_digest: claimedDigest,
        expected_size_bytes: bytes.length
      })
      const part = await putPart(app, token, session.id, 1, bytes)
      await completeUpload(app, token, session.id, [part])
      expect((await getUpload(app, session.id)).state).toBe("completed")
      return { id: session.id, digest: claimedDigest }
    }

    it("crash safety: a worker that claims and dies mid-verification is taken over after the lease, exactly once", async () => {
      const upload = await completed(testBytes(2 * MiB, 101))
      const reached = Effect.runSync(Deferred.make<void>())
      const hang = Deferred.succeed(reached, undefined).pipe(Effect.zipRight(Effect.never))
      // This worker hangs as soon as it touches the staged object.
      const crashing = workerOn(app, {
        lease: Duration.seconds(2),
        wrap: (s) => ({
          ...s,
          stat: (key) => key === stagingKey(upload.id) ? hang : s.stat(key),
          open: (key, range) => key === stagingKey(upload.id) ? hang : s.open(key, range)
        })
      })
      const rescuer = workerOn(app)
      try {
        const fiber = crashing.runtime.runFork(
          Effect.flatMap(CasPromotion, (p) => p.runOnce("node-a/crashed/cas-promotion"))
        )
        await Effect.runPromise(Deferred.await(reached))
        expect(await jobOf(app, upload.id)).toEqual({
          state: "running",
          attempt_count: 1,
          locked_by: "node-a/crashed/cas-promotion"
        })
        expect((await getUpload(app, upload.id)).state).toBe("ingesting")
        // The worker dies mid-verification: no outcome is recorded, the lease stays behind.
        await crashing.runtime.runPromise(Fiber.interrupt(fiber))
        const promotedBefore = await counterValue("imgsrv_uploads_promoted_total")

        // A live lease is respected...
        expect(await rescuer.runOnce("node-b/rescuer/cas-promotion")).toBe("idle")
        expect((await jobOf(app, upload.id))?.locked_by).toBe("node-a/crashed/cas-promotion")
        // ...and once it has run out, the upload is taken over and promoted.
        while (
          (await query<{ live: boolean }>(
            app,
            "SELECT lease_expires_at > now() AS live FROM cas_ingest_jobs WHERE upload_id = $1",
            [upload.id]
          ))[0]?.live
        ) await sleep(50)
        expect(await rescuer.runOnce("node-b/rescuer/cas-promotion")).toBe("worked")
        expect(await rescuer.runOnce("node-b/rescuer/cas-promotion")).toBe("idle")

        expect((await getUpload(app, upload.id)).state).toBe("ready")
        expect(await jobOf(app, upload.id)).toEqual({ state: "succeeded", attempt_count: 2, locked_by: null })
        expect(await blobRows(app, upload.digest)).toBe(1)
        expect(await counterValue("imgsrv_uploads_promoted_total") - promotedBefore).toBe(1)
        expect(await objects.stagingSize(upload.id)).toBeUndefined()
        expect(await objects.casSize(upload.digest)).toBe(2 * MiB)
      } finally {
        await crashing.dispose()
        await rescuer.dispose()
      }
    })

    it("a worker whose lease was taken over cannot record its outcome (fencing)", async () => {
      const upload = await completed(testBytes(1000, 102))
      const worker = workerOn(app)
      try {
        const outcome = await worker.runtime.runPromise(Effect.gen(function*() {
          const repo = yield* UploadRepository
          const first = yield* repo.claimJob("slow/worker", 1)
          yield* Effect.sleep("20 millis")
          const second = yield* repo.claimJob("fast/worker", 60_000)
          const slow = first._tag === "Some" ? first.value.job : undefined
          const fast = second._tag === "Some" ? second.value.job : undefined
          if (!slow || !fast) return yield* Effect.dieMessage("both claims should succeed")
          const digest = upload.digest as Sha256Digest
          return {
            slowHeartbeat: yield* repo.heartbeat(slow, 60_000),
            slowRecord: yield* repo.recordFailed(slow, { reason: "digest_mismatch", message: "stale worker" }),
            fastAttempt: fast.attemptCount,
            fastRecord: yield* repo.recordPromoted(fast, { digest, sizeBytes: 1000, mediaType: null })
          }
        }))
        expect(outcome).toEqual({ slowHeartbeat: false, slowRecord: false, fastAttempt: 2, fastRecord: true })
        expect((await getUpload(app, upload.id)).state).toBe("ready")
      } finally {
        await worker.dispose()
      }
    })

    it("two workers and 20 completed uploads: each ready once, 20 blob rows, no errors", async () => {
      const uploads = await Promise.all(
        Array.from({ length: 20 }, (_, i) => completed(testBytes(64 * 1024 + i, 200 + i)))
      )
      const errorsBefore = await counterValue("imgsrv_background_job_errors_total", { job: "cas-promotion" })
      const conflictsBefore = await counterValue("imgsrv_objectstore_operations_total", { outcome: "already_exists" }) +
        await counterValue("imgsrv_objectstore_operations_total", { outcome: "conflict" })
      const shared = { databaseUrl: app.databaseUrl, dataDir: app.dataDir, ...(app.s3 ? { s3: app.s3 } : {}) }
      const [b, c] = await Promise.all([
        startTestApp({ store, ...shared, settings: { "node-name": "node-b" } }),
        startTestApp({ store, ...shared, settings: { "node-name": "node-c" } })
      ])
      try {
        for (const upload of uploads) {
          expect((await waitForUploadState(app, upload.id, ["ready", "failed"])).state).toBe("ready")
        }
        const jobs = await query<{ state: string; attempt_count: number; n: number }>(
          app,
          `SELECT state, attempt_count, count(*)::int AS n FROM cas_ingest_jobs WHERE upload_id = ANY($1::uuid[])
           GROUP BY state, attempt_count`,
          [uploads.map((u) => u.id)]
        )
        expect(jobs).toEqual([{ state: "succeeded", attempt_count: 1, n: 20 }])
        for (const upload of uploads) expect(await blobRows(app, upload.digest)).toBe(1)
        expect(await counterValue("imgsrv_background_job_errors_total", { job: "cas-promotion" })).toBe(errorsBefore)
        expect(
          await counterValue("imgsrv_objectstore_operations_total", { outcome: "already_exists" }) +
            await counterValue("imgsrv_objectstore_operations_total", { outcome: "conflict" })
        ).toBe(conflictsBefore)
      } finally {
        await Promise.all([b.close(), c.close()])
      }
    })

    it("two uploads of the same bytes promoted by racing workers: one blob row, both ready", async () => {
      const bytes = testBytes(300 * 1024, 103)
      const [one, two] = [await completed(bytes), await completed(bytes)]
      const workers = [workerOn(app), workerOn(app)]
      try {
        const outcomes = await Promise.all(workers.map((w, i) => w.runOnce(`racer-${i}/cas-promotion`)))
        expect(outcomes).toEqual(["worked", "worked"])
        expect((await getUpload(app, one!.id)).state).toBe("ready")
        expect((await getUpload(app, two!.id)).state).toBe("ready")
        expect(await blobRows(app, one!.digest)).toBe(1)
        expect(await objects.stagingSize(one!.id)).toBeUndefined()
        expect(await objects.stagingSize(two!.id)).toBeUndefined()
        const download = await app.request("GET", `/v1/blobs/${one!.digest}`)
        expect(Buffer.from(await download.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true)
      } finally {
        await Promise.all(workers.map((w) => w.dispose()))
      }
    })

    it("an object moved into CAS by an attempt that died before recording is verified and reused", async () => {
      const bytes = testBytes(100 * 1024, 104)
      const upload = await completed(bytes)
      // What a worker leaves behind if it dies between the move and the database commit.
      await objects.run(
        Effect.flatMap(BlobStore, (s) => s.move(stagingKey(upload.id), casKey(upload.digest as Sha256Digest)))
      )
      const worker = workerOn(app)
      try {
        expect(await worker.runOnce("w/cas-promotion")).toBe("worked")
        expect((await getUpload(app, upload.id)).state).toBe("ready")
        expect(await blobRows(app, upload.digest)).toBe(1)
      } finally {
        await worker.dispose()
      }
    })

    it("a staged object that vanished fails the session with staged_object_missing", async () => {
      const upload = await completed(testBytes(1000, 105))
      await objects.run(Effect.flatMap(BlobStore, (s) => s.delete(stagingKey(upload.id))))
      const worker = workerOn(app)
      try {
        expect(await worker.runOnce("w/cas-promotion")).toBe("worked")
        expect(await getUpload(app, upload.id)).toMatchObject({
          state: "failed",
          failure_reason: "staged_object_missing"
        })
        expect((await jobOf(app, upload.id))?.state).toBe("failed")
      } finally {
        await worker.dispose()
      }
    })

    it("a store error gives the job back for a later attempt and is reported to the runner", async () => {
      const upload = await completed(testBytes(1000, 106))
      let failures = 1
      const reset = (operation: string, key: string) =>
        Effect.fail(new BlobStoreError({ operation, key, cause: new Error("connection reset") }))
      // The first look at the staged object fails, whichever it is.
      const flaky = workerOn(app, {
        wrap: (s) => ({
          ...s,
          stat: (key) => key === stagingKey(upload.id) && failures-- > 0 ? reset("stat", key) : s.stat(key),
          open: (key, range) =>
            key === stagingKey(upload.id) && failures-- > 0 ? reset("open", key) : s.open(key, range)
        })
      })
      try {
        await expect(flaky.runOnce("w/cas-promotion")).rejects.toThrow(/connection reset/)
        expect(await jobOf(app, upload.id)).toEqual({ state: "queued", attempt_count: 1, locked_by: null })
        expect((await getUpload(app, upload.id)).state).toBe("ingesting")
        // Due again after the backoff (5 s here), not at once.
        const [due] = await query<{ wait: number }>(
          app,
          "SELECT extract(epoch FROM run_after - now())::float8 AS wait FROM cas_ingest_jobs WHERE upload_id = $1",
          [upload.id]
        )
        expect(due!.wait).toBeGreaterThan(3)
        expect(await flaky.runOnce("w/cas-promotion")).toBe("idle")
        await query(app, "UPDATE cas_ingest_jobs SET run_after = now() WHERE upload_id = $1", [upload.id])
        expect(await flaky.runOnce("w/cas-promotion")).toBe("worked")
        expect((await getUpload(app, upload.id)).state).toBe("ready")
        expect(await jobOf(app, upload.id)).toEqual({ state: "succeeded", attempt_count: 2, locked_by: null })
      } finally {
        await flaky.dispose()
      }
    })

    it("a database failure while recording the outcome gives the job back at once and is reported to the runner", async () => {
      const upload = await completed(testBytes(1000, 107))
      const worker = workerOn(app)
      try {
        // A real database error in the outcome transaction: the blob row's table is not there.
        await query(app, "ALTER TABLE cas_blobs RENAME TO cas_blobs_away")
        try {
          await expect(worker.runOnce("w/cas-promotion")).rejects.toThrow(/Failed to execute statement/)
        } finally {
          await query(app, "ALTER TABLE cas_blobs_away RENAME TO cas_blobs")
        }
        // Given back (not left to its lease), due after the backoff.
        expect(await jobOf(app, upload.id)).toEqual({ state: "queued", attempt_count: 1, locked_by: null })
        expect((await getUpload(app, upload.id)).state).toBe("ingesting")
        expect(await worker.runOnce("w/cas-promotion")).toBe("idle")
        await query(app, "UPDATE cas_ingest_jobs SET run_after = now() WHERE upload_id = $1", [upload.id])
        expect(await worker.runOnce("w/cas-promotion")).toBe("worked")
        expect((await getUpload(app, upload.id)).state).toBe("ready")
        expect(await jobOf(app, upload.id)).toEqual({ state: "succeeded", attempt_count: 2, locked_by: null })
        expect(await blobRows(app, upload.digest)).toBe(1)
      } finally {
        await worker.dispose()
      }
    })
  })
}

describe("promotion is woken in-process", () => {
  let app: TestApp
  beforeAll(async () => {
    // A poll interval far beyond the test: only the wake-up can promote in time.
    app = await startTestApp({ settings: { "cas-promotion-poll-interval": "1h" } })
  })
  afterAll(async () => {
    await app?.close()
  })

  it("completing an upload promotes it at once, without waiting for the poll interval", async () => {
    const token = await app.tokenFor("content-writer")
    // Let the loop reach its first idle sleep.
    await sleep(200)
    const bytes = testBytes(1000, 107)
    const { session } = await beginUpload(app, token, {
      expected_digest: sha256Digest(bytes),
      expected_size_bytes: 1000
    })
    const part = await putPart(app, token, session.id, 1, bytes)
    await completeUpload(app, token, session.id, [part])
    expect((await waitForUploadState(app, session.id, ["ready", "failed"], 5_000)).state).toBe("ready")
  })

  it("is not itself a failure source: the loop keeps running after a wrong digest", async () => {
    const token = await app.tokenFor("content-writer")
    const bytes = testBytes(1000, 108)
    const wrong = await beginUpload(app, token, {
      expected_digest: sha256Digest(testBytes(1000, 109)),
      expected_size_bytes: 1000
    })
    await completeUpload(app, token, wrong.session.id, [await putPart(app, token, wrong.session.id, 1, bytes)])
    expect((await waitForUploadState(app, wrong.session.id, ["ready", "failed"], 5_000)).failure_reason).toBe(
      "digest_mismatch"
    )
    const right = await beginUpload(app, token, { expected_digest: sha256Digest(bytes), expected_size_bytes: 1000 })
    await completeUpload(app, token, right.session.id, [await putPart(app, token, right.session.id, 1, bytes)])
    expect((await waitForUploadState(app, right.session.id, ["ready", "failed"], 5_000)).state).toBe("ready")
  })
})
