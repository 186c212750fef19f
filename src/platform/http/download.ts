import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Metric, MetricLabel } from "effect"
import type { Scope } from "effect"
import type { Sha256Digest } from "../../contract/digest.js"
import { makeLabelCache } from "../observability/metrics.js"
import { BlobStore } from "../storage/blob-store/blob-store.js"
import type { StorageKey } from "../storage/blob-store/keys.js"
import { contentTypeOf } from "./media-type.js"
import { problemBody } from "./problem.js"

/**
 * Download semantics shared by `/v1/blobs/{digest}` and the catalog's artifact and
 * attachment downloads (api.md §2.8): strong `"sha256:…"` ETags, conditional GET/HEAD,
 * one byte range, immutable caching, and bytes streamed from the blob store with
 * backpressure. The object is opened only when bytes will actually be sent, in the
 * request's Scope, so a client that disconnects mid-download releases the store
 * stream at once.
 */

export interface BlobRepresentation {
  readonly key: StorageKey
  readonly sizeBytes: number
  readonly digest: Sha256Digest
  /** Truncated to whole seconds on the wire. */
  readonly lastModified: Date
  readonly contentType: string
  /** Route template for metrics, e.g. `GET /v1/blobs/{digest}` (never a concrete path). */
  readonly route: string
}

export type RangeDecision =
  | { readonly _tag: "Full" }
  | { readonly _tag: "Partial"; readonly start: number; readonly end: number }
  | { readonly _tag: "Unsatisfiable" }

const FULL: RangeDecision = { _tag: "Full" }
const UNSATISFIABLE: RangeDecision = { _tag: "Unsatisfiable" }
const DIGITS = /^\d+$/

/**
 * Interprets a `Range` header against an object of `size` bytes. No header → Full.
 * Only one `bytes=` range is served; anything else is 416, never 400 (api.md §4.17).
 */
export const parseRange = (header: string | undefined, size: number): RangeDecision => {
  if (header === undefined) return FULL
  const value = header.trim()
  if (!value.startsWith("bytes=")) return UNSATISFIABLE
  const spec = value.slice("bytes=".length).trim()
  if (spec === "" || spec.includes(",") || size === 0) return UNSATISFIABLE
  const dash = spec.indexOf("-")
  if (dash === -1) return UNSATISFIABLE
  const first = spec.slice(0, dash).trim()
  const last = spec.slice(dash + 1).trim()
  if (first === "") {
    if (!DIGITS.test(last)) return UNSATISFIABLE
    const suffix = Number(last)
    if (suffix <= 0) return UNSATISFIABLE
    return { _tag: "Partial", start: Math.max(0, size - suffix), end: size - 1 }
  }
  if (!DIGITS.test(first)) return UNSATISFIABLE
  const start = Number(first)
  if (start >= size) return UNSATISFIABLE
  if (last === "") return { _tag: "Partial", start, end: size - 1 }
  if (!DIGITS.test(last)) return UNSATISFIABLE
  const end = Number(last)
  if (end < start) return UNSATISFIABLE
  return { _tag: "Partial", start, end: Math.min(end, size - 1) }
}

/** `"sha256:<hex>"` — the strong ETag clients strip the quotes from to get the digest. */
export const etagOf = (digest: Sha256Digest): string => `"${digest}"`

const toSeconds = (date: Date) => Math.floor(date.getTime() / 1000)

/** IMF-fixdate parsing; an unparsable value is `undefined` (and then ignored). */
const parseHttpDate = (value: string): number | undefined => {
  const millis = Date.parse(value)
  return Number.isNaN(millis) ? undefined : Math.floor(millis / 1000)
}

/**
 * `If-None-Match` (RFC 9110 §13.1.2): a comma-separated list of entity tags or `*`,
 * compared weakly (a `W/` prefix is ignored).
 */
export const ifNoneMatchMatches = (header: string | undefined, etag: string): boolean => {
  if (header === undefined || header.trim() === "") return false
  return header.split(",").some((candidate) => {
    const tag = candidate.trim()
    return tag === "*" || (tag.startsWith("W/") ? tag.slice(2) : tag) === etag
  })
}

/**
 * `If-None-Match` (weak comparison, `*`, lists) decides alone when present and
 * non-blank; otherwise `If-Modified-Since` applies.
 */
export const isNotModified = (
  headers: { readonly ifNoneMatch?: string | undefined; readonly ifModifiedSince?: string | undefined },
  etag: string,
  lastModified: Date
): boolean => {
  const inm = headers.ifNoneMatch?.trim()
  if (inm !== undefined && inm !== "") return ifNoneMatchMatches(inm, etag)
  const ims = headers.ifModifiedSince?.trim()
  if (ims === undefined || ims === "") return false
  const since = parseHttpDate(ims)
  return since !== undefined && toSeconds(lastModified) <= since
}

