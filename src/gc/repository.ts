import { SqlClient, type SqlError, SqlSchema } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema, type Scope } from "effect"
import type { Sha256Digest } from "../contract/digest.js"
import { dieOnSqlError } from "../platform/storage/sql-errors.js"
import { recordEvent } from "../webhooks/outbox.js"
import { CollectableBlob, SessionClaim } from "./schema.js"

/**
 * SQL of the garbage collector (migration 0009). No rules here: the protocol is in
 * `service.ts`. "Collectable" is one SQL predicate (`collectable`), used both to list
 * candidates and to re-check one under its digest lock, so the two cannot disagree.
 *
 * This is the SQL boundary: a database that fails (or a row that does not match its schema)
 * is a defect here; the collector expects no constraint to refuse it.
 */

/** Session-level advisory lock held for a whole run: one collector at a time across replicas. */
const RUN_LOCK_KEY = "7596490406398950223"
/** Must match `gc_digest_lock_key()` in migrations/0009_gc.sql. */
const DIGEST_LOCK_NAMESPACE = 26467

const LockRow = Schema.Struct({ locked: Schema.Boolean })

export class GcRepository extends Context.Tag("imgsrv/gc/GcRepository")<GcRepository, {
  /**
   * Tries to take the run lock on a connection of its own, held until the scope closes
   * (PostgreSQL drops it with the connection if the process dies). False: someone else has it.
   */
  readonly acquireRunLock: Effect.Effect<boolean, never, Scope.Scope>
  /** Blobs collectable now (`graceMillis` after their last reference), oldest digest order. */
  readonly candidates: (graceMillis: number) => Effect.Effect<ReadonlyArray<CollectableBlob>>
  /**
   * One transaction: the digest's lock exclusive, the blob re-checked (still collectable,
   * row locked), then its tombstone written, the row deleted, `blob.collected` recorded.
   * None when it is no longer collectable.
   */
  readonly collect: (digest: Sha256Digest, graceMillis: number) => Effect.Effect<Option.Option<CollectableBlob>>
  /** Tombstones: collections whose object may still be in the store. */
  readonly tombstones: Effect.Effect<ReadonlyArray<CollectableBlob>>
  readonly deleteTombstone: (digest: Sha256Digest) => Effect.Effect<void>
  /** "Unreferenced since" marks of digests that have no blob row (nothing to collect). */
  readonly pruneReleases: Effect.Effect<number>
  /** The sessions owning these staging keys. */
  readonly sessionsByStagingKey: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<SessionClaim>>
  /** The sessions owning these store multipart upload ids. */
  readonly sessionsByUploadId: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<SessionClaim>>
}>() {}

export const GcRepositoryLive = Layer.effect(
  GcRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /**
     * Nothing references the digest — no artifact, no attachment, no upload session that is
     * not finished — and its last reference ended more than the grace period ago: the blob's
     * creation, the last change of any upload session of the digest (ending `ready` is one),
     * and the last artifact or attachment row naming it that went away (cas_blob_releases).
     */
    const collectable = (graceMillis: number) =>
      sql`
        NOT EXISTS (SELECT 1 FROM release_artifacts a WHERE a.primary_blob_digest = b.digest)
        AND NOT EXISTS (SELECT 1 FROM artifact_attachments t WHERE t.blob_digest = b.digest)
        AND NOT EXISTS (
          SELECT 1 FROM upload_sessions s
          WHERE s.expected_digest = b.digest AND s.state IN ('created', 'uploading', 'completed', 'ingesting')
        )
        AND greatest(
          b.created_at,
          (SELECT max(s.updated_at) FROM upload_sessions s WHERE s.expected_digest = b.digest),
          (SELECT r.released_at FROM cas_blob_releases r WHERE r.digest = b.digest)
        ) <= clock_timestamp() - ${graceMillis} * interval '1 millisecond'`

    const blobs = (execute: () => Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      SqlSchema.findAll({ Request: Schema.Void, Result: CollectableBlob, execute })(undefined)

    const claimsBy = (column: "staging_key" | "storage_upload_id") =>
      SqlSchema.findAll({
        Request: Schema.Array(Schema.String),
        Result: SessionClaim,
        execute: (values) =>
          sql`SELECT staging_key, storage_upload_id, state FROM upload_sessions WHERE ${sql(column)} IN ${
            sql.in(values)
          }`
      })
    const claims = (column: "staging_key" | "storage_upload_id") => {
      const find = claimsBy(column)
      return (values: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<SessionClaim>> =>
        values.length === 0 ? Effect.succeed([]) : dieOnSqlError(find(values))
    }

    return GcRepository.of({
      acquireRunLock: Effect.gen(function*() {
        const connection = yield* sql.reserve
        const rows = yield* connection.execute(
          "SELECT pg_try_advisory_lock($1::bigint) AS locked",
          [RUN_LOCK_KEY],
          undefined
        )
        const { locked } = yield* Schema.decodeUnknown(LockRow)(rows[0])
        if (locked) {
          yield* Effect.addFinalizer(() =>
            connection.execute("SELECT pg_advisory_unlock($1::bigint)", [RUN_LOCK_KEY], undefined).pipe(
              Effect.catchAll((error) => Effect.logWarning("releasing the garbage collection lock failed", error))
            )
          )
        }
        return locked
      }).pipe(dieOnSqlError),

      candidates: (graceMillis) =>
        dieOnSqlError(blobs(() =>
          sql`
            SELECT b.digest, b.size_bytes, b.storage_key FROM cas_blobs b
            WHERE ${collectable(graceMillis)}
            ORDER BY b.digest`
        )),

      collect: (digest, graceMillis) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`SELECT pg_advisory_xact_lock(${DIGEST_LOCK_NAMESPACE}::int, hashtext(${digest}))`
          // A new statement after the lock: its snapshot holds every reference committed before.
          const [blob] = yield* blobs(() =>
            sql`
              SELECT b.digest, b.size_bytes, b.storage_key FROM cas_blobs b
              WHERE b.digest = ${digest} AND ${collectable(graceMillis)}
              FOR UPDATE OF b`
          )
          if (blob === undefined) return Option.none()
          yield* sql`
            INSERT INTO gc_blob_deletions (digest, storage_key, size_bytes)
            VALUES (${blob.digest}, ${blob.storageKey}, ${blob.sizeBytes})`
          yield* sql`DELETE FROM cas_blobs WHERE digest = ${blob.digest}`
          yield* sql`DELETE FROM cas_blob_releases WHERE digest = ${blob.digest}`
          yield* recordEvent(sql, {
            type: "blob.collected",
            imageName: null,
            data: { blob: { digest: blob.digest, size_bytes: blob.sizeBytes }, url: `/v1/blobs/${blob.digest}` }
          })
          return Option.some(blob)
        })).pipe(dieOnSqlError),

      tombstones: dieOnSqlError(
        blobs(() => sql`SELECT digest, size_bytes, storage_key FROM gc_blob_deletions ORDER BY deleted_at, digest`)
      ),

      deleteTombstone: (digest) =>
        sql`DELETE FROM gc_blob_deletions WHERE digest = ${digest}`.pipe(Effect.asVoid, dieOnSqlError),

      pruneReleases: sql`
        DELETE FROM cas_blob_releases r
        WHERE NOT EXISTS (SELECT 1 FROM cas_blobs b WHERE b.digest = r.digest)
        RETURNING r.digest`.pipe(Effect.map((rows) => rows.length), dieOnSqlError),

      sessionsByStagingKey: claims("staging_key"),
      sessionsByUploadId: claims("storage_upload_id")
    })
  })
)
