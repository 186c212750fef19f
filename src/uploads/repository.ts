import type { SqlError } from "@effect/sql"
import { SqlClient, SqlSchema } from "@effect/sql"
import { Context, Data, Effect, Layer, Option, Schema } from "effect"
import { Sha256Digest } from "../contract/digest.js"
import {
  type BlobBeingCollected,
  type BlobNotTrusted,
  claimDigestForBlob,
  refusedUntrusted,
  refusedWhileCollected
} from "../gc/claims.js"
import { stripQuotes } from "../platform/storage/blob-store/blob-store.js"
import { casKey, stagingKey } from "../platform/storage/blob-store/keys.js"
import { dieOnSqlError, type Infrastructure } from "../platform/storage/sql-errors.js"
import { recordEvent } from "../webhooks/outbox.js"
import type { NewEvent } from "../webhooks/schema.js"
import {
  type CasBlob,
  FailureReason,
  IngestJobId,
  UploadId,
  type UploadPart,
  type UploadSession,
  UploadState
} from "./schema.js"

/**
 * SQL of uploads, CAS blobs and the promotion queue (domain.md §1.2). No rules here:
 * the state machine is in `service.ts`, promotion in `promotion-worker.ts`, expiry in
 * `expiry-sweeper.ts`. Statements that move a session between states are conditional
 * on the state they leave, so a concurrent caller can never skip a step; callers learn
 * from an empty result that someone else got there first.
 *
 * This is the SQL boundary: a database that fails (or a row that does not match its
 * schema) is a defect here, and the only failures a method declares are the garbage
 * collector's refusals its callers expect (`BlobNotTrusted`, `BlobBeingCollected`).
 *
 * Clocks: session lifetimes (`created_at`, `expires_at`) use the application clock the
 * service passes in; leases use the database's `now()`, the one clock every replica shares.
 */

const SessionRow = Schema.Struct({
  id: UploadId,
  expected_digest: Sha256Digest,
  expected_size_bytes: Schema.Number,
  state: UploadState,
  storage_upload_id: Schema.String,
  media_type_hint: Schema.NullOr(Schema.String),
  filename_hint: Schema.NullOr(Schema.String),
  expires_at: Schema.DateFromSelf,
  completed_at: Schema.NullOr(Schema.DateFromSelf),
  failure_reason: Schema.NullOr(FailureReason),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})

const PartRow = Schema.Struct({
  upload_id: UploadId,
  part_number: Schema.Number,
  etag: Schema.String,
  size_bytes: Schema.Number
})

const BlobRow = Schema.Struct({
  digest: Sha256Digest,
  size_bytes: Schema.Number,
  media_type: Schema.NullOr(Schema.String),
  verified_at: Schema.DateFromSelf
})

const JobRow = Schema.Struct({
  id: IngestJobId,
  upload_id: UploadId,
  attempt_count: Schema.Number,
  locked_by: Schema.String,
  trace_parent: Schema.NullOr(Schema.String),
  received_digest: Schema.NullOr(Sha256Digest),
  received_size_bytes: Schema.NullOr(Schema.Number),
  received_etag: Schema.NullOr(Schema.String)
})

const IdRow = Schema.Struct({ id: Schema.String })
const StateCountRow = Schema.Struct({ state: Schema.String, n: Schema.Number })
const AgesRow = Schema.Struct({ queued: Schema.NullOr(Schema.Number), running: Schema.NullOr(Schema.Number) })
const TotalsRow = Schema.Struct({ n: Schema.Number, bytes: Schema.Number })

type Query = Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>

// The rows of one statement, decoded (SqlSchema): a row that does not match its schema is a
// ParseError, which the boundary turns into a defect (the database and the code disagree).
const all = <A, I>(Result: Schema.Schema<A, I>) => (query: Query) =>
  SqlSchema.findAll({ Request: Schema.Void, Result, execute: () => query })(undefined)
const first = <A, I>(Result: Schema.Schema<A, I>) => (query: Query) =>
  SqlSchema.findOne({ Request: Schema.Void, Result, execute: () => query })(undefined)
