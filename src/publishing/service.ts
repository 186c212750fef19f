import { Context, Effect, Layer, Option } from "effect"
import { VersionNotFound } from "../catalog/errors.js"
import { CatalogRepository } from "../catalog/repository.js"
import { INCUS_METADATA_ATTACHMENT, VersionId } from "../catalog/schema.js"
import { freshUuid } from "../platform/fresh-ids.js"
import { currentTraceParent } from "../platform/observability/tracing.js"
import { makeWakeSignal, type WakeSignal } from "../platform/worker.js"
import { productName, type RootFtype, rootFtypeOf } from "../streams/schema.js"
import {
  PublishJobNotAbandonable,
  PublishJobNotFound,
  PublishJobNotRetryable,
  PublishPreconditionFailed
} from "./errors.js"
import { type ArtifactBlobFact, type AttachmentBlobFact, PublishRepository } from "./repository.js"
import { JobId, type JobWithSteps, StepId } from "./schema.js"

/**
 * Publishing rules (api.md §2.9, §3.2–3.3): the synchronous publish that freezes a
 * draft and queues a job, job reads, and retry. The steps themselves are run by the
 * publish worker (publish-worker.ts).
 */

/** Wakes the publish worker in this process when a job is queued (or re-queued). */
export class PublishWake extends Context.Tag("imgsrv/PublishWake")<PublishWake, WakeSignal>() {}

export const PublishWakeLive = Layer.effect(PublishWake, makeWakeSignal)

const describeArtifact = (a: ArtifactBlobFact) => `${a.operating_system}/${a.architecture}/${a.format} (${a.variant})`

/**
 * Why a manifest cannot be published, if it cannot:
 * - it has no artifact;
 * - an artifact or attachment cites a blob that is not a verified CAS blob of exactly
 *   the declared size (domain.md §2.3);
 * - two Incus images (qcow2 or squashfs artifacts with an `incus.tar.xz` attachment) of
 *   the same type would land in the same Simple Streams product — e.g. `x86_64` and
 *   `amd64` twice, or two operating systems under one architecture and variant — or a
 *   container and a VM sharing a product disagree on the operating system (a product has
 *   one). The reference published such versions and then failed every Simple Streams
 *   request with a 500; refusing here, while the version can still be fixed, keeps the
 *   feed working. A container and a VM of the same OS share a product, as intended.
 */
export const publishabilityProblem = (
  image: string,
  version: string,
  facts: {
    readonly artifacts: ReadonlyArray<ArtifactBlobFact>
    readonly attachments: ReadonlyArray<AttachmentBlobFact>
  }
): Option.Option<string> => {
  if (facts.artifacts.length === 0) return Option.some("version has no artifacts")
  for (const a of facts.artifacts) {
    if (a.verified_size === null) {
      return Option.some(`artifact ${describeArtifact(a)} cites ${a.digest}, which is not a verified blob`)
    }
    if (a.verified_size !== a.declared_size) {
      return Option.some(
        `artifact ${describeArtifact(a)} declares ${a.declared_size} bytes for ${a.digest}, ` +
          `but the verified blob has ${a.verified_size}`
      )
    }
  }
  const byId = new Map(facts.artifacts.map((a) => [a.id, a]))
  for (const t of facts.attachments) {
    const owner = byId.get(t.artifact_id)
    const where = owner ? ` of artifact ${describeArtifact(owner)}` : ""
    if (t.verified_size === null) {
      return Option.some(`attachment ${t.name}${where} cites ${t.digest}, which is not a verified blob`)
    }
    if (t.verified_size !== t.declared_size) {
      return Option.some(
        `attachment ${t.name}${where} declares ${t.declared_size} bytes for ${t.digest}, ` +
          `but the verified blob has ${t.verified_size}`
      )
    }
  }
  const withMetadata = new Set(
    facts.attachments.filter((t) => t.name === INCUS_METADATA_ATTACHMENT).map((t) => t.artifact_id)
  )
  const products = new Map<string, Map<RootFtype, ArtifactBlobFact>>()
  for (const a of facts.artifacts) {
    const root = rootFtypeOf(a.format)
    if (root === undefined || !withMetadata.has(a.id)) continue
    const product = productName(image, version, a.architecture, a.variant)
    const builds = products.get(product) ?? new Map<RootFtype, ArtifactBlobFact>()
    const same = builds.get(root)
    if (same !== undefined) {
      return Option.some(
        `artifacts ${describeArtifact(same)} and ${describeArtifact(a)} would both be the ${root} image of the ` +
          `Simple Streams product ${product}; give them different variants`
      )
    }
    const other = [...builds.values()].find((b) => b.operating_system !== a.operating_system)
    if (other !== undefined) {
      return Option.some(
        `artifacts ${describeArtifact(other)} and ${describeArtifact(a)} would share the Simple Streams ` +
          `product ${product} with different operating systems; give them the same one or different variants`
      )
    }
    products.set(product, builds.set(root, a))
  }
  return Option.none()
}

