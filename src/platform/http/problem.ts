import { HttpApiSchema, HttpServerResponse } from "@effect/platform"
import { Predicate, Schema } from "effect"
import { problemBody } from "../../contract/problem.js"

// The problem+json shape and the errors every group declares are part of the wire contract
// (src/contract/), which the typed client imports without any server code; server modules
// keep importing them from here, beside what only the server does with them.
export {
  detailOf,
  InvalidRequest,
  Problem,
  problemBody,
  ProblemDetails,
  RangeNotSatisfiable,
  reasonPhrase
} from "../../contract/problem.js"

export const problemResponse = (
  status: number,
  detail: string,
  options?: { readonly headers?: Record<string, string> }
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(problemBody(status, detail), {
    status,
    contentType: "application/problem+json",
    ...(options?.headers ? { headers: options.headers } : {})
  })

/** The HTTP status a typed error declares through `HttpApiSchema.annotations({ status })`, if any. */
export const declaredStatus = (error: unknown): number | undefined => {
  if (!Predicate.isObject(error)) return undefined
  const ctor = (error as { constructor?: unknown }).constructor
  if (!Schema.isSchema(ctor)) return undefined
  return HttpApiSchema.getStatusErrorAST(ctor.ast)
}
