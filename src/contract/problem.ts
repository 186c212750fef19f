import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { ParseResult, Predicate, Schema } from "effect"
import { STATUS_CODES } from "node:http"

/**
 * How an error reaches the wire, and the OpenAPI document, in one place (api.md §1.9):
 *
 * 1. A client-visible failure is a `Schema.TaggedError` with
 *    `HttpApiSchema.annotations({ status })` in its domain's `errors.ts`.
 * 2. It is declared wrapped in `Problem(...)`: on the endpoint that can fail with it, on the
 *    group when every route of the group can (`HttpApiGroup.addError`), or as the `failure`
 *    of a security middleware (401/403/503 of `auth/api.ts`). `Problem` gives the schema
 *    the true wire shape, `ProblemDetails` as `application/problem+json`.
 * 3. `problemJsonErrors` below patches what the OpenAPI generator gets wrong about it.
 * 4. At run time `renderFailure` (`platform/http/failure.ts`) renders every failure itself, as
 *    `problemBody` with the status the error class annotates (`declaredStatus` in
 *    `platform/http/problem.ts`); the declarations are for the document and the handlers' types.
 *    `Problem`'s own encoder gives the same body, for anything that encodes through it.
 */

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

type JsonObject = Record<string, unknown>
const isObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null

/**
 * Step 3 of the path above, the `OpenApi.Transform` of every `HttpApi` imgsrv serves: the
 * generator loses the problem+json encoding where it merges several errors of one status
 * into one union, and it adds the HttpApi decode error to every 400 although
 * `renderFailure` never sends that shape (a decode failure is rendered as
 * `InvalidRequest`); this puts both right in the generated document.
 */
export const problemJsonErrors = (spec: Record<string, unknown>): Record<string, unknown> => {
  const decodeError = "#/components/schemas/HttpApiDecodeError"
  for (const item of Object.values(isObject(spec["paths"]) ? spec["paths"] : {})) {
    for (const operation of Object.values(isObject(item) ? item : {})) {
      const responses = isObject(operation) && isObject(operation["responses"]) ? operation["responses"] : {}
      for (const [status, response] of Object.entries(responses)) {
        if (Number(status) < 400 || !isObject(response) || !isObject(response["content"])) continue
        const json = response["content"]["application/json"]
        if (!isObject(json) || !isObject(json["schema"])) continue
        const schema = json["schema"]
        const options = (Array.isArray(schema["anyOf"]) ? schema["anyOf"] : [schema])
          .filter((option) => !(isObject(option) && option["$ref"] === decodeError))
        const problem = options.length === 0
          ? { $ref: "#/components/schemas/InvalidRequest" }
          : options.length === 1
          ? options[0]
          : { anyOf: options }
        response["content"] = { "application/problem+json": { schema: problem } }
      }
    }
  }
  return spec
}
