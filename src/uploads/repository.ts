import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Context, Data, Effect, Layer, Option, Schema } from "effect"
import { Sha256Digest } from "../contract/digest.js"
import { stripQuotes } from "../platform/storage/blob-store/blob-store.js"
import { casKey, stagingKey } from "../platform/storage/blob-store/keys.js"
import { type CasBlob, FailureReason, type UploadPart, type UploadSession, UploadState } from "./schema.js"

/**
 * SQL of uploads, CAS blobs and the promotion queue (domain.md §1.2). No rules here:
 * the state machine is in `service.ts`, promotion in `promotion-worker.ts`, expiry in
 * `expiry-sweeper.ts`. Statements that move a session between states are conditional
 * on the state they leave, so a concurrent caller can never skip a step; callers learn
 * from an empty result that someone else got there first.
 *
 * Clocks: session lifetimes (`created_at`, `expires_at`) use the application clock the
 * service passes in; leases use the database's `now()`, the one clock every replica shares.
 */

const SessionRow = Schema.Struct({
  id: Schema.String,
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
  upload_id: Schema.String,
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
  id: Schema.String,
  upload_id: Schema.String,
  attempt_count: Schema.Number,
  locked_by: Schema.String,
  trace_parent: Schema.NullOr(Schema.String),
  received_digest: Schema.NullOr(Sha256Digest),
  received_size_bytes: Schema.NullOr(Schema.Number),
  received_etag: Schema.NullOr(Schema.String)
})

// Rows that do not match their schema mean the database and the code disagree: a defect.
const decodeRows = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownSync(Schema.Array(schema))
  return (rows: ReadonlyArray<unknown>): ReadonlyArray<A> => decode(rows)
}
const sessionRows = decodeRows(SessionRow)
const partRows = decodeRows(PartRow)
const blobRows = decodeRows(BlobRow)
const jobRows = decodeRows(JobRow)

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

const firstSession = (rows: ReadonlyArray<unknown>) => Option.map(Option.fromNullable(sessionRows(rows)[0]), toSession)

/** Internal: a fenced statement found the claim gone, so its transaction rolls back. */
class ClaimLost extends Data.TaggedError("ClaimLost")<{}> {}

/** A claimed promotion job: the pair (`lockedBy`, `attemptCount`) is its fencing token. */
export interface ClaimedJob {
  readonly id: string
  readonly uploadId: string
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
  readonly id: string
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

type Sql<A> = Effect.Effect<A, SqlError.SqlError>

export class UploadRepository extends Context.Tag("imgsrv/UploadRepository")<UploadRepository, {
  /** Runs `effect` in one transaction (a savepoint when already inside one). */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError.SqlError, R>

  // --- sessions -------------------------------------------------------------------
  readonly insertCreatedSession: (session: NewSession) => Sql<UploadSession>
  /** A session born `ready` because the digest is already trusted: no staging, no job. */
  readonly insertReadySession: (session: NewSession) => Sql<UploadSession>
  readonly findSession: (id: string) => Sql<Option.Option<UploadSession>>
  readonly listParts: (id: string) => Sql<ReadonlyArray<UploadPart>>
  /**
   * Records an accepted part (upsert: a re-PUT replaces) and moves `created → uploading`,
   * in one transaction. None when the session no longer accepts parts.
   */
  readonly recordPart: (part: UploadPart) => Sql<Option.Option<UploadPart>>
  /**
   * `created|uploading → completed` and queues its one promotion job, in one transaction.
   * None when the session had already left those states.
   */
  readonly markCompleted: (
    id: string,
    job: {
      readonly id: string
      readonly traceParent: string | undefined
      readonly received: ReceivedObject | undefined
    }
  ) => Sql<Option.Option<UploadSession>>
  /** `created|uploading → aborted`. None when the session had already left those states. */
  readonly markAborted: (id: string) => Sql<Option.Option<UploadSession>>
  /**
   * Inside a transaction: locks the session that expired longest ago and still accepts
   * parts, skipping rows other replicas hold.
   */
  readonly lockNextExpired: (now: Date) => Sql<Option.Option<UploadSession>>
  /** Defers the next sweep of a session whose storage could not be cleaned. */
  readonly deferSweep: (id: string, retryAfterMillis: number) => Sql<void>

