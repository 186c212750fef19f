import { Context, Effect, FiberRef, FiberRefs, LogLevel, Runtime } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { unsafeFreshUuid } from "../fresh-ids.js"
import {
  accessLog,
  announcesBody,
  type ClientPolicy,
  headerValue,
  type HttpMetrics,
  NO_CLIENT_POLICY,
  requestIdFrom
} from "./access-log.js"
import { clientAddressOf } from "./client-address.js"
import { pathnameOf } from "./routes.js"

// Immutable responses: answered by the listener before the Effect app runs.

/** A response body kept in memory with what the access log and the metrics need. */
export interface ImmutableResponse {
  readonly body: Uint8Array
  readonly contentType: string
  /** Label of the route the path belongs to (metrics, access log). */
  readonly route: string
}

/**
 * Responses that do not change for a given request path — the manifest of a published
 * version is the case today (catalog/manifest-cache.ts provides this, from its one cache of
 * encoded manifests, and empties it on a yank, unyank or retirement) — kept encoded so that
 * the listener answers a GET or HEAD of that path without running the Effect app (see
 * `answerImmutable`; the app stays the only place where such a response is made).
 *
 * `lookup` may only answer a path with the 200 the app gives a GET of it on an anonymous
 * route, from the path alone: no header, query parameter or principal changes it, and no
 * later write but one that empties the cache can.
 */
export class ImmutableResponses extends Context.Tag("imgsrv/ImmutableResponses")<ImmutableResponses, {
  /** The response to a GET or HEAD of `pathname` (no query), if it is kept. */
  readonly lookup: (pathname: string) => ImmutableResponse | undefined
}>() {}

/** What a response answered from memory sends, once the request qualifies. */
export interface MemoryAnswer {
  /** Route label for the metrics and the access log. */
  readonly route: string
  /** Writes status, headers (after `X-Request-ID`) and, unless HEAD, the body. */
  readonly write: (
    response: ServerResponse,
    requestId: string,
    method: "GET" | "HEAD"
  ) => { readonly status: number; readonly bytes: number }
}

/**
 * The listener's look at a request before the Effect app (http-server.ts), shared by every
 * response kept in memory (the immutable manifests below, the Simple Streams documents in
 * cached-documents.ts): a GET or HEAD without a body for which `find` has an answer is
 * answered here and `true` is returned; anything else returns `false` untouched, for the app.
 *
 * What a client and an operator observe is what the app would produce for it: the same
 * status, body and headers (`X-Request-ID` echoed or generated; HEAD without the body), the
 * same HTTP metrics with the route template, the same access-log line at the same level
 * through the same logger, and the same general rate limit (a request it refuses is left to
 * the app, which answers the 429). Not used while tracing is on, where every request must
 * produce its span.
 */
export const answerFromMemory = (
  find: (pathname: string, request: IncomingMessage) => MemoryAnswer | undefined,
  runtime: Runtime.Runtime<never>,
  metrics: HttpMetrics,
  clients: ClientPolicy = NO_CLIENT_POLICY
) => {
  const minimumLevel = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel)
  const logs = !LogLevel.lessThan(LogLevel.Info, minimumLevel)
  const runLog = Runtime.runSync(runtime)
  const freshId = () => unsafeFreshUuid(runtime.context)
  return (request: IncomingMessage, response: ServerResponse): boolean => {
    const method = request.method
    if (method !== "GET" && method !== "HEAD") return false
    const url = request.url ?? ""
    const answer = find(pathnameOf(url), request)
    if (answer === undefined) return false
    // A request carrying a body is left to the app, which knows what to do with it.
    if (announcesBody(request.headers)) return false
    const remoteAddr = request.socket.remoteAddress ?? ""
    // Node joins repeated unknown headers into one string, as the app sees them.
    const clientAddr = clientAddressOf(
      remoteAddr,
      headerValue(request.headers["x-forwarded-for"]),
      clients.trustedProxies
    )
    const refusal = clients.rateLimiter?.admit({
      clientAddress: clientAddr,
      authorization: request.headers.authorization,
      protected: false,
      exempt: false,
      hasBody: false
    })
    if (refusal !== undefined) return false
    const started = performance.now()
    metrics.trackActive(method, 1)
    const requestId = requestIdFrom(headerValue(request.headers["x-request-id"]), freshId)
    const { bytes, status } = answer.write(response, requestId, method)
    const seconds = (performance.now() - started) / 1000
    metrics.record(method, answer.route, status, seconds)
    metrics.trackActive(method, -1)
    if (logs) {
      runLog(
        accessLog(LogLevel.Info, {
          method,
          route: answer.route,
          url,
          status,
          seconds,
          bytes,
          clientAddr,
          remoteAddr,
          userAgent: request.headers["user-agent"]
        }).pipe(Effect.annotateLogs("request_id", requestId))
      )
    }
    return true
  }
}

/** `answerFromMemory` for the immutable responses: a published version's manifest. */
export const answerImmutable = (
  responses: ImmutableResponses["Type"],
  runtime: Runtime.Runtime<never>,
  metrics: HttpMetrics,
  clients: ClientPolicy = NO_CLIENT_POLICY
) =>
  answerFromMemory(
    (pathname) => {
      const hit = responses.lookup(pathname)
      return hit === undefined ? undefined : {
        route: hit.route,
        write: (response, requestId, method) => {
          // The header order the app's responses have (its own header is set first, see serverMiddleware).
          response.writeHead(200, {
            "x-request-id": requestId,
            "content-type": hit.contentType,
            "content-length": String(hit.body.byteLength)
          })
          if (method === "HEAD") response.end()
          else response.end(hit.body)
          return { status: 200, bytes: method === "HEAD" ? 0 : hit.body.byteLength }
        }
      }
    },
    runtime,
    metrics,
    clients
  )
