import {
  FileSystem,
  HttpApi,
  HttpApiError,
  HttpApiMiddleware,
  type HttpApp,
  HttpIncomingMessage,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import type { HttpApiGroup } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { SqlError } from "@effect/sql"
import type { Exit } from "effect"
import {
  Cause,
  Context,
  Effect,
  FiberRef,
  FiberRefs,
  Layer,
  LogLevel,
  Metric,
  MetricLabel,
  Option,
  ParseResult,
  Runtime,
  Tracer
} from "effect"
import { randomUUID } from "node:crypto"
import type { IncomingMessage, ServerResponse } from "node:http"
import { API_ID } from "../contract/http.js"
import { BlobStoreError, isStoreUnavailable } from "./blob-store/blob-store.js"
import { clientAddressOf, NO_TRUSTED_PROXIES, type TrustedProxies } from "./client-address.js"
import { readBody, withBody } from "./json-body.js"
import { latencyBoundaries, makeLabelCache } from "./metrics.js"
import { firstIssueMessage, issueMessage } from "./params.js"
import { declaredStatus, detailOf, problemResponse } from "./problem.js"
import type { RateLimiter } from "./rate-limit.js"
import { isDatabaseUnavailable, isUnstorableText } from "./sql-errors.js"

export { API_ID }

/**
 * A one-group HttpApi with the application's id. Handler layers are built against
 * it (`HttpApiBuilder.group(apiOf(UploadsGroup), "uploads", ...)`) so that a
 * domain's `http.ts` never imports the root `api.ts` — which imports every group —
 * and module cycles stay impossible. The resulting layer satisfies the root API,
 * because groups are found by API id and group name.
 */
export const apiOf = <G extends HttpApiGroup.HttpApiGroup.Any>(group: G) => HttpApi.make(API_ID).add(group)

/**
 * The router's settings. find-my-way refuses to match a path parameter longer than
 * `maxParamLength` (100 by default), which made names and versions of 101–128 characters
 * creatable but unreachable (405). Every handler validates its own parameters and answers
 * a 400 naming the field (params.ts), and Node's header size limit already bounds the
 * request line, so the router does not limit them.
 */
export const ROUTER_CONFIG = { maxParamLength: Number.POSITIVE_INFINITY } as const

/** JSON control bodies are capped at 1 MiB; a larger body is a 413 (json-body.ts). */
export const JSON_BODY_LIMIT = 1024 * 1024

// ---------------------------------------------------------------------------------
// Route table: the API's endpoints as data, for 405s, ops-only 503s and metric labels.
// ---------------------------------------------------------------------------------

export interface RouteEntry {
  readonly method: string
  /** e.g. `/v1/uploads/:upload_id/parts/:part_number` */
  readonly path: string
  /** The path as an OpenTelemetry route template, e.g. `/v1/uploads/{upload_id}/parts/{part_number}`. */
  readonly template: string
  /** Metric / log label, e.g. `PUT /v1/uploads/{upload_id}/parts/{part_number}`. */
  readonly label: string
  readonly group: string
  /** Whether a bearer principal is required (the route carries a security middleware). */
  readonly protected: boolean
  /** Whether the endpoint declares a JSON payload (raw part uploads do not). */
  readonly jsonBody: boolean
  readonly segments: ReadonlyArray<string>
}

export interface RouteTable {
  readonly routes: ReadonlyArray<RouteEntry>
  /** The route serving `method` + `pathname` (HEAD falls back to GET), if any. */
  readonly match: (method: string, pathname: string) => RouteEntry | undefined
  /** Methods that would serve `pathname` (for 405 `Allow`). */
  readonly allowed: (pathname: string) => ReadonlyArray<string>
}

const splitPath = (pathname: string) => pathname.split("/").slice(1)

const segmentsMatch = (pattern: ReadonlyArray<string>, actual: ReadonlyArray<string>) =>
  pattern.length === actual.length &&
  pattern.every((p, i) => p.startsWith(":") ? actual[i] !== "" : p === actual[i])

export const makeRouteTable = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<Id, Groups, E, R>,
  extra: ReadonlyArray<{ readonly method: string; readonly path: string; readonly group: string }> = []
): RouteTable => {
  const routes: Array<RouteEntry> = []
  HttpApi.reflect(api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, group, middleware, payloads }) => {
      const isProtected = [...middleware].some((tag) => HttpApiMiddleware.SecurityTypeId in tag)
      const template = endpoint.path.replace(/:(\w+)/g, "{$1}")
      routes.push({
        method: endpoint.method,
        path: endpoint.path,
        template,
        label: `${endpoint.method} ${template}`,
        group: group.identifier,
        protected: isProtected,
        jsonBody: payloads.size > 0 && endpoint.method !== "GET",
        segments: splitPath(endpoint.path)
      })
    }
  })
  for (const route of extra) {
    routes.push({
      ...route,
      template: route.path,
      label: `${route.method} ${route.path}`,
      protected: false,
      jsonBody: false,
      segments: splitPath(route.path)
    })
  }
  // Routes by method and segment count: a request is compared with the few routes that
  // can match it, not the whole table (this runs twice per request).
  const byShape = new Map<string, Array<RouteEntry>>()
  for (const route of routes) {
    const shape = `${route.method} ${route.segments.length}`
    const list = byShape.get(shape)
    if (list) list.push(route)
    else byShape.set(shape, [route])
  }
  const find = (method: string, actual: ReadonlyArray<string>) =>
    byShape.get(`${method} ${actual.length}`)?.find((r) => segmentsMatch(r.segments, actual))
  return {
    routes,
    match: (method, pathname) => {
      const actual = splitPath(pathname)
      return find(method, actual) ?? (method === "HEAD" ? find("GET", actual) : undefined)
    },
    allowed: (pathname) => {
      const actual = splitPath(pathname)
      const methods = new Set(routes.filter((r) => segmentsMatch(r.segments, actual)).map((r) => r.method))
      if (methods.has("GET")) methods.add("HEAD")
      return [...methods].sort()
    }
  }
}

