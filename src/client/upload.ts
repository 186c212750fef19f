import { Duration, Effect, Option, Schema } from "effect"
import * as path from "node:path"
import type { Sha256Digest } from "../contract/digest.js"
import { MAX_PART_BYTES, MAX_PART_NUMBER } from "../contract/limits.js"
import { UploadPartJson, type UploadSessionJson } from "../uploads/schema.js"
import {
  endpointOf,
  endpointPath,
  ImgsrvClient,
  type ImgsrvClientService,
  pollUntil,
  request,
  retryTransient
} from "./client.js"
import { type ClientError, InvalidArgument, ProblemError, UploadFailed } from "./errors.js"
import { type EventSink, ignoreEvents } from "./events.js"
import { hashFile, identify } from "./files.js"
import { type ClientState, memoryState } from "./state.js"

/**
 * `uploadFile`: one local file into the server's content-addressed store, resumably.
 *
 * 1. hash the file once (or take the digest remembered for the same path, size, mtime,
 *    ctime and inode);
 * 2. continue the session an earlier run left for this digest on this server — asking the
 *    server which parts it has — or begin one (a server that already has the blob answers
 *    `ready`, and nothing is sent);
 * 3. send the missing parts, `concurrency` at a time, each streamed from the file; a part
 *    failing with no answer, a 5xx or a 429 is sent again (at most 5 more times, with
 *    backoff), any other 4xx ends the upload;
 * 4. complete, then wait until the server has verified the bytes (`ready`), or report why
 *    it refused them (`failed`, with its `failure_reason`).
 */

export interface UploadFileOptions {
  /** Parts in flight at once (default 4). */
  readonly concurrency?: number | undefined
  /** Bytes per part (default: the server's `recommended_part_size_bytes`). */
  readonly partSize?: number | undefined
  readonly mediaTypeHint?: string | undefined
  readonly filenameHint?: string | undefined
  /** Where digests and sessions are remembered between runs (default: this process only). */
  readonly state?: ClientState | undefined
  readonly onEvent?: EventSink | undefined
  /** How events name the file (default: its base name). */
  readonly label?: string | undefined
  /** How long to wait for the server to verify the bytes (default 1 hour). */
  readonly timeout?: Duration.DurationInput | undefined
}

export interface UploadedBlob {
  readonly digest: Sha256Digest
  readonly sizeBytes: number
  readonly uploadId: string
  readonly partsSent: number
  readonly partsSkipped: number
  /** The server had the blob already (or an earlier run finished it): no byte was sent now. */
  readonly alreadyStored: boolean
}

const MiB = 1024 * 1024
const FALLBACK_PART_SIZE = 64 * MiB
const FALLBACK_MIN_PART_SIZE = 5 * MiB

interface Part {
  readonly number: number
  readonly etag: string
  readonly size_bytes: number
}

/** Whether a session can take the rest of the parts (not finished, not about to expire). */
const resumable = (session: UploadSessionJson, now: number) =>
  (session.state === "created" || session.state === "uploading") &&
  Date.parse(session.expires_at) > now + 60_000

/** Parts numbered from 1, each `partSize` bytes but the last; an empty file is one empty part. */
const planParts = (size: number, partSize: number) => {
  const count = Math.max(1, Math.ceil(size / partSize))
  return Array.from({ length: count }, (_, i) => {
    const start = i * partSize
    return { number: i + 1, start, length: Math.max(0, Math.min(partSize, size - start)) }
  })
}

const checkPartSize = (size: number, partSize: number, minPartSize: number) => {
  if (!Number.isSafeInteger(partSize) || partSize <= 0) {
    return Effect.fail(new InvalidArgument({ reason: `part size must be a positive integer, got ${partSize}` }))
  }
  if (partSize > MAX_PART_BYTES) {
    return Effect.fail(new InvalidArgument({ reason: `part size must be at most ${MAX_PART_BYTES} bytes (5 GiB)` }))
  }
  if (size > partSize && partSize < minPartSize) {
    return Effect.fail(
      new InvalidArgument({ reason: `part size must be at least ${minPartSize} bytes when there are several parts` })
    )
  }
  if (Math.ceil(size / partSize) > MAX_PART_NUMBER) {
    return Effect.fail(
      new InvalidArgument({
        reason: `part size ${partSize} makes more than ${MAX_PART_NUMBER} parts; use bigger parts`
      })
    )
  }
  return Effect.void
}

const decodePart = Schema.decodeUnknown(UploadPartJson)

const sendPart = (
  client: ImgsrvClientService,
  file: string,
  uploadId: string,
  part: { readonly number: number; readonly start: number; readonly length: number },
  onBytes: (delta: number) => void
): Effect.Effect<Part, ClientError> => {
  const url = endpointPath(endpointOf("uploads", "putPart").path, { upload_id: uploadId, part_number: part.number })
  const attempt = Effect.suspend(() => {
    let sent = 0
    // Streamed from the file as the socket takes it (see `sendFile`).
    return client.sendFile("PUT", url, { file, start: part.start, length: part.length }, (bytes) => {
      sent += bytes
      onBytes(bytes)
    }).pipe(
      Effect.flatMap((answer) => request(`PUT part ${part.number}`, decodePart(answer))),
      // Bytes of a failed attempt are sent again: take them back from the progress.
      Effect.tapError(() => Effect.sync(() => onBytes(-sent)))
    )
  })
  return retryTransient(attempt).pipe(
    Effect.map((answer) => ({ number: part.number, etag: answer.etag, size_bytes: answer.size_bytes }))
  )
}