/** `If-Range`: an entity tag compares strongly (so `W/…` never matches); anything else is a date. */
export const ifRangeMatches = (value: string | undefined, etag: string, lastModified: Date): boolean => {
  if (value === undefined) return true
  const trimmed = value.trim()
  if (trimmed.startsWith("\"") || trimmed.startsWith("W/")) return trimmed === etag
  const date = parseHttpDate(trimmed)
  return date !== undefined && toSeconds(lastModified) <= date
}

const downloadsTotal = Metric.counter("imgsrv_downloads_total", {
  description: "Downloads answered, by route template and status (200, 206, 304, 416).",
  incremental: true
})
const downloadBytes = Metric.counter("imgsrv_download_bytes_total", {
  description: "Bytes of blob content sent to clients, by route template.",
  incremental: true
})
/** Stable label arrays (metrics.ts `makeLabelCache`): bytes are counted once per chunk. */
const routeLabels = makeLabelCache()
const routeStatusLabels = makeLabelCache()

export { NotModified } from "../../contract/http.js"

/**
 * Answers a GET or HEAD for one blob with the full semantics of api.md §2.8.
 * Lookups (404 for unknown or unpublished things) happen before: the store failing to
 * produce bytes a row promises (object gone, storage down) is a server fault, a defect
 * (→ 500 without internal text, the cause in the log).
 */
export const serveBlob = (
  blob: BlobRepresentation
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  BlobStore | Scope.Scope | HttpServerRequest.HttpServerRequest
> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const etag = etagOf(blob.digest)
    const lastModifiedSeconds = toSeconds(blob.lastModified)
    const common: Record<string, string> = {
      "accept-ranges": "bytes",
      "cache-control": "public, max-age=31536000, immutable",
      "etag": etag,
      ...(lastModifiedSeconds > 0 ? { "last-modified": new Date(lastModifiedSeconds * 1000).toUTCString() } : {})
    }
    const count = (status: number) =>
      Effect.sync(() =>
        downloadsTotal.unsafeUpdate(
          1,
          routeStatusLabels(`${blob.route} ${status}`, () => [
            MetricLabel.make("route", blob.route),
            MetricLabel.make("status", String(status))
          ])
        )
      )

    if (
      isNotModified(
        { ifNoneMatch: request.headers["if-none-match"], ifModifiedSince: request.headers["if-modified-since"] },
        etag,
        blob.lastModified
      )
    ) {
      yield* count(304)
      return HttpServerResponse.empty({ status: 304, headers: common })
    }

    const rangeHeader = ifRangeMatches(request.headers["if-range"], etag, blob.lastModified)
      ? request.headers["range"]
      : undefined
    const range = parseRange(rangeHeader, blob.sizeBytes)
    if (range._tag === "Unsatisfiable") {
      yield* count(416)
      return HttpServerResponse.unsafeJson(problemBody(416, `range not satisfiable for ${blob.sizeBytes} bytes`), {
        status: 416,
        contentType: "application/problem+json",
        headers: { ...common, "content-range": `bytes */${blob.sizeBytes}` }
      })
    }

    const partial = range._tag === "Partial"
    const status = partial ? 206 : 200
    const length = partial ? range.end - range.start + 1 : blob.sizeBytes
    const contentType = yield* contentTypeOf(blob.contentType, blob.route)
    const headers: Record<string, string> = {
      ...common,
      "content-type": contentType,
      "content-length": String(length),
      ...(partial ? { "content-range": `bytes ${range.start}-${range.end}/${blob.sizeBytes}` } : {})
    }
    yield* count(status)
    if (request.method === "HEAD" || length === 0) {
      return HttpServerResponse.empty({ status, headers })
    }

    const store = yield* BlobStore
    const opened = yield* store.open(blob.key, partial ? { start: range.start, end: range.end } : undefined).pipe(
      Effect.orDie
    )
    // The store's Node stream goes to the response as it is: the platform pipes it into the
    // socket (backpressure, and destroyed when the client goes away), with no Effect step
    // per chunk. The handle stays the request Scope's, released after the response either way.
    const body = opened.toReadable()
    const labels = routeLabels(blob.route, () => [MetricLabel.make("route", blob.route)])
    // Counted as they leave the store. Paused first, so that listening does not start the
    // flow before the platform has piped it into the response (pipe resumes it).
    body.pause()
    body.on("data", (chunk: Uint8Array) => downloadBytes.unsafeUpdate(chunk.byteLength, labels))
    return HttpServerResponse.raw(body, { status, headers, contentType })
  })
