import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

/** Wire shapes of paginated lists (issue 15); the server half is src/platform/http/pagination.ts. */

export class InvalidPageRequest extends Schema.TaggedError<InvalidPageRequest>()(
  "InvalidPageRequest",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `invalid page request: ${this.reason}`
  }
}

/** The body field a paginated list adds: present when a next page exists. */
export const nextCursorField = Schema.optional(Schema.String).annotations({
  description: "Opaque cursor of the next page (pass it as `?cursor=`); absent on the last page."
})

/**
 * The query parameters of a paginated list, as `setUrlParams` fields so OpenAPI shows them.
 * They stay strings here: `pageRequest` (server) checks them and answers `InvalidPageRequest`
 * naming the bad one. A list with more query parameters spreads these fields into its own struct.
 */
export const pageParamFields = {
  limit: Schema.optional(Schema.String).annotations({
    description: "Items per page: an integer from 1 to 1000 (default 100)."
  }),
  cursor: Schema.optional(Schema.String).annotations({
    description: "The previous page's `next_cursor` (opaque); omitted: the first page."
  })
}
export const PageParams = Schema.Struct(pageParamFields)

/**
 * A PostgreSQL `timestamptz` as its text output (`created_at::text`), for sort keys: a
 * JavaScript `Date` keeps milliseconds, PostgreSQL microseconds, so a cursor carrying a
 * `Date` would skip rows created in the same millisecond. Checked, so a forged cursor is a
 * 400 and never reaches SQL as an unparsable timestamp.
 */
export const PgTimestampText = Schema.String.pipe(
  Schema.pattern(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2}){0,2}$/)
)
