import { Duration, Effect, Option } from "effect"
import type { ArtifactFormat, Manifest } from "../catalog/schema.js"
import type { Sha256Digest } from "../contract/digest.js"
import type { PublishJob } from "../publishing/schema.js"
import { ImgsrvClient, type ImgsrvClientService, pollUntil, request, retryTransient } from "./client.js"
import { type ClientError, ProblemError, PublishFailed, PublishInProgress, type RequestFailure } from "./errors.js"
import { type EventSink, ignoreEvents } from "./events.js"
import { type ClientState, memoryState } from "./state.js"

/**
 * `publishVersion`: make `IMAGE:VERSION` hold the given artifacts and attachments (whose
 * blobs are already uploaded), publish it and wait for the job, then point aliases at it.
 * Safe to run again after any failure or crash:
 * - the image and the version are created when missing;
 * - on a draft, an artifact (by variant, OS, architecture, format) or attachment (by name)
 *   that already cites the same blob is kept, one citing other bytes is replaced; the
 *   draft's other artifacts are left alone;
 * - a version already published with the same bytes is reported `alreadyPublished`; with
 *   other bytes, the server's refusal (412) is the failure;
 * - a version left `publishing` by an earlier run is followed through the job that run
 *   remembered.
 */

export interface AttachmentSpec {
  readonly name: string
  readonly mediaType: string
  readonly digest: Sha256Digest
  readonly sizeBytes: number
}

export interface ArtifactSpec {
  /** Default `default`. */
  readonly variant?: string | undefined
  readonly operatingSystem: string
  readonly architecture: string
  readonly format: ArtifactFormat
  readonly digest: Sha256Digest
  readonly sizeBytes: number
  readonly mediaType: string
  readonly attachments?: ReadonlyArray<AttachmentSpec> | undefined
}

export interface PublishVersionOptions {
  readonly image: string
  readonly version: string
  readonly artifacts: ReadonlyArray<ArtifactSpec>
  /** `false` leaves a draft (default `true`). */
  readonly publish?: boolean | undefined
  /** Aliases to create or move to the version once it is published. */
  readonly aliases?: ReadonlyArray<string> | undefined
  readonly state?: ClientState | undefined
  readonly onEvent?: EventSink | undefined
  /** How long to wait for the publish job (default 1 hour). */
  readonly timeout?: Duration.DurationInput | undefined
}

export interface PublishedVersion {
  readonly manifest: Manifest
  /** The job that published the version in this call (or that this call waited for). */
  readonly jobId: string | undefined
  readonly alreadyPublished: boolean
}

const variantOf = (variant: string | undefined) => variant === undefined || variant === "" ? "default" : variant

type ManifestArtifact = Manifest["artifacts"][number]

const sameIdentity = (existing: ManifestArtifact, spec: ArtifactSpec) =>
  existing.artifact.variant === variantOf(spec.variant) &&
  existing.artifact.operating_system === spec.operatingSystem &&
  existing.artifact.architecture === spec.architecture &&
  existing.artifact.format === spec.format

const sameBlob = (existing: ManifestArtifact, spec: ArtifactSpec) =>
  existing.artifact.primary_blob_digest === spec.digest &&
  existing.artifact.primary_blob_size_bytes === spec.sizeBytes &&
  existing.artifact.primary_media_type === spec.mediaType

const sameAttachment = (existing: ManifestArtifact["attachments"][number], spec: AttachmentSpec) =>
  existing.blob_digest === spec.digest && existing.blob_size_bytes === spec.sizeBytes &&
  existing.media_type === spec.mediaType

/** Whether the manifest already holds every artifact and attachment of `specs`, byte for byte. */
const holds = (manifest: Manifest, specs: ReadonlyArray<ArtifactSpec>) =>
  specs.every((spec) =>
    manifest.artifacts.some((existing) =>
      sameIdentity(existing, spec) && sameBlob(existing, spec) &&
      (spec.attachments ?? []).every((a) => existing.attachments.some((e) => e.name === a.name && sameAttachment(e, a)))
    )
  )

const ignoreStatus = (status: number) => (error: RequestFailure) =>
  error instanceof ProblemError && error.status === status ? Effect.void : Effect.fail(error)

/** The manifest of the version in any state, or `undefined` if it does not exist. */
const manifestOf = (client: ImgsrvClientService, image: string, version: string) =>
  request("get the version", retryTransient(client.api.catalog.getManifest({ path: { name: image, version } }))).pipe(
    Effect.map((manifest): Manifest | undefined => manifest),
    Effect.catchIf((e) => e instanceof ProblemError && e.status === 404, () => Effect.succeed(undefined))
  )