export class Publishing extends Context.Tag("imgsrv/Publishing")<Publishing, {
  /** Freezes a publishable draft (→ publishing) and queues its publish job, in one transaction. */
  readonly publish: (
    name: string,
    version: string
  ) => Effect.Effect<JobWithSteps, VersionNotFound | PublishPreconditionFailed>
  readonly getJob: (jobId: JobId) => Effect.Effect<JobWithSteps, PublishJobNotFound>
  /** Re-queues a failed job from its first failed step; earlier succeeded steps are not re-run. */
  readonly retry: (jobId: JobId) => Effect.Effect<JobWithSteps, PublishJobNotFound | PublishJobNotRetryable>
  /** Gives up on a failed job: the job becomes `abandoned` and its version a draft again (editable). */
  readonly abandon: (jobId: JobId) => Effect.Effect<JobWithSteps, PublishJobNotFound | PublishJobNotAbandonable>
}>() {}

export const PublishingLive = Layer.effect(
  Publishing,
  Effect.gen(function*() {
    const catalog = yield* CatalogRepository
    const repo = yield* PublishRepository
    const wake = yield* PublishWake

    const loadJob = (jobId: JobId) =>
      repo.findJob(jobId).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new PublishJobNotFound({ jobId })),
          onSome: Effect.succeed
        }))
      )

    return Publishing.of({
      publish: (name, version) =>
        Effect.gen(function*() {
          const traceParent = yield* currentTraceParent
          const jobId = JobId.make(yield* freshUuid)
          const stepIds = [StepId.make(yield* freshUuid), StepId.make(yield* freshUuid), StepId.make(yield* freshUuid)]
          // The job is read back inside the transaction: the response shows it as queued,
          // whatever the (immediately woken) worker does next.
          const job = yield* repo.transaction(Effect.gen(function*() {
            const found = yield* catalog.findVersion(name, version, "update")
            if (Option.isNone(found)) return yield* new VersionNotFound({ name, version, published: false })
            const target = found.value.version
            const versionId = VersionId.make(target.id)
            if (target.state !== "draft") {
              // Not idempotent (decision D5): clients retry failed jobs instead.
              return yield* new PublishPreconditionFailed({ reason: `version is not draft (it is ${target.state})` })
            }
            const problem = publishabilityProblem(name, version, yield* repo.blobFacts(versionId))
            if (Option.isSome(problem)) return yield* new PublishPreconditionFailed({ reason: problem.value })
            yield* repo.markPublishing(versionId)
            yield* repo.insertJob({
              id: jobId,
              versionId,
              stepIds,
              traceParent
            })
            // Just inserted in this transaction: it cannot be missing.
            return yield* loadJob(jobId).pipe(Effect.orDie)
          }))
          yield* wake.wake
          yield* Effect.logInfo("publish job queued").pipe(
            Effect.annotateLogs({ job_id: jobId, image: name, version })
          )
          return job
        }).pipe(Effect.withSpan("publishing.publish", { attributes: { "imgsrv.image": name } })),

      getJob: (jobId) => loadJob(jobId).pipe(Effect.withSpan("publishing.getJob")),

      retry: (jobId) =>
        Effect.gen(function*() {
          const traceParent = yield* currentTraceParent
          const job = yield* repo.transaction(Effect.gen(function*() {
            const locked = yield* repo.lockJob(jobId)
            if (Option.isNone(locked)) return yield* new PublishJobNotFound({ jobId })
            const { job, versionState } = locked.value
            if (job.state !== "failed") {
              return yield* new PublishJobNotRetryable({ jobId, reason: `job is ${job.state}, not failed` })
            }
            if (versionState !== "publishing") {
              return yield* new PublishJobNotRetryable({ jobId, reason: `version is ${versionState}, not publishing` })
            }
            const steps = yield* repo.stepsOf(jobId)
            const firstFailed = steps.find((s) => s.blocking && s.state === "failed")
            if (firstFailed === undefined) {
              return yield* new PublishJobNotRetryable({ jobId, reason: "no step failed" })
            }
            yield* repo.requeue(jobId, firstFailed.sequence, traceParent)
            return yield* loadJob(jobId)
          }))
          yield* wake.wake
          yield* Effect.logInfo("publish job re-queued").pipe(Effect.annotateLogs({ job_id: jobId }))
          return job
        }).pipe(Effect.withSpan("publishing.retry")),

      abandon: (jobId) =>
        Effect.gen(function*() {
          // The job and version rows are locked as retry locks them, so an abandon and a
          // retry of the same job serialise; a failed job is never claimed by the worker.
          const job = yield* repo.transaction(Effect.gen(function*() {
            const locked = yield* repo.lockJob(jobId)
            if (Option.isNone(locked)) return yield* new PublishJobNotFound({ jobId })
            const { job, versionState } = locked.value
            if (job.state !== "failed") {
              return yield* new PublishJobNotAbandonable({ jobId, reason: `job is ${job.state}, not failed` })
            }
            // A failed job's version is publishing: nothing else moves it while the job is failed.
            if (versionState !== "publishing") {
              return yield* Effect.dieMessage(`failed job ${jobId} has a ${versionState} version`)
            }
            yield* repo.abandon(jobId, job.version_id)
            return yield* loadJob(jobId)
          }))
          yield* Effect.logInfo("publish job abandoned").pipe(
            Effect.annotateLogs({ job_id: jobId, image: job.job.image_name, version: job.job.version })
          )
          return job
        }).pipe(Effect.withSpan("publishing.abandon"))
    })
  })
)