/** For aggregates, which always answer one row: none at all is a defect like any other. */
const single = <A, I>(Result: Schema.Schema<A, I>) => (query: Query) =>
  SqlSchema.single({ Request: Schema.Void, Result, execute: () => query })(undefined).pipe(
    Effect.catchTag("NoSuchElementException", Effect.die)
  )

const toSession = (row: typeof SessionRow.Type): UploadSession => ({
  id: row.id,
  expectedDigest: row.expected_digest,
  expectedSizeBytes: row.expected_size_bytes,
  state: row.state,
  storageUploadId: row.storage_upload_id,
  stagingKey: stagingKey(row.id),
  mediaTypeHint: row.media_type_hint,
  filenameHint: row.filename_hint,
  expiresAt: row.expires_at,
  completedAt: row.completed_at,
  failureReason: row.failure_reason,
  createdAt: row.created_at,
  updatedAt: row.updated_at
})

const toPart = (row: typeof PartRow.Type): UploadPart => ({
  uploadId: row.upload_id,
  partNumber: row.part_number,
  // Parts recorded before part ETags went bare were stored quoted.
  etag: stripQuotes(row.etag),
  sizeBytes: row.size_bytes
})

const toBlob = (row: typeof BlobRow.Type): CasBlob => ({
  digest: row.digest,
  sizeBytes: row.size_bytes,
  mediaType: row.media_type,
  verifiedAt: row.verified_at
})

const oneSession = (query: Query) => first(SessionRow)(query).pipe(Effect.map(Option.map(toSession)))

/** Internal: a fenced statement found the claim gone, so its transaction rolls back. */
class ClaimLost extends Data.TaggedError("ClaimLost")<{}> {}

/** A claimed promotion job: the pair (`lockedBy`, `attemptCount`) is its fencing token. */
export interface ClaimedJob {
  readonly id: IngestJobId
  readonly uploadId: UploadId
  readonly attemptCount: number
  readonly lockedBy: string
  readonly traceParent: string | null
  /** Digest and size hashed while the parts were received, and the staged ETag they describe. */
  readonly received: ReceivedObject | null
}

/** The assembled object as hashed on the way in (see `receive-hash.ts`). */
export interface ReceivedObject {
  readonly digest: Sha256Digest
  readonly sizeBytes: number
  readonly etag: string
}

export interface NewSession {
  readonly id: UploadId
  readonly expectedDigest: Sha256Digest
  readonly expectedSizeBytes: number
  readonly storageUploadId: string
  readonly mediaTypeHint: string | null
  readonly filenameHint: string | null
  readonly createdAt: Date
  readonly expiresAt: Date
}

export interface Sample {
  readonly label: string
  readonly value: number
}

export class UploadRepository extends Context.Tag("imgsrv/UploadRepository")<UploadRepository, {
  /**
   * Runs `effect` in one transaction (a savepoint when already inside one); a failing
   * database, in the transaction or in `effect`, is a defect.
   */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, Exclude<E, Infrastructure>, R>

  // --- sessions -------------------------------------------------------------------
  readonly insertCreatedSession: (session: NewSession) => Effect.Effect<UploadSession>
  /**
   * A session born `ready` because the digest is already trusted (no staging, no job), and
   * `alsoRecord(session)` (the upload.ready event) in the same transaction. `BlobNotTrusted`
   * when the collector deleted the blob row meanwhile: nothing is written.
   */
  readonly insertReadySession: (
    session: NewSession,
    alsoRecord: (inserted: UploadSession) => NewEvent
  ) => Effect.Effect<UploadSession, BlobNotTrusted>
  readonly findSession: (id: UploadId) => Effect.Effect<Option.Option<UploadSession>>
  readonly listParts: (id: UploadId) => Effect.Effect<ReadonlyArray<UploadPart>>
  /**
   * Records an accepted part (upsert: a re-PUT replaces) and moves `created → uploading`,
   * in one transaction. None when the session no longer accepts parts.
   */
  readonly recordPart: (part: UploadPart) => Effect.Effect<Option.Option<UploadPart>>
  /**
   * `created|uploading → completed` and queues its one promotion job, in one transaction.
   * None when the session had already left those states.
   */
  readonly markCompleted: (
    id: UploadId,
    job: {
      readonly id: IngestJobId
      readonly traceParent: string | undefined
      readonly received: ReceivedObject | undefined
    }
  ) => Effect.Effect<Option.Option<UploadSession>>
  /** `created|uploading → aborted`. None when the session had already left those states. */
  readonly markAborted: (id: UploadId) => Effect.Effect<Option.Option<UploadSession>>
  /**
   * Inside a transaction: locks the session that expired longest ago and still accepts
   * parts, skipping rows other replicas hold.
   */
  readonly lockNextExpired: (now: Date) => Effect.Effect<Option.Option<UploadSession>>
  /** Defers the next sweep of a session whose storage could not be cleaned. */
  readonly deferSweep: (id: UploadId, retryAfterMillis: number) => Effect.Effect<void>