/** Adds `spec`'s artifact and attachments to the draft, keeping what already matches. */
const declare = (client: ImgsrvClientService, manifest: Manifest, spec: ArtifactSpec) =>
  Effect.gen(function*() {
    const path = { name: manifest.image.name, version: manifest.version.version }
    let existing = manifest.artifacts.find((a) => sameIdentity(a, spec))
    if (existing !== undefined && !sameBlob(existing, spec)) {
      yield* request(
        "replace an artifact",
        client.api.catalog.deleteArtifact({ path: { ...path, artifact_id: existing.artifact.id } })
      )
      existing = undefined
    }
    const artifactId = existing !== undefined ? existing.artifact.id : (yield* request(
      "declare the artifact",
      client.api.catalog.addArtifact({
        path,
        payload: {
          variant: variantOf(spec.variant),
          operating_system: spec.operatingSystem,
          architecture: spec.architecture,
          format: spec.format,
          primary_blob_digest: spec.digest,
          primary_blob_size_bytes: spec.sizeBytes,
          primary_media_type: spec.mediaType
        }
      })
    )).id
    for (const attachment of spec.attachments ?? []) {
      const present = existing?.attachments.find((a) => a.name === attachment.name)
      if (present !== undefined && sameAttachment(present, attachment)) continue
      if (present !== undefined) {
        yield* request(
          "replace an attachment",
          client.api.catalog.deleteAttachment({
            path: { ...path, artifact_id: artifactId, attachment_id: present.id }
          })
        )
      }
      yield* request(
        "declare the attachment",
        client.api.catalog.addAttachment({
          path: { ...path, artifact_id: artifactId },
          payload: {
            name: attachment.name,
            media_type: attachment.mediaType,
            blob_digest: attachment.digest,
            blob_size_bytes: attachment.sizeBytes
          }
        })
      )
    }
  })

const waitForJob = (
  client: ImgsrvClientService,
  jobId: string,
  timeout: Duration.DurationInput
): Effect.Effect<PublishJob, ClientError> =>
  pollUntil(
    request("get the publish job", client.api.publish.getPublishJob({ path: { job_id: jobId } })),
    (job) => job.state === "succeeded" || job.state === "failed",
    `publish job ${jobId}`,
    timeout
  ).pipe(Effect.flatMap((job) =>
    job.state === "succeeded" ? Effect.succeed(job) : Effect.fail(
      new PublishFailed({
        image: job.image_name,
        version: job.version,
        jobId,
        step: job.failed_step,
        reason: job.reason ?? job.failure_message ?? "no reason given"
      })
    )
  ))

export const publishVersion = (
  options: PublishVersionOptions
): Effect.Effect<PublishedVersion, ClientError, ImgsrvClient> =>
  Effect.gen(function*() {
    const client = yield* ImgsrvClient
    const state = options.state ?? memoryState()
    const emit = options.onEvent ?? ignoreEvents
    const timeout = options.timeout ?? Duration.hours(1)
    const { image, version } = options

    let manifest = yield* manifestOf(client, image, version)
    if (manifest === undefined) {
      // 409: another run (or publisher) created it first, which is just as good.
      yield* request("create the image", client.api.catalog.createImage({ payload: { name: image } })).pipe(
        Effect.catchAll(ignoreStatus(409))
      )
      yield* request(
        "create the version",
        client.api.catalog.createVersion({ path: { name: image }, payload: { version } })
      ).pipe(Effect.catchAll(ignoreStatus(409)))
      manifest = yield* request(
        "get the version",
        retryTransient(client.api.catalog.getManifest({ path: { name: image, version } }))
      )
    }

    let jobId: string | undefined
    let alreadyPublished = false
    if (manifest.version.state === "publishing") {
      const remembered = yield* state.publishJobOf(client.server, image, version)
      if (Option.isNone(remembered)) return yield* new PublishInProgress({ image, version })
      jobId = remembered.value
      yield* waitForJob(client, jobId, timeout)
      manifest = yield* request(
        "get the version",
        retryTransient(client.api.catalog.getManifest({ path: { name: image, version } }))
      )
    }

    if (manifest.version.state === "published") {
      if (jobId === undefined) alreadyPublished = true
      const published = manifest
      const differing = options.artifacts.find((spec) => !holds(published, [spec]))
      // The server says why a published version cannot take other bytes (412).
      if (differing !== undefined) yield* declare(client, published, differing)
    } else if (manifest.version.state === "draft") {
      for (const spec of options.artifacts) yield* declare(client, manifest, spec)
      if (options.publish === false) {
        emit({ event: "draft", image, version })
        const draft = yield* request(
          "get the version",
          retryTransient(client.api.catalog.getManifest({ path: { name: image, version } }))
        )
        return { manifest: draft, jobId, alreadyPublished }
      }
      const job = yield* request(
        "publish the version",
        client.api.publish.publish({ path: { name: image, version } })
      )
      jobId = job.id
      yield* state.rememberPublishJob(client.server, image, version, job.id)
      yield* waitForJob(client, job.id, timeout)
      manifest = yield* request(
        "get the version",
        retryTransient(client.api.catalog.getManifest({ path: { name: image, version } }))
      )
    }
    emit({ event: "published", image, version, job_id: jobId ?? null, already_published: alreadyPublished })

    for (const alias of options.aliases ?? []) {
      yield* request(
        `move the alias ${alias}`,
        retryTransient(client.api.catalog.putAlias({ path: { name: image, alias }, payload: { version } }))
      )
      emit({ event: "alias", image, alias, version })
    }
    return { manifest, jobId, alreadyPublished }
  })
