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
