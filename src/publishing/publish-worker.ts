import type { SqlError } from "@effect/sql"
import { SqlClient } from "@effect/sql"
import { Cause, Clock, Effect, Metric, Option } from "effect"
import { CatalogRepository } from "../catalog/repository.js"
import { AppConfig } from "../platform/config/config.js"
import { CachedDocuments } from "../platform/http/cached-documents.js"
import { latencyBoundaries } from "../platform/observability/metrics.js"
import { withLinkedSpan } from "../platform/observability/tracing.js"
import { BlobStore } from "../platform/storage/blob-store/blob-store.js"
import { databaseFailure } from "../platform/storage/sql-errors.js"
import { type Job, leaseHeartbeat, LeaseLost, type RunOutcome, workerLayer } from "../platform/worker.js"
import { publishJobFailed, versionPublished } from "../webhooks/events.js"
import { recordEvent } from "../webhooks/outbox.js"
import { StepFailed } from "./errors.js"
import { computeProjection } from "./incus-index.js"
import { PublishRepository } from "./repository.js"
import type { ClaimedStep } from "./schema.js"
import { publishabilityProblem, PublishWake } from "./service.js"

/**
 * The publish worker (api.md §2.9 "Worker semantics", domain.md §3.4): a supervised
 * loop that claims one runnable step at a time and runs it.
 *
 * - Claim: `FOR UPDATE SKIP LOCKED`, so replicas never take the same step; a step is
 *   runnable only when every earlier blocking step of its job succeeded (strict order).
 * - Lease: the claim holds the step for `--publish-job-lease`; a heartbeat renews it
 *   every third of that while the step runs. A worker that dies stops renewing, and
 *   once the lease expires another worker re-claims the step (attempt_count + 1).
 * - Fencing: every outcome is written in a transaction whose first write is the step's
 *   own update, conditional on (locked_by, attempt_count) — the idiom every worker uses;
 *   when it finds the claim gone the transaction rolls back (`LeaseLost`), so a worker
 *   that lost its lease drops its result instead of overwriting the new holder's work.
 *   A heartbeat that finds the lease gone interrupts the step.
 * - Failure: a step that cannot do its work fails at once (no automatic retry), and so
 *   does its job, with the step's message; `POST /v1/publish-jobs/{id}/retry` re-queues.
 */

export const publishStepDuration = Metric.histogram(
  "imgsrv_publish_step_duration_seconds",
  latencyBoundaries,
  "Duration of publish step executions, by step and outcome (succeeded, failed, lease_lost)."
)

type StepOutcome = "succeeded" | "failed" | "lease_lost"

/** Failure messages are stored and shown; keep them one readable paragraph. */
const boundedMessage = (message: string): string => {
  const text = message.trim().replace(/\s+/g, " ")
  const bounded = text.length > 2000 ? `${text.slice(0, 1997)}...` : text
  return bounded === "" ? "step failed" : bounded
}

export const PUBLISH_JOB = "publish"

