import type { SqlError } from "@effect/sql"
import { SqlClient, SqlSchema } from "@effect/sql"
import { Context, Duration, Effect, Layer, Option, Schema } from "effect"
import { ArtifactId, AttachmentId, VersionId, VersionState } from "../catalog/schema.js"
import {
  type CheckViolation,
  classifyConstraint,
  dieOnSqlError,
  type ForeignKeyViolation,
  type Infrastructure,
  type UniqueViolation
} from "../platform/storage/sql-errors.js"
import { PublishPreconditionFailed, StepFailed } from "./errors.js"
import {
  ClaimedStep,
  JobId,
  JobRow,
  type JobWithSteps,
  type ProjectionRow,
  PUBLISH_STEPS,
  type StepId,
  StepRow
} from "./schema.js"

/**
 * SQL of publish jobs, steps, leases and the Simple Streams projection rows. No rules
 * here: the service and the worker decide what the rows mean.
 *
 * This is the SQL boundary: a database that fails is a defect here (the worker loop and
 * the failure renderer handle defects), and the only failures a method declares are the
 * constraint violations its callers expect, already translated to domain errors.
 */

/** An artifact of a version with the size of the verified blob it cites (null: no such blob). */
export const ArtifactBlobFact = Schema.Struct({
  id: ArtifactId,
  variant: Schema.String,
  operating_system: Schema.String,
  architecture: Schema.String,
  format: Schema.String,
  digest: Schema.String,
  declared_size: Schema.Number,
  verified_size: Schema.NullOr(Schema.Number)
})
export type ArtifactBlobFact = typeof ArtifactBlobFact.Type

/** An attachment of a version's artifact with the size of the verified blob it cites. */
export const AttachmentBlobFact = Schema.Struct({
  id: AttachmentId,
  artifact_id: ArtifactId,
  name: Schema.String,
  digest: Schema.String,
  declared_size: Schema.Number,
  verified_size: Schema.NullOr(Schema.Number)
})
export type AttachmentBlobFact = typeof AttachmentBlobFact.Type

export const LabelledCount = Schema.Struct({
  label: Schema.String,
  state: Schema.String,
  value: Schema.Number
})
export type LabelledCount = typeof LabelledCount.Type

const LockedJobRow = Schema.Struct({ ...JobRow.fields, version_state: VersionState })
const StateRow = Schema.Struct({ state: VersionState })
const IdRow = Schema.Struct({ id: Schema.String })
const OkRow = Schema.Struct({ ok: Schema.Boolean })
const CountRow = Schema.Struct({ n: Schema.Number })

const milliseconds = (lease: Duration.Duration) => Math.max(1, Math.round(Duration.toMillis(lease)))

export class PublishRepository extends Context.Tag("imgsrv/PublishRepository")<PublishRepository, {
  /** The blobs a version's manifest cites, matched against `cas_blobs` by digest. */
  readonly blobFacts: (versionId: VersionId) => Effect.Effect<{
    readonly artifacts: ReadonlyArray<ArtifactBlobFact>
    readonly attachments: ReadonlyArray<AttachmentBlobFact>
  }>
  readonly versionState: (versionId: VersionId) => Effect.Effect<Option.Option<VersionState>>
  /**
   * Runs `effect` in a transaction (or joins the caller's); a failing database, in the
   * transaction or in `effect`, is a defect.
   */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, Exclude<E, Infrastructure>, R>
  /**
   * draft → publishing. The guard trigger re-checks publishability; it only disagrees with
   * the service's check on a race, and its refusal is the precondition failure.
   */
  readonly markPublishing: (versionId: VersionId) => Effect.Effect<void, PublishPreconditionFailed>
  /** A queued job with its three queued steps; one job per version, so a second one is refused. */
  readonly insertJob: (job: {
    readonly id: JobId
    readonly versionId: VersionId
    readonly stepIds: ReadonlyArray<StepId>
    readonly traceParent: string | undefined
  }) => Effect.Effect<void, PublishPreconditionFailed>
  readonly findJob: (jobId: JobId) => Effect.Effect<Option.Option<JobWithSteps>>
  /** The job and its version's state, both rows locked FOR UPDATE (retry). */
  readonly lockJob: (
    jobId: JobId
  ) => Effect.Effect<Option.Option<{ readonly job: JobRow; readonly versionState: VersionState }>>
  readonly stepsOf: (jobId: JobId) => Effect.Effect<ReadonlyArray<StepRow>>
  /** Job → queued; every not-succeeded step from `fromSequence` on → queued with no lock. */
  readonly requeue: (
    jobId: JobId,
    fromSequence: number,
    traceParent: string | undefined
  ) => Effect.Effect<void>
  /**
   * Job → abandoned, the version's Simple Streams rows deleted (while it is still
   * publishing, the only state their guard lets them change in) and the version → draft.
   * The caller holds the job and version row locks (`lockJob`).
   */
  readonly abandon: (jobId: JobId, versionId: VersionId) => Effect.Effect<void>

