import * as NodeSink from "@effect/platform-node/NodeSink"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Stream } from "effect"
import { createHash, type Hash } from "node:crypto"
import { createReadStream, createWriteStream } from "node:fs"
import { rename, rm, stat, truncate } from "node:fs/promises"
import * as path from "node:path"
import { endpointOf, endpointPath, ImgsrvClient, request, retryTransient } from "./client.js"
import { type ClientError, DownloadVerificationFailed, LocalFileError, UnexpectedResponse } from "./errors.js"
import { type EventSink, ignoreEvents } from "./events.js"

/**
 * `download`: the bytes behind a download URL into a local file, verified. Bytes arrive in
 * `<out>.partial`; a partial file left by an earlier attempt is continued with a Range
 * request (`If-Range` on the digest's ETag, so bytes of another blob are never appended),
 * and only bytes that hash to the expected digest are renamed to `out`. A file already at
 * `out` with the expected digest is kept as it is.
 */

export interface DownloadOptions {
  /** Where the bytes go. */
  readonly out: string
  /** `sha256:<hex>`, as the manifest declares it. */
  readonly digest: string
  readonly sizeBytes: number
  readonly onEvent?: EventSink | undefined
  /** How events name the file (default: the base name of `out`). */
  readonly label?: string | undefined
}

export interface DownloadedFile {
  readonly path: string
  readonly digest: string
  readonly sizeBytes: number
  /** Bytes that were not fetched again: from `<out>.partial`, or all of them when `out` was already right. */
  readonly resumedFrom: number
}

const reasonOf = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

const sizeOf = (file: string): Effect.Effect<number | undefined, LocalFileError> =>
  Effect.tryPromise({ try: () => stat(file), catch: (cause) => cause }).pipe(
    Effect.map((info) => info.isFile() ? info.size : undefined),
    Effect.catchAll((cause) =>
      (cause as { code?: unknown }).code === "ENOENT"
        ? Effect.succeed(undefined)
        : Effect.fail(new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) }))
    )
  )

/** Feeds the first `length` bytes of `file` into `hash`. */
const hashPrefix = (file: string, length: number, hash: Hash): Effect.Effect<void, LocalFileError> =>
  length === 0 ? Effect.void : Effect.async<void, LocalFileError>((resume) => {
    const stream = createReadStream(file, { start: 0, end: length - 1, highWaterMark: 1024 * 1024 })
    stream.on("data", (chunk) => hash.update(chunk as Buffer))
    stream.on(
      "error",
      (cause) => resume(Effect.fail(new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) })))
    )
    stream.on("end", () => resume(Effect.void))
    return Effect.sync(() => stream.destroy())
  })

const fileDigest = (file: string, length: number) =>
  Effect.suspend(() => {
    const hash = createHash("sha256")
    return Effect.as(hashPrefix(file, length, hash), hash).pipe(Effect.map((h) => `sha256:${h.digest("hex")}`))
  })

const fsEffect = (file: string, operation: string, run: () => Promise<unknown>) =>
  Effect.tryPromise({
    try: run,
    catch: (cause) => new LocalFileError({ path: file, operation, reason: reasonOf(cause) })
  }).pipe(Effect.asVoid)

export const download = (
  urlPath: string,
  options: DownloadOptions
): Effect.Effect<DownloadedFile, ClientError, ImgsrvClient> =>
  Effect.gen(function*() {
    const client = yield* ImgsrvClient
    const emit = options.onEvent ?? ignoreEvents
    const label = options.label ?? path.basename(options.out)
    const { digest, sizeBytes, out } = options
    const partial = `${out}.partial`
    const finish = (resumedFrom: number) => {
      emit({ event: "downloaded", file: label, digest, size_bytes: sizeBytes, resumed_from: resumedFrom })
      return Effect.succeed<DownloadedFile>({ path: out, digest, sizeBytes, resumedFrom })
    }

    if ((yield* sizeOf(out)) === sizeBytes && (yield* fileDigest(out, sizeBytes)) === digest) {
      return yield* finish(sizeBytes)
    }

    // One attempt: continue the partial file, or start it over. Retried on transient
    // failures, each time from what the partial file holds by then.
    let resumedFrom = 0
    const attempt = Effect.gen(function*() {
      let have = (yield* sizeOf(partial)) ?? 0
      if (have > sizeBytes) {
        yield* fsEffect(partial, "truncate", () => truncate(partial, 0))
        have = 0
      }
      const hash = createHash("sha256")
      let append = false
      if (have > 0 && have < sizeBytes) {
        const get = HttpClientRequest.get(urlPath).pipe(
          HttpClientRequest.setHeader("range", `bytes=${have}-`),
          HttpClientRequest.setHeader("if-range", `"${digest}"`)
        )
        const response = yield* request(`download ${label}`, client.http.execute(get))
        append = response.status === 206
        if (append && !(response.headers["content-range"] ?? "").startsWith(`bytes ${have}-`)) {
          return yield* new UnexpectedResponse({
            what: `download ${label}`,
            reason: `asked for bytes from ${have}, got ${response.headers["content-range"] ?? "no Content-Range"}`
          })
        }
        if (append) {
          yield* hashPrefix(partial, have, hash)
          resumedFrom = Math.max(resumedFrom, have)
        }
        return yield* write(response.stream, append ? have : 0)
      }
      if (have === sizeBytes) {
        yield* hashPrefix(partial, have, hash)
        resumedFrom = Math.max(resumedFrom, have)
        return hash
      }
      const response = yield* request(`download ${label}`, client.http.execute(HttpClientRequest.get(urlPath)))
      return yield* write(response.stream, 0)

      function write(body: Stream.Stream<Uint8Array, unknown>, from: number) {
        let done = from
        return body.pipe(
          Stream.tap((chunk) =>
            Effect.sync(() => {
              hash.update(chunk)
              done += chunk.length
              emit({ event: "progress", file: label, phase: "downloading", done_bytes: done, total_bytes: sizeBytes })
            })
          ),
          Stream.run(NodeSink.fromWritable(
            () => createWriteStream(partial, { flags: from > 0 ? "a" : "w" }),
            (cause) => new LocalFileError({ path: partial, operation: "write", reason: reasonOf(cause) })
          )),
          (effect) => request(`download ${label}`, effect),
          Effect.as(hash)
        )
      }
    })
    const hash = yield* retryTransient(attempt)
    const actual = `sha256:${hash.digest("hex")}`
    if (actual !== digest) {
      yield* fsEffect(partial, "remove", () => rm(partial, { force: true }))
      return yield* new DownloadVerificationFailed({ path: out, expected: digest, actual })
    }
    yield* fsEffect(out, "write", () => rename(partial, out))
    return yield* finish(resumedFrom)
  })

/** The download path of an artifact (under its file name when `fileName` is given). */
export const artifactDownloadPath = (
  image: string,
  version: string,
  artifactId: string,
  fileName?: string
): string =>
  fileName === undefined
    ? endpointPath(endpointOf("catalog", "downloadArtifact").path, { name: image, version, artifact_id: artifactId })
    : endpointPath(endpointOf("catalog", "downloadArtifactFile").path, {
      name: image,
      version,
      artifact_id: artifactId,
      file_name: fileName
    })

/** The download path of an attachment. */
export const attachmentDownloadPath = (
  image: string,
  version: string,
  artifactId: string,
  attachmentId: string
): string =>
  endpointPath(endpointOf("catalog", "downloadAttachment").path, {
    name: image,
    version,
    artifact_id: artifactId,
    attachment_id: attachmentId
  })