  // --- CAS blobs ------------------------------------------------------------------
  readonly findBlob: (digest: Sha256Digest) => Sql<Option.Option<CasBlob>>

  // --- promotion queue ------------------------------------------------------------
  /**
   * Claims the oldest due job — queued, or running under a lease that has expired — with
   * `FOR UPDATE SKIP LOCKED`, takes a lease of `leaseMillis` and moves its session
   * `completed → ingesting`, in one transaction.
   */
  readonly claimJob: (workerId: string, leaseMillis: number) => Sql<
    Option.Option<{
      readonly job: ClaimedJob
      readonly session: Option.Option<UploadSession>
    }>
  >
  /** Pushes the lease forward; false when the job is no longer held by this claim. */
  readonly heartbeat: (job: ClaimedJob, leaseMillis: number) => Sql<boolean>
  /**
   * One transaction: the blob row (first writer wins), session `ready`, job `succeeded`,
   * and `alsoWhenSessionChanged` (the upload.ready event) when the session moved.
   * False — and nothing written — when the claim was lost.
   */
  readonly recordPromoted: (job: ClaimedJob, blob: {
    readonly digest: Sha256Digest
    readonly sizeBytes: number
    readonly mediaType: string | null
  }, alsoWhenSessionChanged?: Sql<unknown>) => Sql<boolean>
  /**
   * One transaction: session `failed` with its reason, job `failed`, and
   * `alsoWhenSessionChanged` (the upload.failed event) when the session moved. False when
   * the claim was lost.
   */
  readonly recordFailed: (job: ClaimedJob, failure: {
    readonly reason: FailureReason
    readonly message: string
  }, alsoWhenSessionChanged?: Sql<unknown>) => Sql<boolean>
  /** Gives the job back to the queue after a transient error, due again in `retryAfterMillis`. */
  readonly releaseJob: (job: ClaimedJob, retryAfterMillis: number, message: string) => Sql<boolean>
  /** Finishes a job whose session cannot be promoted (not `completed`/`ingesting`). */
  readonly dropJob: (job: ClaimedJob, message: string) => Sql<boolean>