  /**
   * Claims the next runnable step (queued and due, or running with an expired lease,
   * whose earlier blocking steps all succeeded) with `FOR UPDATE SKIP LOCKED`, takes a
   * lease of `lease`, and moves its job to running. Runs in the caller's transaction.
   */
  readonly claimNextStep: (
    workerId: string,
    lease: Duration.Duration
  ) => Effect.Effect<Option.Option<ClaimedStep>>
  /** Pushes the lease forward; false when the lease is no longer ours. */
  readonly renewLease: (
    step: ClaimedStep,
    workerId: string,
    lease: Duration.Duration
  ) => Effect.Effect<boolean>
  /**
   * Step → succeeded, fenced on the claim (`locked_by`, `attempt_count`): false, and nothing
   * written, when the lease is no longer ours. The fencing write of an outcome transaction.
   */
  readonly succeedStep: (step: ClaimedStep, workerId: string) => Effect.Effect<boolean>
  /** Step → failed and its job → failed with the same message, fenced like `succeedStep`. */
  readonly failStep: (step: ClaimedStep, workerId: string, message: string) => Effect.Effect<boolean>
  readonly earlierBlockingStepsSucceeded: (jobId: JobId, sequence: number) => Effect.Effect<boolean>
  /**
   * publishing → published with published_at = now(); false when the version was not
   * publishing. A guard refusing it fails the step with the guard's words.
   */
  readonly markPublished: (versionId: VersionId) => Effect.Effect<boolean, StepFailed>
  readonly succeedJob: (jobId: JobId) => Effect.Effect<void>
  /** Replaces the version's projection rows (delete + insert); rows a constraint refuses fail the step. */
  readonly replaceProjection: (
    versionId: VersionId,
    rows: ReadonlyArray<ProjectionRow>
  ) => Effect.Effect<void, StepFailed>

  // Scrape-time figures (domain.md §7.2).
  readonly jobCounts: Effect.Effect<ReadonlyArray<LabelledCount>>
  readonly stepCounts: Effect.Effect<ReadonlyArray<LabelledCount>>
  readonly oldestStepAges: Effect.Effect<ReadonlyArray<LabelledCount>>
  readonly versionsPublishing: Effect.Effect<number>
  readonly projectionRows: Effect.Effect<number>
}>() {}