  // --- CAS blobs ------------------------------------------------------------------
  readonly findBlob: (digest: Sha256Digest) => Effect.Effect<Option.Option<CasBlob>>
  /**
   * Inside a transaction: the digest's garbage-collection lock, shared until commit
   * (`claimDigestForBlob` in src/gc/claims.ts); `BlobBeingCollected` while a collection
   * of the digest is unfinished.
   */
  readonly claimDigestForBlob: (digest: Sha256Digest) => Effect.Effect<void, BlobBeingCollected>

  // --- promotion queue ------------------------------------------------------------
  /**
   * Claims the oldest due job — queued, or running under a lease that has expired — with
   * `FOR UPDATE SKIP LOCKED`, takes a lease of `leaseMillis` and moves its session
   * `completed → ingesting`, in one transaction.
   */
  readonly claimJob: (workerId: string, leaseMillis: number) => Effect.Effect<
    Option.Option<{
      readonly job: ClaimedJob
      readonly session: Option.Option<UploadSession>
    }>
  >
  /** Pushes the lease forward; false when the job is no longer held by this claim. */
  readonly heartbeat: (job: ClaimedJob, leaseMillis: number) => Effect.Effect<boolean>
  /**
   * One transaction: the blob row (first writer wins), session `ready`, job `succeeded`,
   * and `alsoWhenSessionChanged` (the upload.ready event) when the session moved.
   * False — and nothing written — when the claim was lost; `BlobBeingCollected` (nothing
   * written) while a collection of the digest is unfinished.
   */
  readonly recordPromoted: (job: ClaimedJob, blob: {
    readonly digest: Sha256Digest
    readonly sizeBytes: number
    readonly mediaType: string | null
  }, alsoWhenSessionChanged?: NewEvent) => Effect.Effect<boolean, BlobBeingCollected>
  /**
   * One transaction: session `failed` with its reason, job `failed`, and
   * `alsoWhenSessionChanged` (the upload.failed event) when the session moved. False when
   * the claim was lost.
   */
  readonly recordFailed: (job: ClaimedJob, failure: {
    readonly reason: FailureReason
    readonly message: string
  }, alsoWhenSessionChanged?: NewEvent) => Effect.Effect<boolean>
  /** Gives the job back to the queue after a transient error, due again in `retryAfterMillis`. */
  readonly releaseJob: (job: ClaimedJob, retryAfterMillis: number, message: string) => Effect.Effect<boolean>
  /** Finishes a job whose session cannot be promoted (not `completed`/`ingesting`). */
  readonly dropJob: (job: ClaimedJob, message: string) => Effect.Effect<boolean>

  // --- scrape-time figures --------------------------------------------------------
  readonly sessionsByState: Effect.Effect<ReadonlyArray<Sample>>
  readonly jobsByState: Effect.Effect<ReadonlyArray<Sample>>
  /** Seconds since the oldest due queued job became due / the oldest running job was claimed. */
  readonly oldestJobAges: Effect.Effect<
    { readonly queued: Option.Option<number>; readonly running: Option.Option<number> }
  >
  readonly blobTotals: Effect.Effect<{ readonly count: number; readonly bytes: number }>
}>() {}

