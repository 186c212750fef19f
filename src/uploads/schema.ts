import { ParseResult, Schema } from "effect"
import { Sha256Digest } from "../contract/digest.js"
import { MAX_PART_BYTES, MAX_PART_NUMBER } from "../contract/limits.js"
import { MediaType } from "../contract/media-type.js"
import { boundedText, nonBlank, strictBody, TEXT_LIMITS, UuidId, UuidString } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"
import type { StorageKey } from "../platform/storage/blob-store/keys.js"

/**
 * Wire and domain shapes of uploads and CAS blobs (api.md §2.1, §2.3; domain.md §1.2).
 * Wire members are snake_case; optional members are omitted, never `null`.
 */

// ---------------------------------------------------------------------------------
// Limits (api.md §2.3, domain.md §4.3) — S3's multipart rules, enforced by imgsrv.
// ---------------------------------------------------------------------------------

export const MiB = 1024 * 1024
/** Every part but the last must be at least this big (checked at complete). */
export const MIN_PART_SIZE_BYTES = 5 * MiB
/** No part may be bigger (checked at PUT from Content-Length, and at complete); S3's limits. */
export const MAX_PART_SIZE_BYTES = MAX_PART_BYTES
export { MAX_PART_NUMBER }
/** 10 000 parts of 5 GiB: no upload can ever complete beyond this, so begin refuses it. */
export const MAX_UPLOAD_SIZE_BYTES = MAX_PART_NUMBER * MAX_PART_SIZE_BYTES
/** What clients are told to use unless the object needs bigger parts to fit in 10 000. */
export const DEFAULT_RECOMMENDED_PART_SIZE_BYTES = 64 * MiB

/**
 * The part size a client should use for an object of `size` bytes: 64 MiB (few
 * round trips, modest memory in clients), raised in whole MiB when 10 000 parts of
 * 64 MiB would not hold the object.
 */
export const recommendedPartSize = (size: number): number => {
  const needed = Math.ceil(Math.ceil(size / MAX_PART_NUMBER) / MiB) * MiB
  return Math.min(MAX_PART_SIZE_BYTES, Math.max(DEFAULT_RECOMMENDED_PART_SIZE_BYTES, needed))
}

// ---------------------------------------------------------------------------------
// Domain
// ---------------------------------------------------------------------------------

/** An upload session's id (also the `upload_id` path parameter, and its staging key). */
export const UploadId = UuidId("UploadId", "upload id")
export type UploadId = typeof UploadId.Type
/** A promotion (ingest) job: one per completed upload session (`cas_ingest_jobs`). */
export const IngestJobId = UuidId("IngestJobId", "ingest job id")
export type IngestJobId = typeof IngestJobId.Type

export const UploadState = Schema.Literal(
  "created",
  "uploading",
  "completed",
  "ingesting",
  "ready",
  "failed",
  "aborted"
)
export type UploadState = typeof UploadState.Type

/**
 * Why promotion refused an upload (shown as `failure_reason`):
 * - `digest_mismatch`: the bytes hash to another digest than the one declared at begin;
 * - `size_mismatch`: the assembled object is not `expected_size_bytes` long (a part's real
 *   size differed from what the client declared at complete);
 * - `staged_object_missing`: the assembled object vanished from storage before it was verified.
 */
export const FailureReason = Schema.Literal("digest_mismatch", "size_mismatch", "staged_object_missing")
export type FailureReason = typeof FailureReason.Type

/**
 * The session's staging key, built by `keys.ts` only (from the session id). Carried, not
 * checked: this module is part of the client's import graph, which never reaches `platform/`.
 */
const StorageKeySchema = Schema.declare((value: unknown): value is StorageKey => typeof value === "string", {
  identifier: "StorageKey"
})

export const UploadSession = Schema.Struct({
  id: UploadId,
  expectedDigest: Sha256Digest,
  expectedSizeBytes: Schema.Number,
  state: UploadState,
  storageUploadId: Schema.String,
  stagingKey: StorageKeySchema,
  mediaTypeHint: Schema.NullOr(Schema.String),
  filenameHint: Schema.NullOr(Schema.String),
  expiresAt: Schema.DateFromSelf,
  completedAt: Schema.NullOr(Schema.DateFromSelf),
  failureReason: Schema.NullOr(FailureReason),
  createdAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf
})
export type UploadSession = typeof UploadSession.Type

