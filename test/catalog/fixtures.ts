import { expect } from "vitest"
import type { Artifact, Attachment, Image, ImageVersion } from "../../src/catalog/schema.js"
import type { ProblemDetails } from "../../src/platform/http/problem.js"
import type { PublishJob } from "../../src/publishing/schema.js"
import type { SeededBlob } from "../support/blobs.js"
import type { ApiClient } from "../support/harness.js"

/** Catalog calls through the real HTTP API, shared by the catalog, publishing and streams tests. */

export type Json = Readonly<Record<string, unknown>>

/**
 * Asserts the status (showing the body when it differs) and returns the parsed body,
 * typed as the wire shape the caller expects.
 */
export const expectStatus = async <T = Json>(response: Response, status: number): Promise<T> => {
  const text = await response.text()
  if (response.status !== status) throw new Error(`expected ${status}, got ${response.status}: ${text}`)
  return (text === "" ? {} : JSON.parse(text)) as T
}

export const expectProblem = async (response: Response, status: number): Promise<ProblemDetails> => {
  expect(response.headers.get("content-type")).toBe("application/problem+json")
  const body = await expectStatus<ProblemDetails>(response, status)
  expect(body).toMatchObject({ type: "about:blank", status })
  return body
}

export const createImage = (app: ApiClient, token: string, name: string, extra: Json = {}) =>
  app.request("POST", "/v1/images", { token, json: { name, ...extra } }).then((r) => expectStatus<Image>(r, 201))

export const createDraft = (app: ApiClient, token: string, name: string, version: string) =>
  app.request("POST", `/v1/images/${name}/versions`, { token, json: { version } })
    .then((r) => expectStatus<ImageVersion>(r, 201))

export interface ArtifactSpec {
  readonly blob: Pick<SeededBlob, "digest" | "size">
  readonly format?: string
  readonly architecture?: string
  readonly operating_system?: string
  readonly variant?: string
  readonly media_type?: string
}

export const artifactBody = (spec: ArtifactSpec): Json => ({
  ...(spec.variant !== undefined ? { variant: spec.variant } : {}),
  operating_system: spec.operating_system ?? "linux",
  architecture: spec.architecture ?? "x86_64",
  format: spec.format ?? "qcow2",
  primary_blob_digest: spec.blob.digest,
  primary_blob_size_bytes: spec.blob.size,
  primary_media_type: spec.media_type ?? "application/x-qemu-disk"
})

export const addArtifact = (app: ApiClient, token: string, name: string, version: string, spec: ArtifactSpec) =>
  app.request("POST", `/v1/images/${name}/versions/${version}/artifacts`, { token, json: artifactBody(spec) })
    .then((r) => expectStatus<Artifact>(r, 201))

export const addAttachment = (
  app: ApiClient,
  token: string,
  name: string,
  version: string,
  artifactId: string,
  attachment: {
    readonly name: string
    readonly blob: Pick<SeededBlob, "digest" | "size">
    readonly media_type?: string
  }
) =>
  app.request("POST", `/v1/images/${name}/versions/${version}/artifacts/${artifactId}/attachments`, {
    token,
    json: {
      name: attachment.name,
      media_type: attachment.media_type ?? "application/x-incus-metadata",
      blob_digest: attachment.blob.digest,
      blob_size_bytes: attachment.blob.size
    }
  }).then((r) => expectStatus<Attachment>(r, 201))

export const startPublish = (app: ApiClient, token: string, name: string, version: string) =>
  app.request("POST", `/v1/images/${name}/versions/${version}/publish`, { token })
    .then((r) => expectStatus<PublishJob>(r, 202))

/** Polls the job until it reaches one of `states` (default: a terminal state). */
export const waitForJob = async (
  app: ApiClient,
  token: string,
  jobId: string,
  states: ReadonlyArray<string> = ["succeeded", "failed"],
  timeoutMs = 15_000
): Promise<PublishJob> => {
  const deadline = Date.now() + timeoutMs
  let last: PublishJob | undefined
  while (Date.now() < deadline) {
    const job = await app.request("GET", `/v1/publish-jobs/${jobId}`, { token })
      .then((r) => expectStatus<PublishJob>(r, 200))
    if (states.includes(job.state)) return job
    last = job
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`job ${jobId} did not reach ${states.join("/")}: ${JSON.stringify(last)}`)
}

export interface VersionSpec {
  readonly name: string
  readonly version: string
  readonly artifacts: ReadonlyArray<
    ArtifactSpec & {
      readonly attachments?: ReadonlyArray<
        { readonly name: string; readonly blob: Pick<SeededBlob, "digest" | "size"> }
      >
    }
  >
  readonly image?: Json
}

/**
 * Creates (if needed) the image, a draft with the given artifacts and attachments,
 * publishes it and waits for the job to succeed. Returns the artifact and attachment ids.
 */
export const publishVersion = async (app: ApiClient, token: string, spec: VersionSpec) => {
  const existing = await app.request("GET", `/v1/images/${spec.name}/aliases`)
  await existing.arrayBuffer()
  if (existing.status === 404) await createImage(app, token, spec.name, spec.image ?? {})
  await createDraft(app, token, spec.name, spec.version)
  const artifacts: Array<{ readonly id: string; readonly attachments: ReadonlyArray<string> }> = []
  for (const a of spec.artifacts) {
    const artifact = await addArtifact(app, token, spec.name, spec.version, a)
    const attachments: Array<string> = []
    for (const t of a.attachments ?? []) {
      attachments.push((await addAttachment(app, token, spec.name, spec.version, artifact.id, t)).id)
    }
    artifacts.push({ id: artifact.id, attachments })
  }
  const job = await startPublish(app, token, spec.name, spec.version)
  const done = await waitForJob(app, token, job.id)
  expect(done.state, JSON.stringify(done)).toBe("succeeded")
  return { job: done, artifacts }
}
