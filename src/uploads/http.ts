import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { Sha256Digest } from "../contract/digest.js"
import { decodeParam } from "../contract/params.js"
import { serveBlob } from "../platform/http/download.js"
import { apiOf } from "../platform/http/routes.js"
import { casKey } from "../platform/storage/blob-store/keys.js"
import { BlobsGroup, UploadsGroup } from "./api.js"
import { UploadInvalidInput } from "./errors.js"
import {
  MAX_PART_NUMBER,
  MAX_PART_SIZE_BYTES,
  partToJson,
  sessionToJson,
  UploadId,
  UploadSessionJson
} from "./schema.js"
import { Uploads } from "./service.js"

/**
 * Handlers: validate path parameters and headers (400 before any lookup), call the
 * service, encode. No rules live here.
 */

const uploadId = (value: string) => decodeParam(UploadId, value)

const INTEGER = /^[+-]?\d+$/
const DIGITS = /^\d+$/

/** `part_number`: an integer (400 `part number must be an integer`), then 1..10000. */
export const parsePartNumber = (value: string): Effect.Effect<number, UploadInvalidInput> => {
  if (!INTEGER.test(value)) return Effect.fail(new UploadInvalidInput({ detail: "part number must be an integer" }))
  const n = Number(value)
  return n >= 1 && n <= MAX_PART_NUMBER
    ? Effect.succeed(n)
    : Effect.fail(new UploadInvalidInput({ detail: `part number must be between 1 and ${MAX_PART_NUMBER}` }))
}

/** `Content-Length` is required (a chunked body has none) and bounds the part at 5 GiB. */
export const parsePartLength = (header: string | undefined): Effect.Effect<number, UploadInvalidInput> => {
  const value = header?.trim()
  if (value === undefined || !DIGITS.test(value)) {
    return Effect.fail(new UploadInvalidInput({ detail: "content length is required" }))
  }
  const length = Number(value)
  return length <= MAX_PART_SIZE_BYTES
    ? Effect.succeed(length)
    : Effect.fail(new UploadInvalidInput({ detail: `part size must be at most ${MAX_PART_SIZE_BYTES} bytes` }))
}

const sessionResponse = (json: UploadSessionJson, status: number) =>
  HttpServerResponse.schemaJson(UploadSessionJson)(json, { status }).pipe(Effect.orDie)

const UploadsHandlers = HttpApiBuilder.group(apiOf(UploadsGroup), "uploads", (handlers) =>
  Effect.gen(function*() {
    const uploads = yield* Uploads
    return handlers
      .handle("begin", ({ payload }) =>
        Effect.gen(function*() {
          const { session, created } = yield* uploads.begin({
            expectedDigest: payload.expected_digest,
            expectedSizeBytes: payload.expected_size_bytes,
            mediaTypeHint: payload.media_type_hint ?? null,
            filenameHint: payload.filename_hint ?? null
          })
          return yield* sessionResponse(sessionToJson(session, { bounds: true }), created ? 201 : 200)
        }))
      .handle("status", ({ path }) =>
        Effect.gen(function*() {
          const id = yield* uploadId(path.upload_id)
          const { session, parts } = yield* uploads.status(id)
          return sessionToJson(session, { parts, bounds: true })
        }))
      .handleRaw("putPart", ({ path, request }) =>
        Effect.gen(function*() {
          // Order of checks: api.md §2.3.
          const id = yield* uploadId(path.upload_id)
          const partNumber = yield* parsePartNumber(path.part_number)
          const length = yield* parsePartLength(request.headers["content-length"])
          const part = yield* uploads.putPart(id, partNumber, request.stream, length)
          return partToJson(part)
        }))
      .handle("complete", ({ path, payload }) =>
        Effect.gen(function*() {
          const id = yield* uploadId(path.upload_id)
          const session = yield* uploads.complete(
            id,
            payload.parts.map((part) => ({ number: part.number, etag: part.etag, sizeBytes: part.size_bytes }))
          )
          return sessionToJson(session)
        }))
      .handle("abort", ({ path }) =>
        Effect.gen(function*() {
          const id = yield* uploadId(path.upload_id)
          return sessionToJson(yield* uploads.abort(id))
        }))
  }))

const BlobsHandlers = HttpApiBuilder.group(apiOf(BlobsGroup), "blobs", (handlers) =>
  Effect.gen(function*() {
    const uploads = yield* Uploads
    return handlers.handleRaw("getBlob", ({ path }) =>
      Effect.gen(function*() {
        const digest = yield* decodeParam(Sha256Digest, path.digest)
        const blob = yield* uploads.trustedBlob(digest)
        // A blob row whose object is gone is a storage failure: 500 (api.md §2.8, serveBlob).
        return yield* serveBlob({
          key: casKey(blob.digest),
          sizeBytes: blob.sizeBytes,
          digest: blob.digest,
          lastModified: blob.verifiedAt,
          contentType: blob.mediaType ?? "application/octet-stream",
          route: "GET /v1/blobs/{digest}"
        })
      }))
  }))

/** Handlers of both groups (they need `Uploads`, the auth middleware and the BlobStore). */
export const UploadsHandlersLive = Layer.mergeAll(UploadsHandlers, BlobsHandlers)