export const UploadPart = Schema.Struct({
  uploadId: UploadId,
  partNumber: Schema.Number,
  etag: Schema.String,
  sizeBytes: Schema.Number
})
export type UploadPart = typeof UploadPart.Type

export const CasBlob = Schema.Struct({
  digest: Sha256Digest,
  sizeBytes: Schema.Number,
  mediaType: Schema.NullOr(Schema.String),
  verifiedAt: Schema.DateFromSelf
})
export type CasBlob = typeof CasBlob.Type

/** One entry of a complete request, as the client sent it (validated by the service). */
export interface CompletedPart {
  readonly number: number
  readonly etag: string
  readonly sizeBytes: number
}

// ---------------------------------------------------------------------------------
// Wire: requests
// ---------------------------------------------------------------------------------

export const BeginUploadRequest = Schema.Struct({
  expected_digest: Sha256Digest,
  expected_size_bytes: Schema.Number.pipe(
    Schema.int({ message: () => "expected_size_bytes must be an integer" }),
    Schema.nonNegative({ message: () => "expected_size_bytes must be >= 0" }),
    Schema.lessThanOrEqualTo(MAX_UPLOAD_SIZE_BYTES, {
      message: () => `expected_size_bytes must be at most ${MAX_UPLOAD_SIZE_BYTES} (10000 parts of 5 GiB)`
    })
  ),
  // `null` for an optional member means "absent", as in the reference's Go decoding.
  media_type_hint: Schema.optionalWith(MediaType("media_type_hint"), { nullable: true }),
  filename_hint: Schema.optionalWith(nonBlank("filename_hint", TEXT_LIMITS.short), { nullable: true })
}).annotations({ identifier: "BeginUploadRequest", ...strictBody })
export type BeginUploadRequest = typeof BeginUploadRequest.Type

/**
 * Structure only: range rules (1..10000, sizes, 5 MiB minimum) are the service's, because a
 * retried complete of an already completed upload answers 200 before they are looked at.
 */
export const CompletePartJson = Schema.Struct({
  number: Schema.Number.pipe(Schema.int({ message: () => "number must be an integer" })),
  etag: boundedText("etag", TEXT_LIMITS.short).annotations({
    description: "The ETag the part's PUT returned; S3's quoted form (`\"847c…\"`) is accepted too."
  }),
  size_bytes: Schema.Number.pipe(Schema.int({ message: () => "size_bytes must be an integer" }))
}).annotations({ identifier: "CompletePart", ...strictBody })

export const CompleteUploadRequest = Schema.Struct({
  // A missing list is the reference's zero value (empty), refused later unless the upload
  // is already completed — so a bare retry stays a 200.
  parts: Schema.optionalWith(Schema.Array(CompletePartJson), { default: () => [], nullable: true })
}).annotations({ identifier: "CompleteUploadRequest", ...strictBody })
export type CompleteUploadRequest = typeof CompleteUploadRequest.Type

// ---------------------------------------------------------------------------------
// Wire: responses
// ---------------------------------------------------------------------------------

/** A part's ETag on the wire: the bare hex value, never quoted, so scripts can splice it into JSON. */
const PartEtag = Schema.String.annotations({
  description: "The part's ETag, bare (no surrounding double quotes), e.g. `847c…`."
})

export const UploadPartSummaryJson = Schema.Struct({
  number: Schema.Number,
  etag: PartEtag,
  size_bytes: Schema.Number
}).annotations({ identifier: "UploadPartSummary" })

/**
 * UploadSession (api.md §2.1) plus additive members: `failure_reason` on failed sessions,
 * `parts` (received so far) on status, and the part-size bounds on begin and status.
 */
