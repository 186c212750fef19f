import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { RequireContentWrite } from "../auth/api.js"
import { NotModified } from "../contract/http.js"
import { UuidString } from "../contract/params.js"
import { InvalidRequest, Problem, RangeNotSatisfiable } from "../contract/problem.js"
import {
  CasBlobNotFound,
  PartBodyIncomplete,
  PartListRejected,
  TrustedBlobSizeMismatch,
  UploadExpired,
  UploadInvalidInput,
  UploadNotAbortable,
  UploadNotAcceptingParts,
  UploadNotCompletable,
  UploadNotFound,
  UploadSizeMismatch,
  UploadStorageGone
} from "./errors.js"
import { BeginUploadRequest, CompleteUploadRequest, UploadPartJson, UploadSessionJson } from "./schema.js"

/**
 * The uploads and raw-blob endpoints (api.md §2.3, §2.4). Defined apart from their
 * handlers (`http.ts`) so the root `src/api.ts` can import every group without cycles.
 * Path parameters are plain strings here and validated first thing by the handlers.
 */

const UploadPath = Schema.Struct({ upload_id: UuidString })

const ReadySession = UploadSessionJson.annotations({
  identifier: "UploadSessionReady",
  description: "The digest is already a trusted blob: a new session, already ready (no parts to send)."
})

export class UploadsGroup extends HttpApiGroup.make("uploads")
  // Any route answers 400 to a malformed path, query, body or header (api.md §1.9).
  .addError(Problem(InvalidRequest))
  .add(
    HttpApiEndpoint.post("begin", "/v1/uploads")
      .setPayload(BeginUploadRequest)
      .addSuccess(UploadSessionJson, { status: 201 })
      .addSuccess(ReadySession)
      .addError(Problem(TrustedBlobSizeMismatch))
      .middleware(RequireContentWrite)
      .annotate(
        OpenApi.Description,
        "Declares the digest and size of a blob and starts a multipart upload (201). If the digest is " +
          "already a trusted blob of that size, answers 200 with a session that is already ready. The " +
          "response advertises the part-size bounds."
      )
  )
  .add(
    HttpApiEndpoint.get("status", "/v1/uploads/:upload_id")
      .setPath(UploadPath)
      .addSuccess(UploadSessionJson)
      .addError(Problem(UploadNotFound))
      .annotate(
        OpenApi.Description,
        "The session (anonymous): poll it for completed → ingesting → ready | failed. Lists the parts " +
          "received so far, so a client that lost its state can resume."
      )
  )
  .add(
    HttpApiEndpoint.put("putPart", "/v1/uploads/:upload_id/parts/:part_number")
      .setPath(Schema.Struct({ upload_id: UuidString, part_number: Schema.String }))
      .addSuccess(UploadPartJson)
      .addError(Problem(UploadInvalidInput))
      .addError(Problem(PartBodyIncomplete))
      .addError(Problem(UploadNotFound))
      .addError(Problem(UploadNotAcceptingParts))
      .addError(Problem(UploadExpired))
      .middleware(RequireContentWrite)
      .annotate(
        OpenApi.Description,
        "Streams one part (raw bytes, Content-Length required, at most 5 GiB) into storage. Sending a " +
          "part number again replaces the part."
      )
  )
  .add(
    HttpApiEndpoint.post("complete", "/v1/uploads/:upload_id/complete")
      .setPath(UploadPath)
      .setPayload(CompleteUploadRequest)
      .addSuccess(UploadSessionJson)
      .addError(Problem(UploadInvalidInput))
      .addError(Problem(PartListRejected))
      .addError(Problem(UploadNotFound))
      .addError(Problem(UploadNotCompletable))
      .addError(Problem(UploadSizeMismatch))
      .addError(Problem(UploadExpired))
      .addError(Problem(UploadStorageGone))
      .middleware(RequireContentWrite)
      .annotate(
        OpenApi.Description,
        "Assembles the listed parts and queues verification. Safe to retry: a completed, ingesting or " +
          "ready session is returned unchanged."
      )
  )
  .add(
    HttpApiEndpoint.post("abort", "/v1/uploads/:upload_id/abort")
      .setPath(UploadPath)
      .addSuccess(UploadSessionJson)
      .addError(Problem(UploadNotFound))
      .addError(Problem(UploadNotAbortable))
      .middleware(RequireContentWrite)
      .annotate(OpenApi.Description, "Discards an unfinished upload and its parts. Idempotent.")
  )
  .annotate(OpenApi.Description, "Content-addressed uploads: begin, parts, complete, abort, status")
{}

export class BlobsGroup extends HttpApiGroup.make("blobs")
  // Any route answers 400 to a malformed path, query, body or header (api.md §1.9).
  .addError(Problem(InvalidRequest))
  .add(
    HttpApiEndpoint.get("getBlob", "/v1/blobs/:digest")
      .setPath(Schema.Struct({ digest: Schema.String }))
      .addSuccess(HttpApiSchema.Uint8Array({ contentType: "application/octet-stream" }))
      .addSuccess(
        HttpApiSchema.Uint8Array({ contentType: "application/octet-stream" }).annotations(
          HttpApiSchema.annotations({ status: 206 })
        )
      )
      .addSuccess(NotModified)
      .addError(Problem(CasBlobNotFound))
      .addError(Problem(RangeNotSatisfiable))
      .annotate(
        OpenApi.Description,
        "The bytes of any verified blob (anonymous). Strong ETag \"sha256:…\", conditional GET/HEAD " +
          "(304), one byte range (206/416), immutable caching."
      )
  )
  .annotate(OpenApi.Description, "Raw content-addressed blobs")
{}