  // --- scrape-time figures --------------------------------------------------------
  readonly sessionsByState: Sql<ReadonlyArray<Sample>>
  readonly jobsByState: Sql<ReadonlyArray<Sample>>
  /** Seconds since the oldest due queued job became due / the oldest running job was claimed. */
  readonly oldestJobAges: Sql<{ readonly queued: Option.Option<number>; readonly running: Option.Option<number> }>
  readonly blobTotals: Sql<{ readonly count: number; readonly bytes: number }>
}>() {}

export const UploadRepositoryLive = Layer.effect(
  UploadRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insertSession = (s: NewSession, state: "created" | "ready") =>
      sql`
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
        RETURNING *`.pipe(Effect.map((rows) => toSession(sessionRows(rows)[0]!)))

    const claimed = (job: ClaimedJob) =>
      sql`id = ${job.id} AND state = 'running' AND locked_by = ${job.lockedBy} AND attempt_count = ${job.attemptCount}`

    /** Fails (rolling the transaction back) when the claim was lost. */
    const requireClaim = (rows: ReadonlyArray<unknown>) =>
      rows.length === 1 ? Effect.void : Effect.fail(new ClaimLost())

    const fenced = <A>(effect: Effect.Effect<A, SqlError.SqlError | ClaimLost>): Sql<boolean> =>
      sql.withTransaction(effect).pipe(
        Effect.as(true),
        Effect.catchTag("ClaimLost", () => Effect.succeed(false))
      )

    const countBy = (rows: ReadonlyArray<{ readonly state: string; readonly n: number }>): ReadonlyArray<Sample> =>
      rows.map((r) => ({ label: r.state, value: Number(r.n) }))

    return UploadRepository.of({
      transaction: (effect) => sql.withTransaction(effect),

      insertCreatedSession: (s) => insertSession(s, "created"),
      insertReadySession: (s) => insertSession(s, "ready"),

      findSession: (id) => sql`SELECT * FROM upload_sessions WHERE id = ${id}`.pipe(Effect.map(firstSession)),

      listParts: (id) =>
        sql`SELECT * FROM upload_parts WHERE upload_id = ${id} ORDER BY part_number`.pipe(
          Effect.map((rows) => partRows(rows).map(toPart))
        ),

      recordPart: (part) =>
        sql.withTransaction(Effect.gen(function*() {
          const moved = yield* sql`
            UPDATE upload_sessions SET state = 'uploading', updated_at = now()
            WHERE id = ${part.uploadId} AND state IN ('created', 'uploading')
            RETURNING id`
          if (moved.length === 0) return Option.none()
          const rows = yield* sql`
            INSERT INTO upload_parts (upload_id, part_number, etag, size_bytes)
            VALUES (${part.uploadId}, ${part.partNumber}, ${part.etag}, ${part.sizeBytes})
            ON CONFLICT (upload_id, part_number)
            DO UPDATE SET etag = EXCLUDED.etag, size_bytes = EXCLUDED.size_bytes, updated_at = now()
            RETURNING *`
          return Option.some(toPart(partRows(rows)[0]!))
        })),

      markCompleted: (id, job) =>
        sql.withTransaction(Effect.gen(function*() {
          const session = firstSession(
            yield* sql`
              UPDATE upload_sessions
              SET state = 'completed', completed_at = COALESCE(completed_at, now()), updated_at = now()
              WHERE id = ${id} AND state IN ('created', 'uploading')
              RETURNING *`
          )
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
        })),

      markAborted: (id) =>
        sql`
          UPDATE upload_sessions SET state = 'aborted', aborted_at = now(), updated_at = now()
          WHERE id = ${id} AND state IN ('created', 'uploading')
          RETURNING *`.pipe(Effect.map(firstSession)),

      lockNextExpired: (now) =>
        sql`
          SELECT * FROM upload_sessions
          WHERE state IN ('created', 'uploading') AND expires_at <= ${now}
            AND (sweep_retry_at IS NULL OR sweep_retry_at <= now())
          ORDER BY expires_at, id
          LIMIT 1
          FOR UPDATE SKIP LOCKED`.pipe(Effect.map(firstSession)),

      deferSweep: (id, retryAfterMillis) =>
        sql`
          UPDATE upload_sessions SET sweep_retry_at = now() + ${retryAfterMillis} * interval '1 millisecond'
          WHERE id = ${id}`.pipe(Effect.asVoid),

      findBlob: (digest) =>
        sql`SELECT * FROM cas_blobs WHERE digest = ${digest}`.pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(blobRows(rows)[0]), toBlob))
        ),

      claimJob: (workerId, leaseMillis) =>
        sql.withTransaction(Effect.gen(function*() {
          const rows = yield* sql`
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
                      j.received_digest, j.received_size_bytes, j.received_etag`
          const row = jobRows(rows)[0]
          if (row === undefined) return Option.none()
          const session = firstSession(
            yield* sql`
              UPDATE upload_sessions
              SET state = 'ingesting', ingest_started_at = COALESCE(ingest_started_at, now()), updated_at = now()
              WHERE id = ${row.upload_id} AND state IN ('completed', 'ingesting')
              RETURNING *`
          )
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
        })),

      heartbeat: (job, leaseMillis) =>
        sql`
          UPDATE cas_ingest_jobs
          SET lease_expires_at = now() + ${leaseMillis} * interval '1 millisecond', updated_at = now()
          WHERE ${claimed(job)}
          RETURNING id`.pipe(Effect.map((rows) => rows.length === 1)),