/** Span name of a request: `<METHOD> <route template>` (OpenTelemetry HTTP conventions). */
export const spanNameOf = (routes: RouteTable) => (request: HttpServerRequest.HttpServerRequest): string => {
  const route = routes.match(request.method, pathnameOf(request.url))
  return `${request.method} ${route ? route.template : "unmatched"}`
}

export const pathnameOf = (url: string) => {
  const q = url.indexOf("?")
  return q === -1 ? url : url.slice(0, q)
}

// ---------------------------------------------------------------------------------
// Errors → responses: the single renderer.
// ---------------------------------------------------------------------------------

const plainText = (status: number, body: string, headers: Record<string, string> = {}) =>
  HttpServerResponse.text(body, { status, contentType: "text/plain; charset=utf-8", headers })

/** Whether every percent-escape in `pathname` decodes (to UTF-8). */
const isDecodablePath = (pathname: string): boolean => {
  try {
    decodeURIComponent(pathname)
    return true
  } catch {
    return false
  }
}

/** What a client is told to wait before retrying a request that met an unavailable dependency. */
export const RETRY_AFTER_SECONDS = 5

/**
 * The dependency a failure says is unreachable, frozen or overloaded — from a SqlError or
 * BlobStoreError anywhere in it, failed or died (services `orDie` them) — with the reason.
 */
const unavailableDependency = (
  cause: Cause.Cause<unknown>
): { readonly dependency: string; readonly reason: string } | undefined => {
  for (const error of [...Cause.failures(cause), ...Cause.defects(cause)]) {
    if (error instanceof SqlError.SqlError && isDatabaseUnavailable(error)) {
      const inner = error.cause instanceof Error ? `: ${error.cause.message}` : ""
      return { dependency: "PostgreSQL", reason: `${error.message}${inner}` }
    }
    if (error instanceof BlobStoreError && isStoreUnavailable(error)) {
      return { dependency: "the object store", reason: error.message }
    }
  }
  return undefined
}

/**
 * Renders any failure of the API as the response a client must see:
 * - a typed error with a status annotation → problem+json with its message;
 * - a malformed JSON body or schema mismatch → 400 "invalid JSON request body: …";
 * - an unknown path → plain-text 404, a known path with another method → 405 + Allow;
 * - PostgreSQL or the object store unreachable, frozen or overloaded → 503 + Retry-After;
 * - anything else (a defect, an undeclared error) → 500 whose body says nothing
 *   internal, while the log gets the cause and the request id.
 */
