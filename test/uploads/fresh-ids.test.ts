/**
 * Ids and time behind services (issue 12): the upload service takes its session and
 * promotion-job ids from `FreshIds` and its time from effect's `Clock`, so a test can fix
 * both. Driven through the service itself (the HTTP API runs with the defaults), on a real
 * database and store; the result is read back over HTTP and from the database.
 */
import { Clock, Duration, Effect, Layer, Logger, LogLevel, ManagedRuntime, Redacted, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlobStoreFromConfig } from "../../src/app.js"
import type { Sha256Digest } from "../../src/contract/digest.js"
import { formatTimestamp } from "../../src/contract/timestamp.js"
import { AppConfig } from "../../src/platform/config/config.js"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { DatabaseLive } from "../../src/platform/storage/database.js"
import { ReceivedHashesLive } from "../../src/uploads/receive-hash.js"
import { UploadRepositoryLive } from "../../src/uploads/repository.js"
import { PromotionWakeLive, Uploads, UploadsLive } from "../../src/uploads/service.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { getUpload, sha256Digest, testBytes } from "../support/uploads.js"

/** A clock stopped at `millis` (sleeps still take real time). */
const stoppedAt = (millis: number): Clock.Clock => {
  const real = Clock.make()
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => millis,
    currentTimeMillis: Effect.succeed(millis),
    unsafeCurrentTimeNanos: () => BigInt(millis) * 1_000_000n,
    currentTimeNanos: Effect.succeed(BigInt(millis) * 1_000_000n),
    sleep: (duration) => real.sleep(duration)
  }
}

describe("uploads take their ids from FreshIds and their time from Clock", () => {
  let app: TestApp
  beforeAll(async () => {
    app = await startTestApp()
  })
  afterAll(async () => {
    await app?.close()
  })

  it("a session begun and completed with fixed ids and a stopped clock carries exactly those", async () => {
    const runtime = ManagedRuntime.make(
      UploadsLive.pipe(
        Layer.provide(Layer.mergeAll(UploadRepositoryLive, ReceivedHashesLive, PromotionWakeLive)),
        Layer.provide(Layer.orDie(BlobStoreFromConfig(app.config))),
        Layer.provide(Layer.orDie(DatabaseLive({ url: Redacted.make(app.databaseUrl), maxConnections: 2 }))),
        Layer.provide(Layer.succeed(AppConfig, app.config)),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
      )
    )
    const sessionId = "00000000-0000-4000-8000-00000000a001"
    const jobId = "00000000-0000-4000-8000-00000000a002"
    const fresh = [sessionId, jobId]
    // Years ahead, so the session is not expired by the real clock of the app that reads it back.
    const now = Date.UTC(2031, 0, 2, 3, 4, 5, 670)
    const fixed = <A, E>(effect: Effect.Effect<A, E, Uploads>) =>
      effect.pipe(
        Effect.provideService(FreshIds, { uuid: Effect.sync(() => fresh.shift()!) }),
        Effect.withClock(stoppedAt(now))
      )
    const bytes = testBytes(1000, 7)
    try {
      const begun = await runtime.runPromise(fixed(Effect.flatMap(Uploads, (uploads) =>
        uploads.begin({
          expectedDigest: sha256Digest(bytes) as Sha256Digest,
          expectedSizeBytes: bytes.byteLength,
          mediaTypeHint: null,
          filenameHint: null
        }))))
      expect(begun.created).toBe(true)
      expect(begun.session.id).toBe(sessionId)
      const expiresAt = formatTimestamp(new Date(now + Duration.toMillis(app.config.uploadTtl)))
      expect((await getUpload(app, sessionId)).expires_at).toBe(expiresAt)
      const [row] = await query<{ created_at: Date }>(app, "SELECT created_at FROM upload_sessions WHERE id = $1", [
        sessionId
      ])
      expect(row!.created_at.getTime()).toBe(now)

      await runtime.runPromise(fixed(Effect.flatMap(Uploads, (uploads) =>
        Effect.gen(function*() {
          const part = yield* uploads.putPart(begun.session.id, 1, Stream.make(bytes), bytes.byteLength)
          yield* uploads.complete(begun.session.id, [{ number: 1, etag: part.etag, sizeBytes: part.sizeBytes }])
        }))))
      const jobs = await query<{ id: string }>(app, "SELECT id FROM cas_ingest_jobs WHERE upload_id = $1", [sessionId])
      expect(jobs).toEqual([{ id: jobId }])
      expect(fresh).toEqual([])
    } finally {
      await runtime.dispose()
    }
  })
})