/** The publish job: one loop per replica, woken when a job is queued (`PublishWake`). */
export const publishJob = Effect.gen(function*() {
  const config = yield* AppConfig
  const lease = config.publishWorker.lease
  const sql = yield* SqlClient.SqlClient
  const repo = yield* PublishRepository
  const catalog = yield* CatalogRepository
  const store = yield* BlobStore
  // A finished step may have published: cached documents of this process check before serving.
  const documents = yield* Effect.serviceOption(CachedDocuments)

  /** One unit of work for the loop `workerId`: claim a step, run it, record the outcome. */
  const runOnce = (workerId: string): Effect.Effect<RunOutcome> => {
    /**
     * Runs `body` in a transaction after `fence`, the claim's conditional write: when it
     * finds the lease gone nothing of `body` runs and the transaction rolls back.
     */
    const fenced = <A, E>(fence: Effect.Effect<boolean>, body: Effect.Effect<A, E>) =>
      repo.transaction(Effect.gen(function*() {
        if (!(yield* fence)) return yield* new LeaseLost()
        return yield* body
      }))
    const succeeded = (step: ClaimedStep) => repo.succeedStep(step, workerId)

    const validateCatalog = (step: ClaimedStep) =>
      fenced(
        succeeded(step),
        Effect.gen(function*() {
          const state = yield* repo.versionState(step.version_id)
          if (Option.getOrUndefined(state) !== "publishing") {
            return yield* new StepFailed({
              message: `publish failed precondition: version is ${
                Option.getOrElse(state, () => "missing")
              }, not publishing`
            })
          }
          const problem = publishabilityProblem(step.image_name, step.version, yield* repo.blobFacts(step.version_id))
          if (Option.isSome(problem)) {
            return yield* new StepFailed({ message: `publish failed precondition: ${problem.value}` })
          }
        })
      )

    const incusIndex = (step: ClaimedStep) =>
      Effect.gen(function*() {
        const found = yield* catalog.findVersion(step.image_name, step.version)
        if (Option.isNone(found)) {
          return yield* new StepFailed({ message: "incus materialization: load manifest: version not found" })
        }
        const manifest = yield* catalog.loadManifest(found.value)
        // Hashing may stream gigabytes: it runs outside any transaction, under the heartbeat.
        const rows = yield* computeProjection(manifest).pipe(Effect.provideService(BlobStore, store))
        yield* fenced(succeeded(step), repo.replaceProjection(step.version_id, rows))
      })

    const finalizePublish = (step: ClaimedStep) =>
      fenced(
        succeeded(step),
        Effect.gen(function*() {
          const ready = yield* repo.earlierBlockingStepsSucceeded(step.job_id, step.sequence)
          if (!ready) {
            return yield* new StepFailed({
              message: "finalize publish: previous blocking publish steps have not succeeded"
            })
          }
          const published = yield* repo.markPublished(step.version_id)
          if (!published) return yield* new StepFailed({ message: "finalize publish: version is not publishing" })
          yield* repo.succeedJob(step.job_id)
          // version.published commits with the version's state, in this fenced transaction.
          const version = yield* catalog.findVersion(step.image_name, step.version)
          if (Option.isSome(version)) {
            yield* recordEvent(sql, versionPublished(version.value.image.name, version.value.version))
          }
        })
      )

    const execute = (step: ClaimedStep): Effect.Effect<void, StepFailed | LeaseLost> => {
      const work = step.name === "validate_catalog"
        ? validateCatalog(step)
        : step.name === "incus_index"
        ? incusIndex(step)
        : finalizePublish(step)
      // A database hiccup fails the step like any other error (the reference does the
      // same); the operator retries. The text stays in the log. The repositories make it a
      // defect; the catalog's, read outside a transaction, still a failure.
      const databaseError = (error: SqlError.SqlError) =>
        Effect.logError("publish step hit a database error").pipe(
          Effect.annotateLogs({ step: step.name, job_id: step.job_id, cause: error }),
          Effect.zipRight(Effect.fail(new StepFailed({ message: `${step.name}: database error` })))
        )
      return work.pipe(databaseFailure, Effect.catchTag("SqlError", databaseError))
    }

    const heartbeat = (step: ClaimedStep) =>
      leaseHeartbeat(lease, databaseFailure(repo.renewLease(step, workerId, lease)), {
        job: PUBLISH_JOB,
        step_id: step.id
      })

    /** Records a failure under the lease; false when the lease was lost meanwhile. */
    const recordFailure = (step: ClaimedStep, message: string) =>
      fenced(
        repo.failStep(step, workerId, boundedMessage(message)),
        Effect.gen(function*() {
          // publish_job.failed commits with the job's state, in this fenced transaction.
          const job = yield* repo.findJob(step.job_id)
          if (Option.isSome(job) && job.value.job.state === "failed") {
            yield* recordEvent(sql, publishJobFailed(job.value))
          }
        })
      ).pipe(
        Effect.as(true),
        Effect.catchTag("LeaseLost", () => Effect.succeed(false))
      )

    const runStep = (step: ClaimedStep) =>
      Effect.gen(function*() {
        const started = yield* Clock.currentTimeMillis
        const outcome: StepOutcome = yield* Effect.raceFirst(execute(step), heartbeat(step)).pipe(
          Effect.as("succeeded" as const),
          Effect.catchTags({
            LeaseLost: () => Effect.succeed("lease_lost" as const),
            StepFailed: (failure) =>
              Effect.logWarning("publish step failed").pipe(
                Effect.annotateLogs({ step: step.name, job_id: step.job_id, reason: failure.message }),
                Effect.zipRight(recordFailure(step, failure.message)),
                Effect.map((recorded) => (recorded ? ("failed" as const) : ("lease_lost" as const)))
              )
          }),
          // A bug must not leave the job looping on the same step: fail it with a generic
          // message (the cause is logged). Interruption (shutdown) keeps the lease, which
          // simply expires for the next worker.
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause)
              : Effect.logError("publish step crashed").pipe(
                Effect.annotateLogs({ step: step.name, job_id: step.job_id, cause }),
                Effect.zipRight(recordFailure(step, `${step.name}: internal error`)),
                Effect.map((recorded) => (recorded ? ("failed" as const) : ("lease_lost" as const)))
              )
          )
        )
        if (Option.isSome(documents)) documents.value.localWrite()
        const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
        yield* Metric.update(
          publishStepDuration.pipe(Metric.tagged("step", step.name), Metric.tagged("outcome", outcome)),
          seconds
        )
        const line = outcome === "lease_lost"
          ? Effect.logWarning("publish step lease lost; result dropped")
          : Effect.logInfo("publish step finished")
        yield* line.pipe(Effect.annotateLogs({
          step: step.name,
          job_id: step.job_id,
          attempt: step.attempt_count,
          outcome,
          duration_ms: Math.round(seconds * 1000)
        }))
      })

    return Effect.gen(function*() {
      const claimed = yield* repo.transaction(repo.claimNextStep(workerId, lease))
      if (Option.isNone(claimed)) return "idle" as RunOutcome
      const step = claimed.value
      yield* runStep(step).pipe(
        withLinkedSpan(`publish.${step.name}`, step.trace_parent, {
          "imgsrv.publish.job_id": step.job_id,
          "imgsrv.publish.step": step.name,
          "imgsrv.publish.attempt": step.attempt_count
        })
      )
      return "worked" as RunOutcome
    })
  }

  return {
    name: PUBLISH_JOB,
    nodeName: config.nodeName,
    settings: config.publishWorker,
    runOnce,
    wake: yield* PublishWake,
    enabledBy: "--publish-worker-enabled"
  } satisfies Job<never, never>
})

/** The publish loop, when `--publish-worker-enabled` (default true). */
export const PublishWorkerLive = workerLayer(publishJob)