export const renderFailure = (
  cause: Cause.Cause<unknown>,
  request: HttpServerRequest.HttpServerRequest,
  routes: RouteTable
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.gen(function*() {
    if (Cause.isInterruptedOnly(cause)) {
      // The client went away (or the server is stopping); nobody reads this response.
      return HttpServerResponse.empty({ status: 499 })
    }
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const error = failure.value
      if (error instanceof HttpServerError.RouteNotFound) {
        const pathname = pathnameOf(request.url)
        // The router cannot decode such a path, so it "matches" nothing: that is the client's 400.
        if (!isDecodablePath(pathname)) return problemResponse(400, "malformed percent-encoding in the request path")
        const allowed = routes.allowed(pathname)
        return allowed.length > 0
          ? plainText(405, "Method Not Allowed\n", { allow: allowed.join(", ") })
          : plainText(404, "404 page not found\n")
      }
      if (error instanceof HttpApiError.HttpApiDecodeError) {
        // Path parameters are validated by handlers (params.ts), so the only schema
        // decoded here is the JSON body.
        return problemResponse(400, `invalid JSON request body: ${issueMessage(error.issues) ?? error.message}`)
      }
      if (ParseResult.isParseError(error)) {
        return problemResponse(400, `invalid JSON request body: ${firstIssueMessage(error)}`)
      }
      const status = declaredStatus(error)
      if (status === 401) {
        // Every 401 of the API is rendered here; it names the scheme to use (RFC 9110 §11.6.1).
        return problemResponse(401, detailOf(error), { headers: { "www-authenticate": "Bearer" } })
      }
      if (status !== undefined && status < 500) {
        return problemResponse(status, detailOf(error))
      }
      if (status !== undefined && status !== 500) {
        yield* Effect.logWarning("request failed").pipe(Effect.annotateLogs({ status, error: detailOf(error) }))
        return problemResponse(status, detailOf(error))
      }
    }
    const defect = Cause.dieOption(cause)
    if (
      Option.isSome(defect) && defect.value instanceof HttpServerError.RequestError &&
      defect.value.reason === "Decode"
    ) {
      // HttpApiBuilder parses JSON bodies with `orDie`; an unparsable or oversized body
      // lands here and is the client's fault.
      const inner = defect.value.cause
      const text = inner instanceof Error ? inner.message : "body could not be read"
      return problemResponse(400, `invalid JSON request body: ${text}`)
    }
    if (isUnstorableText(cause)) {
      // Refused by PostgreSQL inside the request's transaction: nothing was written.
      return problemResponse(400, "text must not contain NUL characters (\\u0000) or characters outside UTF-8")
    }
    const unavailable = unavailableDependency(cause)
    if (unavailable !== undefined) {
      yield* Effect.logWarning("dependency unavailable").pipe(
        Effect.annotateLogs({ dependency: unavailable.dependency, error: unavailable.reason })
      )
      return problemResponse(503, `${unavailable.dependency} is unavailable; retry later`, {
        headers: { "retry-after": String(RETRY_AFTER_SECONDS) }
      })
    }
    yield* Effect.logError("request failed with an internal error").pipe(Effect.annotateLogs({ cause }))
    return problemResponse(500, "internal error")
  })

// ---------------------------------------------------------------------------------
// API-level middleware (wraps the router, sees raw failures).
// ---------------------------------------------------------------------------------

const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"])

export interface ApiMiddlewareOptions {
  readonly routes: RouteTable
  /**
   * Set in ops-only mode: every route except these groups answers 503 with
   * `auth service is not configured` (protected) or `<group> service is not configured`.
   */
  readonly unavailableExcept?: ReadonlyArray<string>
}

