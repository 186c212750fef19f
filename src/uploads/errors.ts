import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"
import { formatTimestamp } from "../contract/timestamp.js"

/**
 * The client-visible failures of uploads and raw blobs (api.md §1.9 status mapping).
 * Each `message` is the problem `detail`; none carries storage keys or internal text.
 */

/** 400 — the request is malformed in a way a schema cannot see (part numbers, part lists...). */
export class UploadInvalidInput extends Schema.TaggedError<UploadInvalidInput>()(
  "UploadInvalidInput",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `upload invalid input: ${this.detail}`
  }
}

/**
 * 400 — a part body ended before its Content-Length (a client or proxy cut it short).
 * Nothing is recorded; the part can simply be sent again.
 */
export class PartBodyIncomplete extends Schema.TaggedError<PartBodyIncomplete>()(
  "PartBodyIncomplete",
  { expected: Schema.Number, received: Schema.Number },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `upload invalid input: the part body carried ${this.received} of its ${this.expected} declared bytes; nothing was recorded, send the part again`
  }
}

/** 400 — the store refused the listed parts (an ETag that does not match, a part never uploaded). */
export class PartListRejected extends Schema.TaggedError<PartListRejected>()(
  "PartListRejected",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `upload invalid input: storage rejected the part list: ${this.reason}`
  }
}

/** 404 — no session with that id. */
export class UploadNotFound extends Schema.TaggedError<UploadNotFound>()(
  "UploadNotFound",
  { uploadId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `upload not found: ${this.uploadId}`
  }
}

/** 412 — PUT part on a session that is past `uploading`. */
export class UploadNotAcceptingParts extends Schema.TaggedError<UploadNotAcceptingParts>()(
  "UploadNotAcceptingParts",
  { state: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: upload session is ${this.state} and does not accept parts`
  }
}

/** 412 — the session's TTL is over; begin a new upload. */
export class UploadExpired extends Schema.TaggedError<UploadExpired>()(
  "UploadExpired",
  { expiresAt: Schema.DateFromSelf },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: upload session expired at ${formatTimestamp(this.expiresAt)}`
  }
}

/** 412 — complete on a failed or aborted session. */
export class UploadNotCompletable extends Schema.TaggedError<UploadNotCompletable>()(
  "UploadNotCompletable",
  { state: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: upload session cannot be completed from ${this.state}`
  }
}

/** 412 — abort on a session that is completed or further along. */
export class UploadNotAbortable extends Schema.TaggedError<UploadNotAbortable>()(
  "UploadNotAbortable",
  { state: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: upload session cannot be aborted from ${this.state}`
  }
}

/** 412 — the parts listed at complete do not add up to `expected_size_bytes`. */
export class UploadSizeMismatch extends Schema.TaggedError<UploadSizeMismatch>()(
  "UploadSizeMismatch",
  { declared: Schema.Number, expected: Schema.Number },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: parts total ${this.declared} bytes, the upload expects ${this.expected}`
  }
}

/**
 * 412 — the storage side of the session is gone or unusable (multipart upload vanished
 * without leaving the assembled object, or the assembled object has another size).
 */
export class UploadStorageGone extends Schema.TaggedError<UploadStorageGone>()(
  "UploadStorageGone",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: ${this.detail}; begin a new upload`
  }
}

/** 412 — begin declared a size that differs from the trusted blob with that digest. */
export class TrustedBlobSizeMismatch extends Schema.TaggedError<TrustedBlobSizeMismatch>()(
  "TrustedBlobSizeMismatch",
  { digest: Schema.String, trustedSize: Schema.Number, expectedSize: Schema.Number },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `upload failed precondition: ${this.digest} is a trusted blob of ${this.trustedSize} bytes, not ${this.expectedSize}`
  }
}

/** 404 — no verified blob with that digest. */
export class CasBlobNotFound extends Schema.TaggedError<CasBlobNotFound>()(
  "CasBlobNotFound",
  { digest: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `blob not found: ${this.digest}`
  }
}