export const uploadFile = (
  file: string,
  options: UploadFileOptions = {}
): Effect.Effect<UploadedBlob, ClientError, ImgsrvClient> =>
  Effect.gen(function*() {
    const client = yield* ImgsrvClient
    const state = options.state ?? memoryState()
    const emit = options.onEvent ?? ignoreEvents
    const label = options.label ?? path.basename(file)
    const concurrency = options.concurrency ?? 4
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      return yield* new InvalidArgument({ reason: `concurrency must be a positive integer, got ${concurrency}` })
    }

    // 1. The digest.
    const identity = yield* identify(file)
    const size = identity.size
    const cached = yield* state.digestOf(identity)
    emit({ event: "hashing", file: label, size_bytes: size, cached: Option.isSome(cached) })
    const digest = Option.isSome(cached)
      ? cached.value as Sha256Digest
      : yield* hashFile(file, (done) =>
        emit({ event: "progress", file: label, phase: "hashing", done_bytes: done, total_bytes: size }))
    if (Option.isNone(cached)) {
      yield* state.rememberDigest(identity, digest)
    }

    // 2. The session: the one an earlier run left, if the server can still continue it.
    const now = Date.now()
    const stored = yield* state.sessionOf(client.server, digest, size)
    let session: UploadSessionJson | undefined
    let partSize = 0
    if (Option.isSome(stored)) {
      const status = yield* request(
        "get the upload status",
        retryTransient(client.api.uploads.status({ path: { upload_id: stored.value.uploadId } }))
      ).pipe(Effect.catchIf((e) =>
        e instanceof ProblemError && e.status === 404, () => Effect.succeed(undefined)))
      // Failed and aborted sessions are final, and an expiring one would refuse the rest.
      const continuable = status !== undefined && (
        resumable(status, now) || status.state === "completed" || status.state === "ingesting" ||
        status.state === "ready"
      )
      if (continuable) {
        session = status
        partSize = stored.value.partSize
      }
      if (session === undefined) yield* state.forgetSession(client.server, digest, size)
    }
    if (session === undefined) {
      // A retried begin whose first answer was lost leaves an unused session, which expires.
      const begun = yield* request(
        "begin the upload",
        retryTransient(client.api.uploads.begin({
          payload: {
            expected_digest: digest,
            expected_size_bytes: size,
            ...(options.mediaTypeHint === undefined ? {} : { media_type_hint: options.mediaTypeHint }),
            ...(options.filenameHint === undefined ? {} : { filename_hint: options.filenameHint })
          }
        }))
      )
      if (begun.state === "ready") {
        emit({
          event: "ready",
          file: label,
          upload_id: begun.id,
          digest,
          size_bytes: size,
          already_stored: true
        })
        return { digest, sizeBytes: size, uploadId: begun.id, partsSent: 0, partsSkipped: 0, alreadyStored: true }
      }
      partSize = options.partSize ?? begun.recommended_part_size_bytes ?? FALLBACK_PART_SIZE
      yield* checkPartSize(size, partSize, begun.min_part_size_bytes ?? FALLBACK_MIN_PART_SIZE)
      session = begun
      yield* state.rememberSession(client.server, digest, size, { uploadId: begun.id, partSize })
    }
    const uploadId = session.id

    // 3. The parts the server does not have yet.
    let partsSent = 0
    let partsSkipped = 0
    if (session.state === "created" || session.state === "uploading") {
      const plan = planParts(size, partSize)
      const received = new Map((session.parts ?? []).map((p) => [p.number, p] as const))
      let done = 0
      const progress = (delta: number) => {
        done += delta
        emit({ event: "progress", file: label, phase: "uploading", done_bytes: done, total_bytes: size })
      }
      const parts = yield* Effect.forEach(plan, (part) => {
        const have = received.get(part.number)
        if (have !== undefined && have.size_bytes === part.length) {
          partsSkipped += 1
          progress(part.length)
          emit({
            event: "part",
            file: label,
            upload_id: uploadId,
            number: part.number,
            size_bytes: part.length,
            sent: false
          })
          return Effect.succeed<Part>(have)
        }
        return sendPart(client, file, uploadId, part, progress).pipe(Effect.tap(() =>
          Effect.sync(() => {
            partsSent += 1
            emit({
              event: "part",
              file: label,
              upload_id: uploadId,
              number: part.number,
              size_bytes: part.length,
              sent: true
            })
          })
        ))
      }, { concurrency })
      yield* request(
        "complete the upload",
        retryTransient(client.api.uploads.complete({ path: { upload_id: uploadId }, payload: { parts } }))
      )
      emit({
        event: "uploaded",
        file: label,
        upload_id: uploadId,
        digest,
        parts_sent: partsSent,
        parts_skipped: partsSkipped
      })
    }

    // 4. Verification by the server.
    const final = yield* pollUntil(
      request("get the upload status", client.api.uploads.status({ path: { upload_id: uploadId } })),
      (s) => s.state !== "completed" && s.state !== "ingesting",
      `the server to verify ${label}`,
      options.timeout ?? Duration.hours(1)
    )
    yield* state.forgetSession(client.server, digest, size)
    if (final.state !== "ready") {
      // The bytes were not what the digest promised: hash the file again next time.
      yield* state.forgetDigest(identity)
      return yield* new UploadFailed({ file: label, uploadId, reason: final.failure_reason ?? final.state })
    }
    emit({
      event: "ready",
      file: label,
      upload_id: uploadId,
      digest,
      size_bytes: size,
      already_stored: partsSent === 0
    })
    return { digest, sizeBytes: size, uploadId, partsSent, partsSkipped, alreadyStored: partsSent === 0 }
  })
