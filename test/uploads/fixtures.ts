import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Metric, MetricState } from "effect"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { it } from "vitest"
import { BlobStoreFromConfig } from "../../src/app.js"
import { type Sha256Digest } from "../../src/contract/digest.js"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { casKey, stagingKey, type StorageKey } from "../../src/platform/storage/blob-store/keys.js"
import { query } from "../support/blobs.js"
import type { StoreKind, TestApp } from "../support/harness.js"
import { S3RVER_GAPS, type S3rverGap } from "../support/s3-server.js"

/** Shared helpers of the uploads tests: direct looks at the database, the store and metrics. */

export const STORES: ReadonlyArray<StoreKind> = ["filesystem", "s3"]

/**
 * Features of real S3 these tests need and s3rver 3.7.1 lacks (see the list at the top of
 * test/platform/storage/blob-store.test.ts). A test that depends on one runs on s3rver as
 * `it.fails`, with the missing feature in its name, and turns red the day the server gets
 * it right.
 */
/** The s3rver gaps these upload tests meet (the full list: test/support/s3-server.ts). */
export type Gap = Extract<S3rverGap, "abortMultipartUpload" | "partEtagValidation">

/**
 * `it`, or `it.fails` naming the gap when the store is s3rver and the test needs `gap`.
 * `NO_GAPS=1` runs every test as a plain test, to see what the server really does.
 */
export const itOn = (store: StoreKind, gap?: Gap) => (name: string, fn: () => Promise<void>, timeout?: number) =>
  gap !== undefined && store === "s3" && process.env["NO_GAPS"] !== "1"
    ? it.fails(`${name} [gap: ${S3RVER_GAPS[gap].reason}]`, fn, timeout)
    : it(name, fn, timeout)

/** The app's own blob store (same configuration), to look at objects directly. */
export const storeOf = (app: TestApp) => {
  const runtime = ManagedRuntime.make(
    Layer.orDie(BlobStoreFromConfig(app.config)).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
  )
  const run = <A, E>(effect: Effect.Effect<A, E, BlobStore>) => runtime.runPromise(effect)
  /** Size of the object at `key`, or undefined when there is none. */
  const sizeOf = (key: StorageKey) =>
    run(
      Effect.flatMap(BlobStore, (store) => store.stat(key)).pipe(
        Effect.map((info): number | undefined => info.sizeBytes),
        Effect.catchTag("BlobNotFound", () => Effect.succeed(undefined))
      )
    )
  return {
    run,
    stagingSize: (uploadId: string) => sizeOf(stagingKey(uploadId)),
    casSize: (digest: string) => sizeOf(casKey(digest as Sha256Digest)),
    dispose: () => runtime.dispose()
  }
}

/** Filesystem store only: whether the driver still holds the multipart upload `storageUploadId`. */
export const filesystemMultipartExists = (app: TestApp, storageUploadId: string): boolean =>
  app.config.storage._tag === "filesystem" &&
  existsSync(path.join(app.config.storage.root, ".imgsrv", "multipart", storageUploadId))

/** Current value of a counter (summed over label sets matching `tags`). */
export const counterValue = async (name: string, tags: Record<string, string> = {}): Promise<number> => {
  const pairs = await Effect.runPromise(Metric.snapshot)
  let total = 0
  for (const pair of pairs) {
    if (pair.metricKey.name !== name) continue
    const labels = Object.fromEntries(pair.metricKey.tags.map((t) => [t.key, t.value]))
    if (!Object.entries(tags).every(([k, v]) => labels[k] === v)) continue
    const state = pair.metricState
    if (MetricState.isCounterState(state)) total += Number(state.count)
  }
  return total
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Pretends the session's TTL ran out an hour ago. */
export const expireSession = (app: TestApp, uploadId: string) =>
  query(
    app,
    `UPDATE upload_sessions SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'
     WHERE id = $1`,
    [uploadId]
  )