export const UploadSessionJson = Schema.Struct({
  id: UuidString,
  expected_digest: Sha256Digest,
  expected_size_bytes: Schema.Number,
  state: UploadState,
  expires_at: TimestampString,
  media_type_hint: Schema.optional(Schema.String),
  filename_hint: Schema.optional(Schema.String),
  failure_reason: Schema.optional(FailureReason),
  parts: Schema.optional(Schema.Array(UploadPartSummaryJson)),
  min_part_size_bytes: Schema.optional(Schema.Number),
  max_part_size_bytes: Schema.optional(Schema.Number),
  recommended_part_size_bytes: Schema.optional(Schema.Number)
}).annotations({ identifier: "UploadSession" })
export type UploadSessionJson = typeof UploadSessionJson.Type

export const UploadPartJson = Schema.Struct({
  upload_id: UuidString,
  part_number: Schema.Number,
  etag: PartEtag,
  size_bytes: Schema.Number
}).annotations({ identifier: "UploadPart" })
export type UploadPartJson = typeof UploadPartJson.Type

// ---------------------------------------------------------------------------------
// Encoding: the wire shapes declared as transformations of the domain types.
// ---------------------------------------------------------------------------------

/** A nullable member as an optional wire member: absent (not undefined) when null. */
const present = <K extends string, A>(key: K, value: A | null) =>
  (value === null ? {} : { [key]: value }) as Partial<Record<K, A>>

export const UploadPartFromDomain = Schema.transformOrFail(UploadPart, UploadPartJson, {
  strict: true,
  decode: (part) =>
    ParseResult.succeed({
      upload_id: part.uploadId,
      part_number: part.partNumber,
      etag: part.etag,
      size_bytes: part.sizeBytes
    }),
  encode: (wire) =>
    ParseResult.map(ParseResult.decodeUnknown(UploadId)(wire.upload_id), (uploadId) => ({
      uploadId,
      partNumber: wire.part_number,
      etag: wire.etag,
      sizeBytes: wire.size_bytes
    }))
})

/** A part as a status response lists it; one way only (the summary has no upload id). */
const UploadPartSummaryFromDomain = Schema.transformOrFail(UploadPart, UploadPartSummaryJson, {
  strict: true,
  decode: (part) => ParseResult.succeed({ number: part.partNumber, etag: part.etag, size_bytes: part.sizeBytes }),
  encode: (wire, _, ast) =>
    ParseResult.fail(new ParseResult.Forbidden(ast, wire, "a part summary cannot be rebuilt without its upload id"))
})

/**
 * The wire session of a session (`failure_reason` only on a failed one), with the parts
 * received so far when given and the part-size bounds when `bounds`. One way only: the
 * storage upload id, the staging key and most timestamps are not on the wire.
 */
export const UploadSessionFromDomain = Schema.transformOrFail(
  Schema.Struct({
    session: UploadSession,
    parts: Schema.optional(Schema.Array(UploadPartSummaryFromDomain)),
    bounds: Schema.optional(Schema.Boolean)
  }),
  UploadSessionJson,
  {
    strict: true,
    decode: ({ bounds, parts, session }) =>
      ParseResult.succeed({
        id: session.id,
        expected_digest: session.expectedDigest,
        expected_size_bytes: session.expectedSizeBytes,
        state: session.state,
        expires_at: formatTimestamp(session.expiresAt),
        ...present("media_type_hint", session.mediaTypeHint),
        ...present("filename_hint", session.filenameHint),
        ...present("failure_reason", session.state === "failed" ? session.failureReason : null),
        ...(parts === undefined ? {} : { parts }),
        ...(bounds === true
          ? {
            min_part_size_bytes: MIN_PART_SIZE_BYTES,
            max_part_size_bytes: MAX_PART_SIZE_BYTES,
            recommended_part_size_bytes: recommendedPartSize(session.expectedSizeBytes)
          }
          : {})
      }),
    encode: (wire, _, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, wire, "an upload session cannot be rebuilt from its wire form"))
  }
)

const encodeSession = Schema.decodeSync(UploadSessionFromDomain)

export const sessionToJson = (
  session: UploadSession,
  extra: { readonly parts?: ReadonlyArray<UploadPart>; readonly bounds?: boolean } = {}
): UploadSessionJson => encodeSession({ session, ...extra })

export const partToJson: (part: UploadPart) => UploadPartJson = Schema.decodeSync(UploadPartFromDomain)
