/**
 * The expiry sweeper: sessions past `expires_at` that still accept parts become `aborted`,
 * their storage multipart upload is aborted and any staging object deleted.
 */
import { Clock, Duration, Effect, Layer, Logger, LogLevel, ManagedRuntime, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdir, readdir, stat, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlobStoreFromConfig } from "../../src/app.js"
import { AppConfig } from "../../src/platform/config/config.js"
import { BlobStore, BlobStoreError } from "../../src/platform/storage/blob-store/blob-store.js"
import { stagingKey } from "../../src/platform/storage/blob-store/keys.js"
import { DatabaseLive } from "../../src/platform/storage/database.js"
import { UploadExpirySweeper, UploadExpirySweeperLive } from "../../src/uploads/expiry-sweeper.js"
import { UploadRepositoryLive } from "../../src/uploads/repository.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  beginUpload,
  getUpload,
  putPart,
  sha256Digest,
  testBytes,
  uploadBlob,
  waitForUploadState
} from "../support/uploads.js"
import { expireSession, filesystemMultipartExists, itOn, sleep, storeOf, STORES } from "./fixtures.js"

const storageUploadIdOf = async (app: TestApp, id: string) =>
  (await query<{ storage_upload_id: string }>(app, "SELECT storage_upload_id FROM upload_sessions WHERE id = $1", [
    id
  ]))[0]!
    .storage_upload_id

for (const store of STORES) {
  describe(`expiry sweeper (${store} store)`, () => {
    let app: TestApp
    let token: string
    let objects: ReturnType<typeof storeOf>

    beforeAll(async () => {
      app = await startTestApp({ store })
      token = await app.tokenFor("content-writer")
      objects = storeOf(app)
    })
    afterAll(async () => {
      await objects?.dispose()
      await app?.close()
    })

    const started = async (seed: number) => {
      const bytes = testBytes(1000, seed)
      const { session } = await beginUpload(app, token, {
        expected_digest: sha256Digest(bytes),
        expected_size_bytes: 1000
      })
      const part = await putPart(app, token, session.id, 1, bytes)
      return { id: session.id, part }
    }

    itOn(store, "abortMultipartUpload")("aborts an expired session and discards its multipart upload", async () => {
      const upload = await started(301)
      const storageUploadId = await storageUploadIdOf(app, upload.id)
      await expireSession(app, upload.id)
      expect((await waitForUploadState(app, upload.id, ["aborted"], 2_000)).state).toBe("aborted")
      if (store === "filesystem") expect(filesystemMultipartExists(app, storageUploadId)).toBe(false)
      expect(await objects.stagingSize(upload.id)).toBeUndefined()
      expect((await app.request("PUT", `/v1/uploads/${upload.id}/parts/2`, { token, body: "x" })).status).toBe(412)
    })

    itOn(store, "abortMultipartUpload")(
      "deletes an assembled staging object left by a completion that never reached the database",
      async () => {
        const upload = await started(302)
        const storageUploadId = await storageUploadIdOf(app, upload.id)
        await objects.run(
          Effect.flatMap(BlobStore, (s) =>
            s.completeMultipartUpload(stagingKey(upload.id), storageUploadId, [{
              partNumber: 1,
              etag: upload.part.etag
            }]))
        )
        expect(await objects.stagingSize(upload.id)).toBe(1000)
        await expireSession(app, upload.id)
        expect((await waitForUploadState(app, upload.id, ["aborted"], 2_000)).state).toBe("aborted")
        expect(await objects.stagingSize(upload.id)).toBeUndefined()
      }
    )

    it("leaves unexpired sessions and sessions past uploading alone", async () => {
      const fresh = await started(303)
      const done = await uploadBlob(app, token, testBytes(500, 304))
      await expireSession(app, done.uploadId)
      await sleep(600)
      expect((await getUpload(app, fresh.id)).state).toBe("uploading")
      expect((await getUpload(app, done.uploadId)).state).toBe("ready")
    })
  })
}

