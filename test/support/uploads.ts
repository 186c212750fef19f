import { createHash } from "node:crypto"
import type { ApiClient } from "./harness.js"

/**
 * Upload helpers for tests of any concern: `uploadBlob` turns bytes into a verified CAS
 * blob through the real HTTP API (begin → PUT parts → complete → poll until `ready`).
 */

/** The JSON of an upload session as the API returns it. */
export interface UploadSessionBody {
  readonly id: string
  readonly expected_digest: string
  readonly expected_size_bytes: number
  readonly state: "created" | "uploading" | "completed" | "ingesting" | "ready" | "failed" | "aborted"
  readonly expires_at: string
  readonly media_type_hint?: string
  readonly filename_hint?: string
  readonly failure_reason?: "digest_mismatch" | "size_mismatch" | "staged_object_missing"
  readonly parts?: ReadonlyArray<{ readonly number: number; readonly etag: string; readonly size_bytes: number }>
  readonly min_part_size_bytes?: number
  readonly max_part_size_bytes?: number
  readonly recommended_part_size_bytes?: number
}

export interface UploadPartBody {
  readonly upload_id: string
  readonly part_number: number
  readonly etag: string
  readonly size_bytes: number
}

export const MiB = 1024 * 1024

/** `sha256:<hex>` of `bytes`. */
export const sha256Digest = (bytes: Uint8Array): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

/** Deterministic pseudo-random bytes (cheap, and different for each seed). */
export const testBytes = (size: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(size)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 255
  }
  return out
}

const expectStatus = async (response: Response, expected: ReadonlyArray<number>, what: string) => {
  if (!expected.includes(response.status)) {
    throw new Error(`${what}: expected ${expected.join("/")}, got ${response.status}: ${await response.text()}`)
  }
}

export const beginUpload = async (
  app: ApiClient,
  token: string,
  body: { readonly expected_digest: string; readonly expected_size_bytes: number; readonly media_type_hint?: string }
): Promise<{ readonly status: number; readonly session: UploadSessionBody }> => {
  const response = await app.request("POST", "/v1/uploads", { token, json: body })
  await expectStatus(response, [200, 201], "begin upload")
  return { status: response.status, session: (await response.json()) as UploadSessionBody }
}

export const putPart = async (
  app: ApiClient,
  token: string,
  uploadId: string,
  partNumber: number,
  bytes: Uint8Array
): Promise<UploadPartBody> => {
  const response = await app.request("PUT", `/v1/uploads/${uploadId}/parts/${partNumber}`, {
    token,
    body: bytes,
    headers: { "content-type": "application/octet-stream" }
  })
  await expectStatus(response, [200], `put part ${partNumber}`)
  return (await response.json()) as UploadPartBody
}

export const completeUpload = async (
  app: ApiClient,
  token: string,
  uploadId: string,
  parts: ReadonlyArray<UploadPartBody>
): Promise<UploadSessionBody> => {
  const response = await app.request("POST", `/v1/uploads/${uploadId}/complete`, {
    token,
    json: { parts: parts.map((p) => ({ number: p.part_number, etag: p.etag, size_bytes: p.size_bytes })) }
  })
  await expectStatus(response, [200], "complete upload")
  return (await response.json()) as UploadSessionBody
}

export const getUpload = async (app: ApiClient, uploadId: string): Promise<UploadSessionBody> => {
  const response = await app.request("GET", `/v1/uploads/${uploadId}`)
  await expectStatus(response, [200], "get upload")
  return (await response.json()) as UploadSessionBody
}

/** Polls `GET /v1/uploads/{id}` until the session reaches one of `states`. */
export const waitForUploadState = async (
  app: ApiClient,
  uploadId: string,
  states: ReadonlyArray<UploadSessionBody["state"]>,
  timeoutMs = 30_000
): Promise<UploadSessionBody> => {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const session = await getUpload(app, uploadId)
    if (states.includes(session.state)) return session
    if (Date.now() > deadline) {
      throw new Error(`upload ${uploadId} stayed ${session.state}; expected ${states.join("/")}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/**
 * Uploads `bytes` as a verified CAS blob: begin, PUT the parts (`partSize` each, default
 * one part), complete, and poll until `ready` (throws if promotion fails). An already
 * trusted digest short-circuits at begin.
 */
export const uploadBlob = async (
  app: ApiClient,
  token: string,
  bytes: Uint8Array,
  options: { readonly partSize?: number; readonly mediaTypeHint?: string } = {}
): Promise<{ readonly uploadId: string; readonly digest: string; readonly session: UploadSessionBody }> => {
  const digest = sha256Digest(bytes)
  const begun = await beginUpload(app, token, {
    expected_digest: digest,
    expected_size_bytes: bytes.byteLength,
    ...(options.mediaTypeHint === undefined ? {} : { media_type_hint: options.mediaTypeHint })
  })
  const uploadId = begun.session.id
  if (begun.session.state === "ready") return { uploadId, digest, session: begun.session }
  const partSize = Math.max(1, options.partSize ?? bytes.byteLength)
  const parts: Array<UploadPartBody> = []
  for (let offset = 0, n = 1; offset < bytes.byteLength || n === 1; offset += partSize, n++) {
    parts.push(
      await putPart(app, token, uploadId, n, bytes.subarray(offset, Math.min(offset + partSize, bytes.byteLength)))
    )
  }
  await completeUpload(app, token, uploadId, parts)
  const session = await waitForUploadState(app, uploadId, ["ready", "failed"])
  if (session.state !== "ready") {
    throw new Error(`upload ${uploadId} failed promotion: ${session.failure_reason ?? "unknown reason"}`)
  }
  return { uploadId, digest, session }
}
