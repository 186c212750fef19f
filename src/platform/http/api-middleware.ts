import { FileSystem, type HttpApp, HttpIncomingMessage, HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { plainText, renderFailure } from "./failure.js"
import { readBody, withBody } from "./json-body.js"
import { problemResponse } from "./problem.js"
import { JSON_BODY_LIMIT, pathnameOf, type RouteTable } from "./routes.js"

// API-level middleware (wraps the router, sees raw failures).

export const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"])

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