export const PublishRepositoryLive = Layer.effect(
  PublishRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const stepsOf = SqlSchema.findAll({
      Request: JobId,
      Result: StepRow,
      execute: (jobId) =>
        sql`
          SELECT id, job_id, name, state, blocking, sequence, attempt_count, started_at, finished_at,
                 failure_message, created_at, updated_at
          FROM publish_job_steps WHERE job_id = ${jobId} ORDER BY sequence`
    })

    const artifactFacts = SqlSchema.findAll({
      Request: VersionId,
      Result: ArtifactBlobFact,
      execute: (versionId) =>
        sql`
          SELECT a.id, a.variant, a.operating_system, a.architecture, a.format,
                 a.primary_blob_digest AS digest, a.primary_blob_size_bytes AS declared_size,
                 b.size_bytes AS verified_size
          FROM release_artifacts a LEFT JOIN cas_blobs b ON b.digest = a.primary_blob_digest
          WHERE a.version_id = ${versionId}
          ORDER BY a.variant COLLATE "C", a.operating_system COLLATE "C", a.architecture COLLATE "C",
                   a.format COLLATE "C", a.id`
    })

    const attachmentFacts = SqlSchema.findAll({
      Request: VersionId,
      Result: AttachmentBlobFact,
      execute: (versionId) =>
        sql`
          SELECT t.id, t.artifact_id, t.name, t.blob_digest AS digest, t.blob_size_bytes AS declared_size,
                 b.size_bytes AS verified_size
          FROM artifact_attachments t
          JOIN release_artifacts a ON a.id = t.artifact_id
          LEFT JOIN cas_blobs b ON b.digest = t.blob_digest
          WHERE a.version_id = ${versionId}
          ORDER BY t.name COLLATE "C", t.id`
    })

    const findVersionState = SqlSchema.findOne({
      Request: VersionId,
      Result: StateRow,
      execute: (versionId) => sql`SELECT state FROM image_versions WHERE id = ${versionId}`
    })

    const findJobRow = SqlSchema.findOne({
      Request: JobId,
      Result: JobRow,
      execute: (jobId) =>
        sql`
          SELECT j.*, i.name AS image_name, v.version
          FROM publish_jobs j
          JOIN image_versions v ON v.id = j.version_id
          JOIN images i ON i.id = v.image_id
          WHERE j.id = ${jobId}`
    })

    const lockJobRow = SqlSchema.findOne({
      Request: JobId,
      Result: LockedJobRow,
      execute: (jobId) =>
        sql`
          SELECT j.*, i.name AS image_name, v.version, v.state AS version_state
          FROM publish_jobs j
          JOIN image_versions v ON v.id = j.version_id
          JOIN images i ON i.id = v.image_id
          WHERE j.id = ${jobId}
          FOR UPDATE OF j, v`
    })

    const gauge = (execute: () => Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      dieOnSqlError(SqlSchema.findAll({ Request: Schema.Void, Result: LabelledCount, execute })(undefined))

    // count(*) always answers one row: no row at all is a defect like any other.
    const count = (execute: () => Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      SqlSchema.single({ Request: Schema.Void, Result: CountRow, execute })(undefined).pipe(
        Effect.map((row) => row.n),
        Effect.orDie
      )

    /** Whether a conditional UPDATE … RETURNING id matched its row. */
    const matched = (query: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      SqlSchema.findOne({ Request: Schema.Void, Result: IdRow, execute: () => query })(undefined).pipe(
        Effect.map(Option.isSome),
        Effect.catchTag("ParseError", Effect.die)
      )

    /** The fencing token of a claim: the step is still running, by this worker, in this attempt. */
    const claimed = (step: ClaimedStep, workerId: string) =>
      sql`id = ${step.id} AND state = 'running' AND locked_by = ${workerId} AND attempt_count = ${step.attempt_count}`

    /** A constraint refusing projection rows or the final state change: the step fails with its words. */
    const stepFailure = (prefix: string) => ({
      CheckViolation: (v: CheckViolation) => Effect.fail(new StepFailed({ message: `${prefix}${v.detail}` })),
      ForeignKeyViolation: (v: ForeignKeyViolation) => Effect.fail(new StepFailed({ message: `${prefix}${v.detail}` })),
      UniqueViolation: (v: UniqueViolation) => Effect.fail(new StepFailed({ message: `${prefix}${v.constraint}` }))
    })

    return PublishRepository.of({
      transaction: (effect) => dieOnSqlError(sql.withTransaction(effect)),

      blobFacts: (versionId) =>
        dieOnSqlError(Effect.all({ artifacts: artifactFacts(versionId), attachments: attachmentFacts(versionId) })),

      versionState: (versionId) =>
        findVersionState(versionId).pipe(Effect.map(Option.map((row) => row.state)), dieOnSqlError),

      markPublishing: (versionId) =>
        classifyConstraint(
          sql`UPDATE image_versions SET state = 'publishing', updated_at = now() WHERE id = ${versionId}`
        ).pipe(
          Effect.asVoid,
          Effect.catchTags({
            CheckViolation: (v) => Effect.fail(new PublishPreconditionFailed({ reason: v.detail })),
            ForeignKeyViolation: Effect.die,
            UniqueViolation: Effect.die
          }),
          dieOnSqlError
        ),

      insertJob: (job) =>
        Effect.gen(function*() {
          yield* classifyConstraint(
            sql`INSERT INTO publish_jobs (id, version_id, state) VALUES (${job.id}, ${job.versionId}, 'queued')`
          ).pipe(Effect.catchTags({
            // One job per version: a unique violation means another publish won.
            UniqueViolation: () =>
              Effect.fail(new PublishPreconditionFailed({ reason: "version already has a publish job" })),
            CheckViolation: Effect.die,
            ForeignKeyViolation: Effect.die
          }))
          yield* sql`INSERT INTO publish_job_steps ${
            sql.insert(PUBLISH_STEPS.map((step, i) => ({
              id: job.stepIds[i]!,
              job_id: job.id,
              name: step.name,
              state: "queued",
              blocking: true,
              sequence: step.sequence,
              trace_parent: job.traceParent ?? null
            })))
          }`
        }).pipe(dieOnSqlError),

      findJob: (jobId) =>
        Effect.gen(function*() {
          const job = yield* findJobRow(jobId)
          if (Option.isNone(job)) return Option.none()
          return Option.some({ job: job.value, steps: yield* stepsOf(jobId) })
        }).pipe(dieOnSqlError),

      lockJob: (jobId) =>
        lockJobRow(jobId).pipe(
          Effect.map(Option.map(({ version_state, ...job }) => ({ job, versionState: version_state }))),
          dieOnSqlError
        ),

      stepsOf: (jobId) => dieOnSqlError(stepsOf(jobId)),

      requeue: (jobId, fromSequence, traceParent) =>
        Effect.gen(function*() {
          yield* sql`
            UPDATE publish_jobs SET state = 'queued', finished_at = NULL, failure_message = NULL, updated_at = now()
            WHERE id = ${jobId}`
          yield* sql`
            UPDATE publish_job_steps
            SET state = 'queued', run_after = now(), locked_by = NULL, locked_at = NULL, lease_expires_at = NULL,
                finished_at = NULL, failure_message = NULL, trace_parent = ${traceParent ?? null}, updated_at = now()
            WHERE job_id = ${jobId} AND sequence >= ${fromSequence} AND state <> 'succeeded'`
        }).pipe(dieOnSqlError),

      abandon: (jobId, versionId) =>
        classifyConstraint(Effect.gen(function*() {
          yield* sql`DELETE FROM incus_projection_items WHERE version_id = ${versionId}`
          yield* sql`UPDATE publish_jobs SET state = 'abandoned', updated_at = now() WHERE id = ${jobId}`
          yield* sql`UPDATE image_versions SET state = 'draft', updated_at = now() WHERE id = ${versionId}`
        })).pipe(Effect.orDie),

      claimNextStep: (workerId, lease) =>
        Effect.gen(function*() {
          const claimed = yield* SqlSchema.findOne({
            Request: Schema.Void,
            Result: ClaimedStep,
            execute: () =>
              sql`
            WITH next AS (
              SELECT s.id FROM publish_job_steps s
              JOIN publish_jobs j ON j.id = s.job_id
              WHERE j.state IN ('queued', 'running')
                AND ((s.state = 'queued' AND s.run_after <= now())
                     OR (s.state = 'running' AND s.lease_expires_at <= now()))
                AND NOT EXISTS (
                  SELECT 1 FROM publish_job_steps p
                  WHERE p.job_id = s.job_id AND p.blocking AND p.sequence < s.sequence AND p.state <> 'succeeded'
                )
              ORDER BY s.run_after, s.sequence, s.id
              LIMIT 1
              FOR UPDATE OF s SKIP LOCKED
            ), claimed AS (
              UPDATE publish_job_steps s
              SET state = 'running', attempt_count = s.attempt_count + 1, locked_by = ${workerId},
                  locked_at = now(), lease_expires_at = now() + ${milliseconds(lease)} * interval '1 millisecond',
                  started_at = COALESCE(s.started_at, now()), updated_at = now()
              FROM next WHERE s.id = next.id
              RETURNING s.id, s.job_id, s.name, s.sequence, s.attempt_count, s.trace_parent
            )
            SELECT c.*, v.id AS version_id, i.name AS image_name, v.version
            FROM claimed c
            JOIN publish_jobs j ON j.id = c.job_id
            JOIN image_versions v ON v.id = j.version_id
            JOIN images i ON i.id = v.image_id`
          })(undefined)
          if (Option.isNone(claimed)) return Option.none()
          const step = claimed.value
          yield* sql`
            UPDATE publish_jobs SET state = 'running', started_at = COALESCE(started_at, now()), updated_at = now()
            WHERE id = ${step.job_id} AND state = 'queued'`
          return Option.some(step)
        }).pipe(dieOnSqlError),

      renewLease: (step, workerId, lease) =>
        matched(sql`
          UPDATE publish_job_steps
          SET lease_expires_at = now() + ${milliseconds(lease)} * interval '1 millisecond'
          WHERE ${claimed(step, workerId)}
          RETURNING id`).pipe(dieOnSqlError),

      succeedStep: (step, workerId) =>
        matched(sql`
          UPDATE publish_job_steps
          SET state = 'succeeded', finished_at = now(), failure_message = NULL,
              locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
          WHERE ${claimed(step, workerId)}
          RETURNING id`).pipe(dieOnSqlError),

      failStep: (step, workerId, message) =>
        Effect.gen(function*() {
          const failed = yield* matched(sql`
            UPDATE publish_job_steps
            SET state = 'failed', finished_at = now(), failure_message = ${message},
                locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE ${claimed(step, workerId)}
            RETURNING id`)
          if (!failed) return false
          yield* sql`
            UPDATE publish_jobs SET state = 'failed', failure_message = ${message}, finished_at = now(), updated_at = now()
            WHERE id = ${step.job_id} AND state IN ('queued', 'running')`
          return true
        }).pipe(dieOnSqlError),

      earlierBlockingStepsSucceeded: (jobId, sequence) =>
        SqlSchema.single({
          Request: Schema.Void,
          Result: OkRow,
          execute: () =>
            sql`
          SELECT NOT EXISTS (
            SELECT 1 FROM publish_job_steps
            WHERE job_id = ${jobId} AND blocking AND sequence < ${sequence} AND state <> 'succeeded'
          ) AS ok`
        })(undefined).pipe(Effect.map((row) => row.ok), Effect.orDie),

      markPublished: (versionId) =>
        classifyConstraint(matched(sql`
          UPDATE image_versions SET state = 'published', published_at = now(), updated_at = now()
          WHERE id = ${versionId} AND state = 'publishing'
          RETURNING id`)).pipe(
          Effect.catchTags(stepFailure("finalize publish: ")),
          dieOnSqlError
        ),

      succeedJob: (jobId) =>
        sql`
          UPDATE publish_jobs SET state = 'succeeded', finished_at = now(), failure_message = NULL, updated_at = now()
          WHERE id = ${jobId}`.pipe(Effect.asVoid, dieOnSqlError),

      replaceProjection: (versionId, rows) =>
        classifyConstraint(Effect.gen(function*() {
          yield* sql`DELETE FROM incus_projection_items WHERE version_id = ${versionId}`
          if (rows.length === 0) return
          yield* sql`INSERT INTO incus_projection_items ${
            sql.insert(rows.map((r) => ({
              artifact_id: r.artifactId,
              version_id: r.versionId,
              metadata_attachment_id: r.metadataAttachmentId,
              metadata_path: r.metadataPath,
              root_ftype: r.rootFtype,
              root_path: r.rootPath,
              metadata_sha256: r.metadataSha256,
              metadata_size_bytes: r.metadataSizeBytes,
              root_sha256: r.rootSha256,
              root_size_bytes: r.rootSizeBytes,
              combined_sha256: r.combinedSha256
            })))
          }`
        })).pipe(Effect.catchTags(stepFailure("incus materialization: store rows: ")), dieOnSqlError),

      jobCounts: gauge(() =>
        sql`
        SELECT '' AS label, state, count(*)::float8 AS value FROM publish_jobs GROUP BY state`
      ),

      stepCounts: gauge(() =>
        sql`
        SELECT name AS label, state, count(*)::float8 AS value FROM publish_job_steps GROUP BY name, state`
      ),

      oldestStepAges: gauge(() =>
        sql`
        SELECT name AS label, 'queued' AS state,
               EXTRACT(EPOCH FROM now() - min(run_after))::float8 AS value
        FROM publish_job_steps WHERE state = 'queued' AND run_after <= now() GROUP BY name
        UNION ALL
        SELECT name AS label, 'running' AS state,
               EXTRACT(EPOCH FROM now() - min(locked_at))::float8 AS value
        FROM publish_job_steps WHERE state = 'running' GROUP BY name`
      ),

      versionsPublishing: count(() => sql`SELECT count(*) AS n FROM image_versions WHERE state = 'publishing'`),

      projectionRows: count(() => sql`SELECT count(*) AS n FROM incus_projection_items`)
    })
  })
)
