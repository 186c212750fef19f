import { Data, Duration } from "effect"

/**
 * What can go wrong when talking to imgsrv, as typed failures. Every message is one line
 * a person can act on; none carries the token (requests are never part of a message).
 */

/**
 * The server answered with an error status. imgsrv sends RFC 9457 problem+json: `detail`
 * says why, `requestId` finds the request in the server's log. The wire carries no error
 * tag, so the status is what to match on (`404`, `409`, `412`, …).
 */
export class ProblemError extends Data.TaggedError("ProblemError")<{
  readonly status: number
  readonly title: string
  readonly detail: string | undefined
  readonly requestId: string | undefined
  readonly method: string
  readonly url: string
}> {
  override get message() {
    const request = this.requestId === undefined ? "" : `, request id ${this.requestId}`
    return `${this.detail ?? this.title} (HTTP ${this.status}${request})`
  }
}

/** No answer: the server cannot be reached, or the connection broke before the answer ended. */
export class ConnectionError extends Data.TaggedError("ConnectionError")<{
  readonly method: string
  readonly url: string
  readonly reason: string
}> {
  override get message() {
    return `${this.method} ${this.url}: ${this.reason}`
  }
}

/** A success status with a body the client does not understand (not an imgsrv, or an incompatible one). */
export class UnexpectedResponse extends Data.TaggedError("UnexpectedResponse")<{
  readonly what: string
  readonly reason: string
}> {
  override get message() {
    return `unexpected answer to ${this.what}: ${this.reason}`
  }
}

/** A call to the server failed, one way or another. */
export type RequestFailure = ProblemError | ConnectionError | UnexpectedResponse

/** Reading or writing a local file failed. */
export class LocalFileError extends Data.TaggedError("LocalFileError")<{
  readonly path: string
  readonly operation: string
  readonly reason: string
}> {
  override get message() {
    return `cannot ${this.operation} ${this.path}: ${this.reason}`
  }
}

/**
 * The server refused the uploaded bytes (`failure_reason` of the session): `digest_mismatch`
 * when they hash to another digest than the one declared — the file changed while it was
 * being uploaded — `size_mismatch`, or `staged_object_missing`.
 */
export class UploadFailed extends Data.TaggedError("UploadFailed")<{
  readonly file: string
  readonly uploadId: string
  readonly reason: string
}> {
  override get message() {
    const hint = this.reason === "digest_mismatch"
      ? " (the bytes received do not hash to the digest declared at begin: did the file change during the upload?)"
      : ""
    return `upload ${this.uploadId} of ${this.file} failed: ${this.reason}${hint}`
  }
}

/** The publish job failed; `step` and `reason` are the job's `failed_step` and `reason`. */
export class PublishFailed extends Data.TaggedError("PublishFailed")<{
  readonly image: string
  readonly version: string
  readonly jobId: string
  readonly step: string | undefined
  readonly reason: string
}> {
  override get message() {
    const step = this.step === undefined ? "" : ` at ${this.step}`
    return `publish job ${this.jobId} of ${this.image}:${this.version} failed${step}: ${this.reason}`
  }
}

/**
 * The version is being published by a job this client did not start (or no longer knows):
 * it cannot tell when, or whether, that job ends.
 */
export class PublishInProgress extends Data.TaggedError("PublishInProgress")<{
  readonly image: string
  readonly version: string
}> {
  override get message() {
    return `${this.image}:${this.version} is being published by a job started elsewhere; wait for it ` +
      `(or retry it if it failed: POST /v1/publish-jobs/{id}/retry), then push again`
  }
}

/** Something the client waits for (verification, a publish job) did not end in time. */
export class WaitTimedOut extends Data.TaggedError("WaitTimedOut")<{
  readonly what: string
  readonly after: Duration.Duration
}> {
  override get message() {
    return `gave up waiting for ${this.what} after ${Duration.format(this.after)}`
  }
}

/** Downloaded bytes do not hash to the digest the server declared for them (the file is removed). */
export class DownloadVerificationFailed extends Data.TaggedError("DownloadVerificationFailed")<{
  readonly path: string
  readonly expected: string
  readonly actual: string
}> {
  override get message() {
    return `${this.path}: downloaded bytes hash to ${this.actual}, expected ${this.expected}`
  }
}

/** A helper was called with options it cannot work with (a part size out of bounds, …). */
export class InvalidArgument extends Data.TaggedError("InvalidArgument")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** Every failure of the client's helpers. */
export type ClientError =
  | RequestFailure
  | LocalFileError
  | UploadFailed
  | PublishFailed
  | PublishInProgress
  | WaitTimedOut
  | DownloadVerificationFailed
  | InvalidArgument
