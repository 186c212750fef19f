import type { HttpServerResponse } from "@effect/platform"
import { type HttpApp, HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import type { Exit } from "effect"
import { Cause, Context, Effect, FiberRef, LogLevel, Metric, MetricLabel, Option, Tracer } from "effect"
import type { ServerResponse } from "node:http"
import { unsafeFreshUuid } from "../fresh-ids.js"
import { latencyBoundaries, makeLabelCache } from "../observability/metrics.js"
import { BODY_METHODS } from "./api-middleware.js"
import { clientAddressOf, NO_TRUSTED_PROXIES, type TrustedProxies } from "./client-address.js"
import type { RateLimiter } from "./rate-limit.js"
import { pathnameOf, type RouteTable } from "./routes.js"

// Server-level middleware: request id, access log, HTTP metrics.

const requestDuration = Metric.histogram(
  "http_server_request_duration_seconds",
  latencyBoundaries,
  "Duration of HTTP server requests."
)
const activeRequests = Metric.gauge("http_server_active_requests", {
  description: "Number of active HTTP server requests."
})
const requestsTotal = Metric.counter("imgsrv_http_requests_total", {
  description: "HTTP requests served, by method, route template and status.",
  incremental: true
})

/**
 * `X-Request-ID`: echoed when it is 1–128 printable ASCII characters, else a new UUID from
 * `fresh` (api.md §1.11). The callers take `fresh` from `FreshIds`, so a test can fix it.
 */
export const requestIdFrom = (header: string | undefined, fresh: () => string): string => {
  const trimmed = header?.trim() ?? ""
  return trimmed.length >= 1 && trimmed.length <= 128 && /^[\x21-\x7e]+$/.test(trimmed) ? trimmed : fresh()
}

/** The listener a request arrived on, as the reference's HTTP series label it. */
export interface ListenerIdentity {
  /** The address the listener is bound to (`0.0.0.0`, `::`, `127.0.0.1`, …). */
  readonly address: string
  readonly port: number
}

/** What the HTTP metrics are updated with, once per request (both request paths). */
export interface HttpMetrics {
  /** Records one finished request: duration histogram and request counter. */
  readonly record: (method: string, route: string, status: number, seconds: number) => void
  /** Adds `delta` to the active-requests gauge of `method`. */
  readonly trackActive: (method: string, delta: number) => void
}

/**
 * The HTTP metrics of one listener. The reference (Go otelhttp) labels its series with the
 * listener too — `network_protocol_name`, `server_address`, `server_port`, `url_scheme`.
 * Here they describe the socket the listener is bound to, not the request's `Host` header,
 * which any client can set to anything (unbounded label values); TLS is terminated in
 * front of imgsrv, so the scheme is `http`. `listener` is read at the first request, when
 * the bound port is known (port 0 picks one).
 * Label arrays come from `makeLabelCache` (bounded: method × route template × status).
 */
export const makeHttpMetrics = (listener: () => ListenerIdentity | undefined): HttpMetrics => {
  let listenerLabels: ReadonlyArray<MetricLabel.MetricLabel> | undefined
  const listenerLabelsOf = () => {
    if (listenerLabels !== undefined) return listenerLabels
    const identity = listener()
    const labels = [
      MetricLabel.make("network_protocol_name", "http"),
      MetricLabel.make("server_address", identity?.address ?? ""),
      MetricLabel.make("server_port", identity === undefined ? "" : String(identity.port)),
      MetricLabel.make("url_scheme", "http")
    ]
    // Not listening yet (cannot happen for a request, but then do not remember a guess).
    if (identity !== undefined) listenerLabels = labels
    return labels
  }
  const ours = makeLabelCache()
  const reference = makeLabelCache()
  const active = makeLabelCache()
  const oursOf = (method: string, route: string, status: number) =>
    ours(`${method} ${route} ${status}`, () => [
      MetricLabel.make("http_request_method", method),
      MetricLabel.make("http_route", route),
      MetricLabel.make("http_response_status_code", String(status))
    ])
  return {
    record: (method, route, status, seconds) => {
      const key = `${method} ${route} ${status}`
      requestDuration.unsafeUpdate(
        seconds,
        reference(key, () => [...oursOf(method, route, status), ...listenerLabelsOf()])
      )
      requestsTotal.unsafeUpdate(1, oursOf(method, route, status))
    },
    trackActive: (method, delta) => {
      const labels = active(method, () => [
        MetricLabel.make("http_request_method", method),
        ...listenerLabelsOf().filter((label) => label.key !== "network_protocol_name")
      ])
      activeRequests.unsafeModify(delta, labels)
    }
  }
}

/** The level of the access-log line of a response with `status`. */
const accessLogLevel = (status: number) =>
  status >= 500 ? LogLevel.Error : status >= 400 ? LogLevel.Warning : LogLevel.Info

/**
 * Query parameters whose values never reach the log: credentials, signatures, OAuth
 * codes and the like, matched on the (decoded) parameter name.
 */
const SECRET_PARAMETER =
  /token|secret|signature|passw|credential|auth|session|api[-_]?key|access[-_]?key|private[-_]?key|(^|[-_.])(code|sig|key|pwd)$/i

/** Longest path (with query) and user agent an access-log line carries. */
const PATH_LOG_LIMIT = 2048
const USER_AGENT_LOG_LIMIT = 512

const clip = (text: string, limit: number) => text.length > limit ? `${text.slice(0, limit)}…` : text

const decodedName = (name: string) => {
  try {
    return decodeURIComponent(name.replace(/\+/g, " "))
  } catch {
    return name
  }
}

/**
 * The request path as the access log shows it: as the client sent it, with the values of
 * secret-looking query parameters replaced by `REDACTED`, and clipped.
 */
export const loggedPath = (url: string): string => {
  const q = url.indexOf("?")
  if (q === -1) return clip(url, PATH_LOG_LIMIT)
  const query = url.slice(q + 1).split("&").map((pair) => {
    const eq = pair.indexOf("=")
    return eq !== -1 && SECRET_PARAMETER.test(decodedName(pair.slice(0, eq))) ? `${pair.slice(0, eq)}=REDACTED` : pair
  })
  return clip(`${url.slice(0, q)}?${query.join("&")}`, PATH_LOG_LIMIT)
}

/** What the access-log line of one request says (both request paths fill it in). */
export interface AccessLogFields {
  readonly method: string
  /** Route label (`GET /v1/images/{name}`), `unmatched` for unknown paths. */
  readonly route: string
  /** The raw request URL (path and query). */
  readonly url: string
  readonly status: number
  readonly seconds: number
  /** Response body bytes handed to the socket. */
  readonly bytes: number
  /** The client: the TCP peer, or whom a trusted proxy forwarded for (client-address.ts). */
  readonly clientAddr: string
  /** The TCP peer. */
  readonly remoteAddr: string
  readonly userAgent: string | undefined
}

/** The access-log line of one request (shared by every request path). */
export const accessLog = (level: LogLevel.LogLevel, fields: AccessLogFields) =>
  Effect.logWithLevel(level, "http request").pipe(Effect.annotateLogs({
    method: fields.method,
    route: fields.route,
    path: loggedPath(fields.url),
    status: fields.status,
    duration_ms: Math.round(fields.seconds * 1000 * 10) / 10,
    response_bytes: fields.bytes,
    client_addr: fields.clientAddr,
    remote_addr: fields.remoteAddr,
    user_agent: clip(fields.userAgent ?? "", USER_AGENT_LOG_LIMIT)
  }))

/**
 * Counts the body bytes written to `response` from now on (HEAD and empty bodies: 0). Both
 * ways a body leaves are wrapped: `write` (streams piped into the response) and `end`.
 */
const countBodyBytes = (response: ServerResponse): () => number => {
  let bytes = 0
  const count = (chunk: unknown, encoding: unknown) => {
    if (typeof chunk === "string") {
      bytes += Buffer.byteLength(chunk, typeof encoding === "string" ? encoding as BufferEncoding : "utf8")
    } else if (chunk instanceof Uint8Array) bytes += chunk.byteLength
  }
  const write = response.write
  const end = response.end
  response.write = function(this: ServerResponse, chunk: unknown, ...rest: Array<unknown>) {
    count(chunk, rest[0])
    return Reflect.apply(write, this, [chunk, ...rest]) as boolean
  } as ServerResponse["write"]
  response.end = function(this: ServerResponse, chunk?: unknown, ...rest: Array<unknown>) {
    if (typeof chunk !== "function") count(chunk, rest[0])
    return Reflect.apply(end, this, [chunk, ...rest]) as ServerResponse
  } as ServerResponse["end"]
  return () => bytes
}

/** Whether a request announces a body (which a refusal before the app leaves unread). */
export const announcesBody = (headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>) =>
  headers["transfer-encoding"] !== undefined ||
  (headers["content-length"] !== undefined && headers["content-length"] !== "0")

/** Who the clients are and how much they may ask: client-address.ts and rate-limit.ts. */
export interface ClientPolicy {
  readonly trustedProxies: TrustedProxies
  readonly rateLimiter: RateLimiter | undefined
}

export const NO_CLIENT_POLICY: ClientPolicy = { trustedProxies: NO_TRUSTED_PROXIES, rateLimiter: undefined }

export const headerValue = (value: string | ReadonlyArray<string> | undefined) =>
  typeof value === "string" ? value : undefined

/**
 * Wraps request handling: assigns the request id (header on every response,
 * annotation on every log line of the request), refuses what the rate limits refuse
 * (before anything reads the request), writes one access-log line and records the HTTP
 * metrics with the route template. (`WWW-Authenticate` on 401s is added by the renderer,
 * where every 401 is made.)
 *
 * Runs on every request, so it is written for speed: no per-request metric tagging,
 * no log record built below the log level, and the response headers it adds are set
 * on the Node response before the app runs — Node merges them into whatever the app
 * writes, error responses of the platform included — instead of through a
 * pre-response handler (a fiber-ref update and a response copy per request).
 */
export const serverMiddleware = (
  routes: RouteTable,
  options: {
    readonly tracing: boolean
    readonly metrics: HttpMetrics
    readonly clients?: ClientPolicy
    /** Told when a request that may have written has been handled, before its response is sent. */
    readonly localWrite?: () => void
  }
) =>
<E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> => {
  const clients = options.clients ?? NO_CLIENT_POLICY
  return Effect.withFiberRuntime((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    const requestId = requestIdFrom(
      request.headers["x-request-id"],
      () => unsafeFreshUuid(fiber.currentContext)
    )
    const route = routes.match(request.method, pathnameOf(request.url))
    const routeLabel = route ? route.label : "unmatched"
    const started = performance.now()
    const nodeResponse = NodeHttpServerRequest.toServerResponse(request)
    const bytesSent = countBodyBytes(nodeResponse)
    nodeResponse.setHeader("x-request-id", requestId)
    if (options.tracing) {
      const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
      if (Option.isSome(span)) {
        // Lets a client quote the trace of its request when reporting a problem.
        nodeResponse.setHeader("x-trace-id", span.value.traceId)
        if (span.value._tag === "Span") {
          span.value.attribute("http.route", route ? route.template : "unmatched")
          span.value.attribute("imgsrv.request_id", requestId)
        }
      }
    }
    const remoteAddr = Option.getOrElse(request.remoteAddress, () => "")
    const clientAddr = clientAddressOf(remoteAddr, request.headers["x-forwarded-for"], clients.trustedProxies)
    const refusal = clients.rateLimiter?.admit({
      clientAddress: clientAddr,
      authorization: request.headers["authorization"],
      protected: route?.protected ?? false,
      exempt: route?.group === "ops",
      hasBody: announcesBody(request.headers)
    })
    const minimumLevel = fiber.getFiberRef(FiberRef.currentMinimumLogLevel)
    const finish = (exit: Exit.Exit<HttpServerResponse.HttpServerResponse, E>) => {
      // What the client got: the response, or, when writing it failed half-way (the client
      // went away), the status already sent; 499 when nothing was.
      const status = exit._tag === "Success"
        ? exit.value.status
        : nodeResponse.headersSent
        ? nodeResponse.statusCode
        : Cause.isInterruptedOnly(exit.cause)
        ? 499
        : 500
      const seconds = (performance.now() - started) / 1000
      options.metrics.record(request.method, routeLabel, status, seconds)
      options.metrics.trackActive(request.method, -1)
      clients.rateLimiter?.settle(clientAddr, status)
      if (options.localWrite !== undefined && BODY_METHODS.has(request.method)) options.localWrite()
      const level = accessLogLevel(status)
      if (LogLevel.lessThan(level, minimumLevel)) return Effect.void
      return accessLog(level, {
        method: request.method,
        route: routeLabel,
        url: request.url,
        status,
        seconds,
        bytes: bytesSent(),
        clientAddr,
        remoteAddr,
        userAgent: request.headers["user-agent"]
      })
    }
    options.metrics.trackActive(request.method, 1)
    // A refusal is written here and now, so the line above counts its bytes; the platform
    // then finds the response ended and leaves it alone.
    const handled = refusal === undefined ? app : Effect.sync(() => {
      nodeResponse.writeHead(refusal.status, refusal.headers)
      nodeResponse.end(
        request.method !== "HEAD" && refusal.body._tag === "Uint8Array" ? refusal.body.body : undefined
      )
      return refusal
    })
    return handled.pipe(
      Effect.onExit(finish),
      Effect.annotateLogs("request_id", requestId)
    )
  })
}
