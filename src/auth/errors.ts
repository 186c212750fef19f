import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/**
 * 401 for every credential failure — missing, malformed, unknown, expired, revoked,
 * tampered, untrusted JWT — with one detail, so responses are no oracle for which
 * (spec/auth.md §2.6). The renderer adds `WWW-Authenticate: Bearer`.
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  {},
  HttpApiSchema.annotations({ status: 401 })
) {
  override get message() {
    return "invalid bearer token"
  }
}

/** 403: authenticated, but the principal's current roles do not grant the action. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { action: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {
  override get message() {
    return `principal is not authorized for action ${this.action}`
  }
}
