import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Stream } from "effect"
import { createHash } from "node:crypto"
import pg from "pg"
import { BlobStoreFromConfig } from "../../src/app.js"
import { digestFromHex, type Sha256Digest } from "../../src/contract/digest.js"
import { BlobStore } from "../../src/platform/storage/blob-store/blob-store.js"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import type { TestApp } from "./harness.js"

/**
 * Trusted CAS blobs for catalog tests, written through the real components: the bytes
 * go into the app's own store (filesystem dir or S3 bucket) at `casKey(digest)` with
 * the BlobStore driver, and the `cas_blobs` row is inserted with SQL into the app's
 * database — exactly the state a finished upload + promotion leaves behind.
 * (End-to-end tests use real uploads through HTTP instead.)
 */

export interface SeededBlob {
  readonly digest: Sha256Digest
  readonly hex: string
  readonly size: number
  readonly bytes: Uint8Array
}

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export const describeBlob = (bytes: Uint8Array): SeededBlob => {
  const hex = sha256Hex(bytes)
  return { digest: digestFromHex(hex), hex, size: bytes.byteLength, bytes }
}

const quiet = Logger.minimumLogLevel(LogLevel.Warning)

/** A BlobStore on the app's configured storage, for the lifetime of the returned runtime. */
export const storeOf = (app: TestApp) => ManagedRuntime.make(BlobStoreFromConfig(app.config).pipe(Layer.provide(quiet)))

/** Writes `bytes` to `key` with a one-part multipart upload (works on both drivers, any size). */
const putObject = (key: ReturnType<typeof casKey>, bytes: Uint8Array) =>
  Effect.gen(function*() {
    const store = yield* BlobStore
    const uploadId = yield* store.createMultipartUpload(key)
    const part = yield* store.putPart(key, uploadId, 1, Stream.make(bytes), bytes.byteLength)
    yield* store.completeMultipartUpload(key, uploadId, [{ partNumber: 1, etag: part.etag }])
  })

export const withClient = async <A>(url: string, f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/** Puts `bytes` into the app's CAS and records them as a verified blob. */
export const seedBlob = async (app: TestApp, bytes: Uint8Array, mediaType?: string): Promise<SeededBlob> => {
  const blob = describeBlob(bytes)
  const runtime = storeOf(app)
  try {
    await runtime.runPromise(putObject(casKey(blob.digest), bytes))
  } finally {
    await runtime.dispose()
  }
  await withClient(app.databaseUrl, (c) =>
    c.query(
      `INSERT INTO cas_blobs (digest, size_bytes, storage_key, media_type) VALUES ($1, $2, $3, $4)
       ON CONFLICT (digest) DO NOTHING`,
      [blob.digest, blob.size, casKey(blob.digest), mediaType ?? null]
    ))
  return blob
}

/** Deletes a blob's bytes from the store, leaving its `cas_blobs` row (makes it unreadable). */
export const removeBlobBytes = async (app: TestApp, blob: SeededBlob): Promise<void> => {
  const runtime = storeOf(app)
  try {
    await runtime.runPromise(Effect.flatMap(BlobStore, (store) => store.delete(casKey(blob.digest))))
  } finally {
    await runtime.dispose()
  }
}

/** Puts a blob's bytes back after `removeBlobBytes`. */
export const restoreBlobBytes = async (app: TestApp, blob: SeededBlob): Promise<void> => {
  const runtime = storeOf(app)
  try {
    await runtime.runPromise(putObject(casKey(blob.digest), blob.bytes))
  } finally {
    await runtime.dispose()
  }
}

/** Runs `f` with a pg client on the app's database (raw SQL in tests). */
export const withDatabase = <A>(app: TestApp, f: (client: pg.Client) => Promise<A>): Promise<A> =>
  withClient(app.databaseUrl, f)

/** One SQL statement against the app's database; its rows. */
export const query = <R extends Record<string, unknown>>(
  app: Pick<TestApp, "databaseUrl">,
  text: string,
  params: ReadonlyArray<unknown> = []
): Promise<ReadonlyArray<R>> =>
  withClient(app.databaseUrl, async (client) => (await client.query<R>(text, [...params])).rows)