      recordPromoted: (job, blob, alsoWhenSessionChanged) =>
        fenced(Effect.gen(function*() {
          yield* sql`
            INSERT INTO cas_blobs (digest, size_bytes, storage_key, media_type, verified_at)
            VALUES (${blob.digest}, ${blob.sizeBytes}, ${casKey(blob.digest)}, ${blob.mediaType}, now())
            ON CONFLICT (digest) DO NOTHING`
          yield* requireClaim(
            yield* sql`
              UPDATE cas_ingest_jobs
              SET state = 'succeeded', blob_digest = ${blob.digest}, finished_at = now(), failure_message = NULL,
                  locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
              WHERE ${claimed(job)}
              RETURNING id`
          )
          const changed = yield* sql`
            UPDATE upload_sessions
            SET state = 'ready', ready_at = now(), ready_blob_digest = ${blob.digest}, updated_at = now()
            WHERE id = ${job.uploadId} AND state = 'ingesting'
            RETURNING id`
          if (changed.length > 0 && alsoWhenSessionChanged !== undefined) yield* alsoWhenSessionChanged
        })),

      recordFailed: (job, failure, alsoWhenSessionChanged) =>
        fenced(Effect.gen(function*() {
          yield* requireClaim(
            yield* sql`
              UPDATE cas_ingest_jobs
              SET state = 'failed', finished_at = now(), failure_message = ${failure.message},
                  locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
              WHERE ${claimed(job)}
              RETURNING id`
          )
          const changed = yield* sql`
            UPDATE upload_sessions
            SET state = 'failed', failed_at = now(), failure_reason = ${failure.reason},
                failure_message = ${failure.message}, updated_at = now()
            WHERE id = ${job.uploadId} AND state = 'ingesting'
            RETURNING id`
          if (changed.length > 0 && alsoWhenSessionChanged !== undefined) yield* alsoWhenSessionChanged
        })),

      releaseJob: (job, retryAfterMillis, message) =>
        sql`
          UPDATE cas_ingest_jobs
          SET state = 'queued', run_after = now() + ${retryAfterMillis} * interval '1 millisecond',
              failure_message = ${message}, locked_by = NULL, locked_at = NULL, lease_expires_at = NULL,
              updated_at = now()
          WHERE ${claimed(job)}
          RETURNING id`.pipe(Effect.map((rows) => rows.length === 1)),

      dropJob: (job, message) =>
        sql`
          UPDATE cas_ingest_jobs
          SET state = 'failed', finished_at = now(), failure_message = ${message},
              locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
          WHERE ${claimed(job)}
          RETURNING id`.pipe(Effect.map((rows) => rows.length === 1)),

      sessionsByState: sql<{ state: string; n: number }>`
        SELECT state, count(*)::int AS n FROM upload_sessions GROUP BY state ORDER BY state`.pipe(Effect.map(countBy)),

      jobsByState: sql<{ state: string; n: number }>`
        SELECT state, count(*)::int AS n FROM cas_ingest_jobs GROUP BY state ORDER BY state`.pipe(Effect.map(countBy)),

      oldestJobAges: sql<{ queued: number | null; running: number | null }>`
        SELECT
          (SELECT extract(epoch FROM now() - min(run_after))::float8 FROM cas_ingest_jobs
            WHERE state = 'queued' AND run_after <= now()) AS queued,
          (SELECT extract(epoch FROM now() - min(locked_at))::float8 FROM cas_ingest_jobs
            WHERE state = 'running') AS running`.pipe(
        Effect.map((rows) => ({
          queued: Option.fromNullable(rows[0]?.queued ?? null),
          running: Option.fromNullable(rows[0]?.running ?? null)
        }))
      ),

      blobTotals: sql<{ n: number; bytes: number }>`
        SELECT count(*)::int AS n, COALESCE(sum(size_bytes), 0)::float8 AS bytes FROM cas_blobs`.pipe(
        Effect.map((rows) => ({ count: Number(rows[0]?.n ?? 0), bytes: Number(rows[0]?.bytes ?? 0) }))
      )
    })
  })
)