describe("expiry sweeper when storage refuses", () => {
  let app: TestApp
  beforeAll(async () => {
    // The app's own sweeper is kept asleep (1 h poll) so this test drives the sweeps.
    app = await startTestApp({ settings: { "upload-expiry-poll-interval": "1h" } })
  })
  afterAll(async () => {
    await app?.close()
  })

  it("a session whose storage cannot be cleaned is retried later and does not hold up the others", async () => {
    const token = await app.tokenFor("content-writer")
    const begin = async (seed: number) => {
      const bytes = testBytes(10, seed)
      return (await beginUpload(app, token, { expected_digest: sha256Digest(bytes), expected_size_bytes: 10 })).session
        .id
    }
    const stubborn = await begin(311)
    const other = await begin(312)
    await expireSession(app, stubborn)
    await expireSession(app, other)
    await query(app, "UPDATE upload_sessions SET expires_at = expires_at - interval '1 minute' WHERE id = $1", [
      stubborn
    ])

    const config = { ...app.config, uploadExpiry: { ...app.config.uploadExpiry, errorBackoffMax: Duration.minutes(5) } }
    const store = Layer.effect(
      BlobStore,
      Effect.map(BlobStore, (s) => ({
        ...s,
        abortMultipartUpload: (key: ReturnType<typeof stagingKey>, uploadId: string) =>
          key === stagingKey(stubborn)
            ? Effect.fail(
              new BlobStoreError({ operation: "abortMultipartUpload", key, cause: new Error("access denied") })
            )
            : s.abortMultipartUpload(key, uploadId)
      }))
    ).pipe(Layer.provide(Layer.orDie(BlobStoreFromConfig(config))))
    const runtime = ManagedRuntime.make(
      UploadExpirySweeperLive.pipe(
        Layer.provide(UploadRepositoryLive),
        Layer.provide(store),
        Layer.provide(Layer.orDie(DatabaseLive({ url: Redacted.make(app.databaseUrl), maxConnections: 2 }))),
        Layer.provide(Layer.succeed(AppConfig, config)),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
      )
    )
    try {
      const sweep = () => runtime.runPromise(Effect.flatMap(UploadExpirySweeper, (s) => s.runOnce))
      // The stubborn session expired first, so it is tried first, and fails.
      await expect(sweep()).rejects.toThrow(/access denied/)
      expect((await getUpload(app, stubborn)).state).toBe("created")
      // Deferred: the next sweep takes the other one.
      expect(await sweep()).toBe("worked")
      expect((await getUpload(app, other)).state).toBe("aborted")
      expect(await sweep()).toBe("idle")
      const [row] = await query<{ deferred: boolean }>(
        app,
        "SELECT sweep_retry_at > now() + interval '4 minutes' AS deferred FROM upload_sessions WHERE id = $1",
        [stubborn]
      )
      expect(row).toEqual({ deferred: true })
    } finally {
      await runtime.dispose()
    }
  })
})

describe("expiry sweeper and the filesystem store's temporary files", () => {
  let app: TestApp
  beforeAll(async () => {
    // The app's own sweeper is kept asleep (1 h poll) so this test drives the sweeps.
    app = await startTestApp({ settings: { "upload-expiry-poll-interval": "1h" } })
  })
  afterAll(async () => {
    await app?.close()
  })

  /** The real clock moved `millis` ahead: files written now look that old to the sweeper. */
  const clockAhead = (millis: number): Clock.Clock => {
    const real = Clock.make()
    return {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => real.unsafeCurrentTimeMillis() + millis,
      currentTimeMillis: Effect.sync(() => real.unsafeCurrentTimeMillis() + millis),
      unsafeCurrentTimeNanos: () => real.unsafeCurrentTimeNanos() + BigInt(millis) * 1_000_000n,
      currentTimeNanos: Effect.sync(() => real.unsafeCurrentTimeNanos() + BigInt(millis) * 1_000_000n),
      sleep: (duration) => real.sleep(duration)
    }
  }

  it("removes what a crash during completion leaves in .imgsrv/tmp once it is an hour old, and nothing else", async () => {
    const token = await app.tokenFor("content-writer")
    const root = app.config.storage._tag === "filesystem" ? app.config.storage.root : ""
    const tmp = path.join(root, ".imgsrv", "tmp")
    // An upload in progress: its parts live in the store and must survive the sweep.
    const bytes = testBytes(3 * 1024 * 1024, 321)
    const { session } = await beginUpload(app, token, {
      expected_digest: sha256Digest(bytes),
      expected_size_bytes: bytes.byteLength
    })
    await putPart(app, token, session.id, 1, bytes)
    // What `kill -9` during complete leaves: the half-assembled object under a random temp name.
    const leftover = path.join(tmp, randomBytes(16).toString("hex"))
    await writeFile(leftover, bytes)
    await mkdir(path.join(tmp, "a-directory"))

    const runtime = ManagedRuntime.make(
      UploadExpirySweeperLive.pipe(
        Layer.provide(UploadRepositoryLive),
        Layer.provide(Layer.orDie(BlobStoreFromConfig(app.config))),
        Layer.provide(Layer.orDie(DatabaseLive({ url: Redacted.make(app.databaseUrl), maxConnections: 2 }))),
        Layer.provide(Layer.succeed(AppConfig, app.config)),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
      )
    )
    try {
      const sweepAt = (clock: Clock.Clock) =>
        runtime.runPromise(Effect.withClock(Effect.flatMap(UploadExpirySweeper, (s) => s.runOnce), clock))
      // Young, it may be a live write (another replica's): kept.
      expect(await sweepAt(clockAhead(0))).toBe("idle")
      expect((await stat(leftover)).size).toBe(bytes.byteLength)

      // An hour later (and past the sweeper's 10-minute spacing of these sweeps): removed.
      expect(await sweepAt(clockAhead(61 * 60_000))).toBe("idle")
      await expect(stat(leftover)).rejects.toThrow(/ENOENT/)
      expect((await stat(path.join(tmp, "a-directory"))).isDirectory()).toBe(true)
      expect(await readdir(tmp)).toEqual(["a-directory"])
      // The upload in progress is untouched and completes.
      expect((await getUpload(app, session.id)).state).toBe("uploading")
    } finally {
      await runtime.dispose()
    }
  })
})