export const apiMiddleware = (options: ApiMiddlewareOptions) => (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (original) => {
    const pathname = pathnameOf(original.url)
    // Routes match exactly per segment: `/v1/images/` is not `/v1/images` (api.md §1.1).
    if (pathname.length > 1 && pathname.endsWith("/")) return Effect.succeed(plainText(404, "404 page not found\n"))
    const route = options.routes.match(original.method, pathname)
    if (options.unavailableExcept && route && !options.unavailableExcept.includes(route.group)) {
      return Effect.succeed(problemResponse(
        503,
        route.protected ? "auth service is not configured" : `${route.group} service is not configured`
      ))
    }
    if (!BODY_METHODS.has(original.method)) {
      return Effect.catchAllCause(app, (cause) => renderFailure(cause, original, options.routes))
    }
    // Clients (curl -d, scripts) send JSON with any Content-Type or none; the server
    // never checks it (api.md §1.2). Raw part uploads read the stream and ignore it.
    const request = original.modify({ headers: { ...original.headers, "content-type": "application/json" } })
    const run = (served: HttpServerRequest.HttpServerRequest) =>
      app.pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, served),
        Effect.catchAllCause((cause) => renderFailure(cause, served, options.routes))
      )
    if (!route?.jsonBody) return run(request)
    // An oversized control body is refused before it is read (reading it only to reject
    // it would cost memory); one without a Content-Length is refused at the first byte
    // beyond the limit (json-body.ts).
    const declaredLength = Number(original.headers["content-length"] ?? "0")
    if (declaredLength > JSON_BODY_LIMIT) return Effect.succeed(bodyTooLarge)
    return readBody(NodeHttpServerRequest.toIncomingMessage(original), JSON_BODY_LIMIT).pipe(
      Effect.flatMap((body) =>
        body._tag === "TooLarge"
          ? Effect.succeed(bodyTooLarge)
          : run(withBody(request, body.bytes))
      ),
      Effect.catchAllCause((cause) => renderFailure(cause, request, options.routes))
    )
  })

/**
 * 413 for a JSON body over the limit. The client may still be sending it: the connection
 * is closed after the answer instead of reading the rest to reuse it.
 */
const bodyTooLarge = problemResponse(413, `invalid JSON request body: body exceeds ${JSON_BODY_LIMIT} bytes`, {
  headers: { connection: "close" }
})

/**
 * The JSON body cap for the whole listener (request bodies read as text/JSON);
 * raw part uploads stream and are not affected.
 */
export const JsonBodyLimitLive = Layer.succeed(
  HttpIncomingMessage.MaxBodySize,
  Option.some(FileSystem.Size(JSON_BODY_LIMIT))
)

// ---------------------------------------------------------------------------------
// Server-level middleware: request id, access log, HTTP metrics.
// ---------------------------------------------------------------------------------

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

