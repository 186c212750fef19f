import { Effect, ParseResult, Schema } from "effect"
import { InvalidRequest } from "./problem.js"

/**
 * Path parameters are declared as plain strings on the HttpApi (so a malformed one
 * never becomes a generic decode error) and validated by the handler, first thing,
 * with the domain's schema: the client gets a 400 whose detail names the parameter,
 * before any lookup could answer 404 (api.md §1.5, §1.7).
 */
export const decodeParam = <A, I>(schema: Schema.Schema<A, I, never>, value: I): Effect.Effect<A, InvalidRequest> =>
  Schema.decodeUnknown(schema)(value).pipe(
    Effect.mapError((error) => new InvalidRequest({ detail: firstIssueMessage(error) }))
  )

/** Longest issue message in a 400 detail: schema messages quote the value they refused, whatever its size. */
export const MAX_ISSUE_MESSAGE_LENGTH = 300

/** The first of some schema issues as one line, prefixed with where it is (`parts.0.etag: …`). */
export const issueMessage = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>
): string | undefined => {
  const first = issues[0]
  if (!first) return undefined
  const where = first.path.length > 0 ? `${first.path.map(String).join(".")}: ` : ""
  const message = `${where}${first.message}`.replace(/\s*\n\s*/g, " ")
  return message.length > MAX_ISSUE_MESSAGE_LENGTH ? `${message.slice(0, MAX_ISSUE_MESSAGE_LENGTH - 1)}…` : message
}

/** The most specific human-readable message of a parse error, on one line. */
export const firstIssueMessage = (error: ParseResult.ParseError): string =>
  issueMessage(ParseResult.ArrayFormatter.formatErrorSync(error)) ?? "invalid value"

/** The text of a canonical lower-case UUID (ids imgsrv mints; also part of staging keys). */
export const UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
/** A canonical lower-case UUID: upload ids and every other id imgsrv mints. */
export const CANONICAL_UUID = new RegExp(`^${UUID_PATTERN}$`)

/**
 * A UUID on the wire, documented in OpenAPI as `format: uuid` while staying a plain string
 * (ids in responses; path parameters, which handlers then decode with a `UuidId` brand).
 */
export const UuidString = Schema.String.annotations({ jsonSchema: { type: "string", format: "uuid" } })

/**
 * An id imgsrv mints, as a canonical UUID carrying the entity's brand, so an `ImageId` cannot
 * be passed where a `VersionId` is expected. Decoding one (a path parameter) refuses anything
 * else with "`label` must be a UUID"; rows and responses carry it as a plain string.
 */
export const UuidId = <const B extends string>(brand: B, label: string) =>
  UuidString.pipe(Schema.pattern(CANONICAL_UUID, { message: () => `${label} must be a UUID` }), Schema.brand(brand))

/** Request body schemas refuse unknown members (api.md §1.3: strict JSON, unknown fields → 400). */
export const strictBody = { parseOptions: { onExcessProperty: "error" } } as const

/**
 * Upper bounds of free text, in characters (Unicode code points). Text is stored and sent
 * back in every listing, so none may be unbounded; docs/operators.md lists these (request limits).
 */
export const TEXT_LIMITS = {
  /** Display names (images, principals, rules), token names, filename hints, audiences, claim names. */
  short: 256,
  /** Image descriptions. */
  long: 4096,
  /** URLs (an OIDC rule's issuer_url). */
  url: 2048
} as const

/** Whether `text` has at most `max` code points (stops counting past `max`). */
const atMostCodePoints = (text: string, max: number): boolean => {
  // A string of at most `max` UTF-16 units cannot have more code points.
  if (text.length <= max) return true
  let count = 0
  for (const _ of text) {
    if (++count > max) return false
  }
  return true
}

/** Text of at most `max` characters; the 400 detail names `field`. */
export const boundedText = (field: string, max: number) =>
  Schema.String.pipe(
    Schema.filter((s) => atMostCodePoints(s, max), { message: () => `${field} must be at most ${max} characters` })
  ).annotations({ jsonSchema: { maxLength: max } })

/** Text of at most `max` characters that is non-empty after trimming whitespace; stored as given (api.md §1.7). */
export const nonBlank = (field: string, max: number) =>
  boundedText(field, max).pipe(
    Schema.filter((s) => s.trim().length > 0, { message: () => `${field} must not be blank` })
  )