export const UploadRepositoryLive = Layer.effect(
  UploadRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insertSession = (s: NewSession, state: "created" | "ready") =>
      oneSession(sql`
        INSERT INTO upload_sessions (
          id, expected_digest, expected_size_bytes, state, storage_upload_id, staging_key,
          media_type_hint, filename_hint, expires_at, created_at, updated_at,
          completed_at, ready_at, ready_blob_digest
        ) VALUES (
          ${s.id}, ${s.expectedDigest}, ${s.expectedSizeBytes}, ${state}, ${s.storageUploadId},
          ${stagingKey(s.id)}, ${s.mediaTypeHint}, ${s.filenameHint}, ${s.expiresAt}, ${s.createdAt}, ${s.createdAt},
          ${state === "ready" ? s.createdAt : null}, ${state === "ready" ? s.createdAt : null},
          ${state === "ready" ? s.expectedDigest : null}
        )
        RETURNING *`).pipe(
        // INSERT … RETURNING answers its row, or fails.
        Effect.flatMap(Option.match({
          onNone: () => Effect.dieMessage("INSERT INTO upload_sessions returned no row"),
          onSome: Effect.succeed
        }))
      )

    const claimed = (job: ClaimedJob) =>
      sql`id = ${job.id} AND state = 'running' AND locked_by = ${job.lockedBy} AND attempt_count = ${job.attemptCount}`

    /** Whether a conditional statement … RETURNING id matched its row. */
    const matched = (query: Query) => all(IdRow)(query).pipe(Effect.map((rows) => rows.length > 0))

    /** Fails (rolling the transaction back) when the claim was lost. */
    const requireClaim = (query: Query) =>
      Effect.flatMap(matched(query), (held) => held ? Effect.void : Effect.fail(new ClaimLost()))

    const fenced = (
      effect: Effect.Effect<unknown, Infrastructure | ClaimLost>
    ): Effect.Effect<boolean, Infrastructure> =>
      sql.withTransaction(effect).pipe(
        Effect.as(true),
        Effect.catchTag("ClaimLost", () => Effect.succeed(false))
      )

    const countBy = (query: Query) =>
      all(StateCountRow)(query).pipe(
        Effect.map((rows): ReadonlyArray<Sample> => rows.map((r) => ({ label: r.state, value: r.n }))),
        dieOnSqlError
      )

    return UploadRepository.of({
      transaction: (effect) => dieOnSqlError(sql.withTransaction(effect)),

      insertCreatedSession: (s) => dieOnSqlError(insertSession(s, "created")),
      insertReadySession: (s, alsoRecord) =>
        sql.withTransaction(
          insertSession(s, "ready").pipe(Effect.tap((inserted) => recordEvent(sql, alsoRecord(inserted))))
        ).pipe(refusedUntrusted, dieOnSqlError),

      findSession: (id) => dieOnSqlError(oneSession(sql`SELECT * FROM upload_sessions WHERE id = ${id}`)),

      listParts: (id) =>
        all(PartRow)(sql`SELECT * FROM upload_parts WHERE upload_id = ${id} ORDER BY part_number`).pipe(
          Effect.map((rows) => rows.map(toPart)),
          dieOnSqlError
        ),

      recordPart: (part) =>
        sql.withTransaction(Effect.gen(function*() {
          const moved = yield* matched(sql`
            UPDATE upload_sessions SET state = 'uploading', updated_at = now()
            WHERE id = ${part.uploadId} AND state IN ('created', 'uploading')
            RETURNING id`)
          if (!moved) return Option.none()
          const row = yield* first(PartRow)(sql`
            INSERT INTO upload_parts (upload_id, part_number, etag, size_bytes)
            VALUES (${part.uploadId}, ${part.partNumber}, ${part.etag}, ${part.sizeBytes})
            ON CONFLICT (upload_id, part_number)
            DO UPDATE SET etag = EXCLUDED.etag, size_bytes = EXCLUDED.size_bytes, updated_at = now()
            RETURNING *`)
          return Option.map(row, toPart)
        })).pipe(dieOnSqlError),

      markCompleted: (id, job) =>
        sql.withTransaction(Effect.gen(function*() {
          const session = yield* oneSession(sql`
            UPDATE upload_sessions
            SET state = 'completed', completed_at = COALESCE(completed_at, now()), updated_at = now()
            WHERE id = ${id} AND state IN ('created', 'uploading')
            RETURNING *`)
          if (Option.isNone(session)) return session
          // The unique upload_id is the backstop: one job per session, whatever happens.
          yield* sql`
            INSERT INTO cas_ingest_jobs (
              id, upload_id, state, trace_parent, received_digest, received_size_bytes, received_etag
            ) VALUES (
              ${job.id}, ${id}, 'queued', ${job.traceParent ?? null}, ${job.received?.digest ?? null},
              ${job.received?.sizeBytes ?? null}, ${job.received?.etag ?? null}
            )
            ON CONFLICT (upload_id) DO NOTHING`
          return session
        })).pipe(dieOnSqlError),

      markAborted: (id) =>
        dieOnSqlError(oneSession(sql`
          UPDATE upload_sessions SET state = 'aborted', aborted_at = now(), updated_at = now()
          WHERE id = ${id} AND state IN ('created', 'uploading')
          RETURNING *`)),

      lockNextExpired: (now) =>
        dieOnSqlError(oneSession(sql`
          SELECT * FROM upload_sessions
          WHERE state IN ('created', 'uploading') AND expires_at <= ${now}
            AND (sweep_retry_at IS NULL OR sweep_retry_at <= now())
          ORDER BY expires_at, id
          LIMIT 1
          FOR UPDATE SKIP LOCKED`)),

      deferSweep: (id, retryAfterMillis) =>
        sql`
          UPDATE upload_sessions SET sweep_retry_at = now() + ${retryAfterMillis} * interval '1 millisecond'
          WHERE id = ${id}`.pipe(Effect.asVoid, dieOnSqlError),

      findBlob: (digest) =>
        first(BlobRow)(sql`SELECT * FROM cas_blobs WHERE digest = ${digest}`).pipe(
          Effect.map(Option.map(toBlob)),
          dieOnSqlError
        ),

      claimDigestForBlob: (digest) => dieOnSqlError(claimDigestForBlob(sql, digest)),

      claimJob: (workerId, leaseMillis) =>
        sql.withTransaction(Effect.gen(function*() {
          const claimedRow = yield* first(JobRow)(sql`
            WITH next AS (
              SELECT id FROM cas_ingest_jobs
              WHERE (state = 'queued' AND run_after <= now())
                 OR (state = 'running' AND lease_expires_at <= now())
              ORDER BY run_after, id
              LIMIT 1
              FOR UPDATE SKIP LOCKED
            )
            UPDATE cas_ingest_jobs j
            SET state = 'running',
                attempt_count = j.attempt_count + 1,
                locked_by = ${workerId},
                locked_at = now(),
                lease_expires_at = now() + ${leaseMillis} * interval '1 millisecond',
                started_at = COALESCE(j.started_at, now()),
                updated_at = now()
            FROM next
            WHERE j.id = next.id
            RETURNING j.id, j.upload_id, j.attempt_count, j.locked_by, j.trace_parent,
                      j.received_digest, j.received_size_bytes, j.received_etag`)
          if (Option.isNone(claimedRow)) return Option.none()
          const row = claimedRow.value
          const session = yield* oneSession(sql`
            UPDATE upload_sessions
            SET state = 'ingesting', ingest_started_at = COALESCE(ingest_started_at, now()), updated_at = now()
            WHERE id = ${row.upload_id} AND state IN ('completed', 'ingesting')
            RETURNING *`)
          const job: ClaimedJob = {
            id: row.id,
            uploadId: row.upload_id,
            attemptCount: row.attempt_count,
            lockedBy: row.locked_by,
            traceParent: row.trace_parent,
            received: row.received_digest !== null && row.received_size_bytes !== null && row.received_etag !== null
              ? { digest: row.received_digest, sizeBytes: row.received_size_bytes, etag: row.received_etag }
              : null
          }
          return Option.some({ job, session })
        })).pipe(dieOnSqlError),

      heartbeat: (job, leaseMillis) =>
        matched(sql`
          UPDATE cas_ingest_jobs
          SET lease_expires_at = now() + ${leaseMillis} * interval '1 millisecond', updated_at = now()
          WHERE ${claimed(job)}
          RETURNING id`).pipe(dieOnSqlError),

      recordPromoted: (job, blob, alsoWhenSessionChanged) =>
        fenced(Effect.gen(function*() {
          yield* sql`
            INSERT INTO cas_blobs (digest, size_bytes, storage_key, media_type, verified_at)
            VALUES (${blob.digest}, ${blob.sizeBytes}, ${casKey(blob.digest)}, ${blob.mediaType}, now())
            ON CONFLICT (digest) DO NOTHING`
          yield* requireClaim(sql`
            UPDATE cas_ingest_jobs
            SET state = 'succeeded', blob_digest = ${blob.digest}, finished_at = now(), failure_message = NULL,
                locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE ${claimed(job)}
            RETURNING id`)
          const changed = yield* matched(sql`
            UPDATE upload_sessions
            SET state = 'ready', ready_at = now(), ready_blob_digest = ${blob.digest}, updated_at = now()
            WHERE id = ${job.uploadId} AND state = 'ingesting'
            RETURNING id`)
          if (changed && alsoWhenSessionChanged !== undefined) yield* recordEvent(sql, alsoWhenSessionChanged)
        })).pipe(refusedWhileCollected, dieOnSqlError),

      recordFailed: (job, failure, alsoWhenSessionChanged) =>
        fenced(Effect.gen(function*() {
          yield* requireClaim(sql`
            UPDATE cas_ingest_jobs
            SET state = 'failed', finished_at = now(), failure_message = ${failure.message},
                locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE ${claimed(job)}
            RETURNING id`)
          const changed = yield* matched(sql`
            UPDATE upload_sessions
            SET state = 'failed', failed_at = now(), failure_reason = ${failure.reason},
                failure_message = ${failure.message}, updated_at = now()
            WHERE id = ${job.uploadId} AND state = 'ingesting'
            RETURNING id`)
          if (changed && alsoWhenSessionChanged !== undefined) yield* recordEvent(sql, alsoWhenSessionChanged)
        })).pipe(dieOnSqlError),

      releaseJob: (job, retryAfterMillis, message) =>
        matched(sql`
          UPDATE cas_ingest_jobs
          SET state = 'queued', run_after = now() + ${retryAfterMillis} * interval '1 millisecond',
              failure_message = ${message}, locked_by = NULL, locked_at = NULL, lease_expires_at = NULL,
              updated_at = now()
          WHERE ${claimed(job)}
          RETURNING id`).pipe(dieOnSqlError),

      dropJob: (job, message) =>
        matched(sql`
          UPDATE cas_ingest_jobs
          SET state = 'failed', finished_at = now(), failure_message = ${message},
              locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
          WHERE ${claimed(job)}
          RETURNING id`).pipe(dieOnSqlError),

      sessionsByState: countBy(sql`
        SELECT state, count(*)::int AS n FROM upload_sessions GROUP BY state ORDER BY state`),

      jobsByState: countBy(sql`
        SELECT state, count(*)::int AS n FROM cas_ingest_jobs GROUP BY state ORDER BY state`),

      oldestJobAges: single(AgesRow)(sql`
        SELECT
          (SELECT extract(epoch FROM now() - min(run_after))::float8 FROM cas_ingest_jobs
            WHERE state = 'queued' AND run_after <= now()) AS queued,
          (SELECT extract(epoch FROM now() - min(locked_at))::float8 FROM cas_ingest_jobs
            WHERE state = 'running') AS running`).pipe(
        Effect.map((row) => ({ queued: Option.fromNullable(row.queued), running: Option.fromNullable(row.running) })),
        dieOnSqlError
      ),

      blobTotals: single(TotalsRow)(sql`
        SELECT count(*)::int AS n, COALESCE(sum(size_bytes), 0)::float8 AS bytes FROM cas_blobs`).pipe(
        Effect.map((row) => ({ count: row.n, bytes: row.bytes })),
        dieOnSqlError
      )
    })
  })
)
