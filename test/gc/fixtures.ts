import { createHash } from "node:crypto"
import { expect } from "vitest"
import type { Sha256Digest } from "../../src/contract/digest.js"
import { addArtifact, addAttachment, createDraft, expectStatus } from "../catalog/fixtures.js"
import type { ApiClient } from "../support/harness.js"
import { sha256Digest, testBytes, uploadBlob } from "../support/uploads.js"

/** Helpers of the garbage collection tests: everything through the HTTP API. */

export interface GcReport {
  readonly dry_run: boolean
  readonly blobs: number
  readonly bytes: number
  readonly staging_objects: number
  readonly staging_bytes: number
  readonly multipart_uploads: number
  readonly multipart_listing_supported: boolean
  readonly pending_deletions: number
}

/** `POST /v1/admin/gc`; retries while another run holds the lock (409). */
export const runGc = async (app: ApiClient, token: string, dryRun: boolean): Promise<GcReport> => {
  for (let attempt = 0;; attempt++) {
    const response = await app.request("POST", "/v1/admin/gc", { token, json: { dry_run: dryRun } })
    if (response.status === 409 && attempt < 200) {
      await response.arrayBuffer()
      await new Promise((resolve) => setTimeout(resolve, 50))
      continue
    }
    return expectStatus<GcReport>(response, 200)
  }
}

export interface Blob {
  readonly digest: Sha256Digest
  readonly size: number
  readonly bytes: Uint8Array
}

export const blobOf = (size: number, seed: number): Blob => {
  const bytes = testBytes(size, seed)
  return { digest: sha256Digest(bytes) as Sha256Digest, size, bytes }
}

export const upload = async (app: ApiClient, token: string, blob: Blob) => {
  const { session } = await uploadBlob(app, token, blob.bytes)
  return session
}

/** GET /v1/blobs/{digest}: its status and, when 200, the sha256 digest of the body. */
export const download = async (app: ApiClient, digest: string): Promise<{ status: number; digest?: string }> => {
  const response = await app.request("GET", `/v1/blobs/${digest}`)
  const body = new Uint8Array(await response.arrayBuffer())
  if (response.status !== 200) return { status: response.status }
  return { status: 200, digest: `sha256:${createHash("sha256").update(body).digest("hex")}` }
}

export const expectDownloads = async (app: ApiClient, blob: Blob) => {
  expect(await download(app, blob.digest), blob.digest).toEqual({ status: 200, digest: blob.digest })
}

export const expectGone = async (app: ApiClient, blob: Blob) => {
  expect((await download(app, blob.digest)).status, blob.digest).toBe(404)
}

/** A draft with one qcow2 artifact citing `primary`, and optionally an attachment citing `attached`. */
export const draftCiting = async (
  app: ApiClient,
  token: string,
  image: string,
  version: string,
  primary: Blob,
  attached?: Blob
) => {
  // Created by the first draft (an image with only drafts answers 404 to GET, so ask POST).
  const created = await app.request("POST", "/v1/images", { token, json: { name: image } })
  await created.arrayBuffer()
  expect([201, 409]).toContain(created.status)
  await createDraft(app, token, image, version)
  const artifact = await addArtifact(app, token, image, version, { blob: primary })
  if (attached !== undefined) {
    await addAttachment(app, token, image, version, artifact.id, { name: "incus.tar.xz", blob: attached })
  }
  return artifact
}

export const deleteDraft = async (app: ApiClient, token: string, image: string, version: string) => {
  await expectStatus(await app.request("DELETE", `/v1/images/${image}/versions/${version}`, { token }), 204)
}
