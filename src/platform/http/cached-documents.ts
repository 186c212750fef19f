import { Context, Layer, type Runtime } from "effect"
import { type ClientPolicy, headerValue, type HttpMetrics, NO_CLIENT_POLICY } from "./access-log.js"
import { ifNoneMatchMatches } from "./download.js"
import { answerFromMemory } from "./fast-path.js"
import type { RouteTable } from "./routes.js"

/**
 * Cached documents: responses that do change, but rarely, and are read far more often
 * than they change — the Simple Streams documents Incus hosts poll are the case. The
 * domain that owns a document keeps it rendered and says whether its copy is current;
 * while it is, the listener answers GET and HEAD of its path from memory, before the
 * Effect app runs (like the immutable responses of http.ts), with the strong ETag and
 * `If-None-Match` → 304. When the copy is not known to be current the request goes to the
 * app, whose handler waits for the fresh document.
 */

export interface CachedDocument {
  readonly body: Uint8Array
  /** Strong entity tag, quoted. */
  readonly etag: string
  readonly contentType: string
  /** Further headers of both the 200 and the 304 (e.g. `cache-control`). */
  readonly headers: Readonly<Record<string, string>>
}

export interface CachedDocumentSource {
  /** The document when the owner knows its copy is current; otherwise undefined. */
  readonly current: () => CachedDocument | undefined
  /** Called for each response served from memory (the owner's metrics). */
  readonly served: (status: 200 | 304) => void
}

interface Registered {
  readonly source: CachedDocumentSource
  /** Label of the route the path belongs to (metrics, access log). */
  readonly route: string
}

export class CachedDocuments extends Context.Tag("imgsrv/CachedDocuments")<CachedDocuments, {
  /** Serves `pathname` (exact, no query) from `source` whenever it has a current document. */
  readonly register: (pathname: string, source: CachedDocumentSource) => void
  readonly lookup: (pathname: string) => Registered | undefined
  /**
   * Called when this process may have written: a request with a method that writes (POST,
   * PUT, PATCH, DELETE) has been handled (before its response is sent), or a background
   * step finished. Owners then check their copy before the next request is served from
   * memory, so a client reads its own writes on this replica without waiting for the
   * notification. (Writes of other replicas arrive by notification or poll.)
   */
  readonly localWrite: () => void
  /** Registers a listener of `localWrite`. */
  readonly onLocalWrite: (listener: () => void) => void
}>() {}

export const makeCachedDocuments = (routes: RouteTable): CachedDocuments["Type"] => {
  const paths = new Map<string, Registered>()
  const listeners: Array<() => void> = []
  return CachedDocuments.of({
    register: (pathname, source) => {
      const route = routes.match("GET", pathname)
      paths.set(pathname, { source, route: route ? route.label : `GET ${pathname}` })
    },
    lookup: (pathname) => paths.get(pathname),
    localWrite: () => {
      for (const listener of listeners) listener()
    },
    onLocalWrite: (listener) => void listeners.push(listener)
  })
}

export const CachedDocumentsLive = (routes: RouteTable) =>
  Layer.sync(CachedDocuments, () => makeCachedDocuments(routes))

/**
 * `answerFromMemory` (fast-path.ts) for the cached documents: a registered path whose
 * document is current is answered with 200, or 304 for a matching `If-None-Match`.
 */
export const answerCached = (
  documents: CachedDocuments["Type"],
  runtime: Runtime.Runtime<never>,
  metrics: HttpMetrics,
  clients: ClientPolicy = NO_CLIENT_POLICY
) =>
  answerFromMemory(
    (pathname, request) => {
      const registered = documents.lookup(pathname)
      const document = registered?.source.current()
      if (registered === undefined || document === undefined) return undefined
      return {
        route: registered.route,
        write: (response, requestId, method) => {
          const notModified = ifNoneMatchMatches(headerValue(request.headers["if-none-match"]), document.etag)
          if (notModified) {
            response.writeHead(304, { "x-request-id": requestId, ...document.headers, etag: document.etag })
            response.end()
          } else {
            response.writeHead(200, {
              "x-request-id": requestId,
              ...document.headers,
              etag: document.etag,
              "content-type": document.contentType,
              "content-length": String(document.body.byteLength)
            })
            if (method === "HEAD") response.end()
            else response.end(document.body)
          }
          const status = notModified ? 304 : 200
          registered.source.served(status)
          return { status, bytes: method === "HEAD" || notModified ? 0 : document.body.byteLength }
        }
      }
    },
    runtime,
    metrics,
    clients
  )
