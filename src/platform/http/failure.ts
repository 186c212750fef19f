import type { HttpServerRequest } from "@effect/platform"
import { HttpApiError, HttpServerError, HttpServerResponse } from "@effect/platform"
import { SqlError } from "@effect/sql"
import { Cause, Effect, Option, ParseResult } from "effect"
import { firstIssueMessage, issueMessage } from "../../contract/params.js"
import { BlobStoreError, isStoreUnavailable } from "../storage/blob-store/blob-store.js"
import { isDatabaseUnavailable, isUnstorableText } from "../storage/sql-errors.js"
import { declaredStatus, detailOf, problemResponse } from "./problem.js"
import { pathnameOf, type RouteTable } from "./routes.js"

// Errors → responses: the single renderer.

export const plainText = (status: number, body: string, headers: Record<string, string> = {}) =>
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
