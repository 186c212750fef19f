import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { ParseResult, Predicate, Schema } from "effect"
import { STATUS_CODES } from "node:http"

/**
 * RFC 9457 problem details, the body of every error imgsrv produces
 * (api.md §1.9): `type` is always `about:blank`, `title` the reason phrase.
 */
export const ProblemDetails = Schema.Struct({
  type: Schema.Literal("about:blank"),
  title: Schema.String,
  status: Schema.Int,
  detail: Schema.optional(Schema.String)
}).annotations({ identifier: "ProblemDetails", description: "RFC 9457 problem details" })
export type ProblemDetails = typeof ProblemDetails.Type

const REASON_OVERRIDES: Record<number, string> = { 416: "Requested Range Not Satisfiable" }

export const reasonPhrase = (status: number): string => REASON_OVERRIDES[status] ?? STATUS_CODES[status] ?? "Unknown"

export const problemBody = (status: number, detail: string): ProblemDetails => ({
  type: "about:blank",
  title: reasonPhrase(status),
  status,
  ...(detail === "" ? {} : { detail })
})

/** The client-visible text of a typed error: its `message`, never a stack or cause. */
export const detailOf = (error: unknown): string =>
  Predicate.isObject(error) && typeof (error as { message?: unknown }).message === "string"
    ? (error as { message: string }).message
    : ""

const problemSchemas = new WeakMap<object, Schema.Schema.Any>()

/**
 * Declares a typed error on an endpoint with its true wire shape: the OpenAPI
 * document shows problem+json for it, and a handler failing with it is typed.
 * (The single renderer, `renderFailure` in platform/http/failure.ts, produces the actual response.)
 */
export const Problem = <A, I>(error: Schema.Schema<A, I, never>): Schema.Schema<A, ProblemDetails, never> => {
  const cached = problemSchemas.get(error)
  if (cached) return cached as Schema.Schema<A, ProblemDetails, never>
  const status = HttpApiSchema.getStatusError(error)
  const schema = Schema.transformOrFail(ProblemDetails, Schema.typeSchema(error), {
    strict: true,
    decode: (body, _, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, body, "problem details are not decoded back into errors")),
    encode: (value) => ParseResult.succeed(problemBody(status, detailOf(value)))
  }).pipe(HttpApiSchema.withEncoding({ kind: "Json", contentType: "application/problem+json" }))
    .annotations(HttpApiSchema.annotations({ status, description: reasonPhrase(status) }))
  problemSchemas.set(error, schema)
  return schema
}

/** 400 — malformed path parameter, JSON body or header. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return this.detail
  }
}

/**
 * 416 — the Range of a download cannot be served (api.md §2.8). Declared on the download
 * endpoints for their OpenAPI description; `serveBlob` renders the response itself, with
 * `Content-Range: bytes *\/<size>`.
 */
export class RangeNotSatisfiable extends Schema.TaggedError<RangeNotSatisfiable>()(
  "RangeNotSatisfiable",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 416 })
) {
  override get message() {
    return this.detail
  }
}