/** `X-Request-ID`: echoed when it is 1–128 printable ASCII characters, else a new UUID (api.md §1.11). */
export const requestIdFrom = (header: string | undefined): string => {
  const trimmed = header?.trim() ?? ""
  return trimmed.length >= 1 && trimmed.length <= 128 && /^[\x21-\x7e]+$/.test(trimmed) ? trimmed : randomUUID()
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
    const requestId = requestIdFrom(request.headers["x-request-id"])
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

// ---------------------------------------------------------------------------------
// Immutable responses: answered by the listener before the Effect app runs.
// ---------------------------------------------------------------------------------

/** A remembered response body with what the access log and the metrics need. */
export interface ImmutableResponse {
  readonly body: Uint8Array
  readonly contentType: string
  /** Label of the route the path belongs to (metrics, access log). */
  readonly route: string
}

/**
 * Responses that do not change for a given request path — the manifest of a
 * published version is the case today; only a yank, unyank or retirement changes one, and
 * the catalog then calls `clear` — kept encoded so that the listener answers a
 * GET or HEAD of that exact path without running the Effect app (see
 * `answerImmutable`; the app stays the only place where such a response is made).
 *
 * An entry may only be added for a 200 the app has just produced for a GET of an
 * anonymous route, from the path alone: no header, query parameter or principal
 * changed it, and no later write but a yank, unyank or retirement (which clears them)
 * can. Entries are keyed by the raw request path (what the router decoded into the
 * parameters that produced the body), so any spelling of a path maps to exactly the
 * response the app gave for it.
 */
export class ImmutableResponses extends Context.Tag("imgsrv/ImmutableResponses")<ImmutableResponses, {
  /** Remembers `body` as the response to GET `url` (its query is ignored, like the routes do). */
  readonly remember: (url: string, body: Uint8Array, contentType: string) => void
  /** The remembered response for `pathname` (no query), if any. */
  readonly lookup: (pathname: string) => ImmutableResponse | undefined
  /** Forgets everything: a published version was yanked, unyanked or retired (catalog/service.ts). */
  readonly clear: () => void
}>() {}

/** Bounds of the remembered responses (least recently used evicted first). */
export const IMMUTABLE_RESPONSE_LIMITS = { entries: 1024, bytes: 32 * 1024 * 1024, entryBytes: 1024 * 1024 }

export const makeImmutableResponses = (
  routes: RouteTable,
  limits: { readonly entries: number; readonly bytes: number; readonly entryBytes: number } = IMMUTABLE_RESPONSE_LIMITS
): ImmutableResponses["Type"] => {
  // A Map iterates in insertion order; re-inserting on a hit makes it an LRU.
  const entries = new Map<string, ImmutableResponse>()
  let bytes = 0
  const evict = (pathname: string) => {
    const entry = entries.get(pathname)
    if (entry === undefined) return
    entries.delete(pathname)
    bytes -= entry.body.byteLength
  }
  return ImmutableResponses.of({
    remember: (url, body, contentType) => {
      const pathname = pathnameOf(url)
      // Only an anonymous GET route's answer can be replayed to anyone asking.
      const route = routes.match("GET", pathname)
      if (route === undefined || route.protected) return
      if (body.byteLength > limits.entryBytes) return
      evict(pathname)
      entries.set(pathname, { body, contentType, route: route.label })
      bytes += body.byteLength
      while (entries.size > limits.entries || bytes > limits.bytes) {
        const oldest = entries.keys().next()
        if (oldest.done) break
        evict(oldest.value)
      }
    },
    lookup: (pathname) => {
      const hit = entries.get(pathname)
      if (hit !== undefined) {
        entries.delete(pathname)
        entries.set(pathname, hit)
      }
      return hit
    },
    clear: () => {
      entries.clear()
      bytes = 0
    }
  })
}

export const ImmutableResponsesLive = (routes: RouteTable) =>
  Layer.sync(ImmutableResponses, () => makeImmutableResponses(routes))

/**
 * The listener's first look at a request (http-server.ts): a GET or HEAD without a body
 * whose path has a remembered immutable response is answered here, from memory, and
 * `true` is returned; anything else returns `false` untouched, for the Effect app.
 *
 * What a client and an operator observe is what the app would produce for it: the same
 * status, body and headers (`content-type`, `content-length`, `X-Request-ID` echoed or
 * generated; HEAD without the body), the same HTTP metrics with the route template, and
 * the same access-log line at the same level through the same logger, and the same
 * general rate limit (a request it refuses is left to the app, which answers the 429).
 * Not used while tracing is on, where every request must produce its span.
 */
export const answerImmutable = (
  responses: ImmutableResponses["Type"],
  runtime: Runtime.Runtime<never>,
  metrics: HttpMetrics,
  clients: ClientPolicy = NO_CLIENT_POLICY
) => {
  const minimumLevel = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel)
  const logs = !LogLevel.lessThan(LogLevel.Info, minimumLevel)
  const runLog = Runtime.runSync(runtime)
  return (request: IncomingMessage, response: ServerResponse): boolean => {
    const method = request.method
    if (method !== "GET" && method !== "HEAD") return false
    const url = request.url ?? ""
    const hit = responses.lookup(pathnameOf(url))
    if (hit === undefined) return false
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
    const requestId = requestIdFrom(headerValue(request.headers["x-request-id"]))
    // The header order the app's responses have (its own header is set first, see serverMiddleware).
    response.writeHead(200, {
      "x-request-id": requestId,
      "content-type": hit.contentType,
      "content-length": String(hit.body.byteLength)
    })
    if (method === "HEAD") response.end()
    else response.end(hit.body)
    const seconds = (performance.now() - started) / 1000
    metrics.record(method, hit.route, 200, seconds)
    metrics.trackActive(method, -1)
    if (logs) {
      runLog(
        accessLog(LogLevel.Info, {
          method,
          route: hit.route,
          url,
          status: 200,
          seconds,
          bytes: method === "HEAD" ? 0 : hit.body.byteLength,
          clientAddr,
          remoteAddr,
          userAgent: request.headers["user-agent"]
        }).pipe(Effect.annotateLogs("request_id", requestId))
      )
    }
    return true
  }
}
