import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
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

/**
 * 503: a JWT names a trusted issuer, but its signing keys could not be fetched (or
 * none is usable). An operational failure, never a 401: the credential may be fine.
 * The detail is generic; the log has the reason.
 */
export class IdentityProviderUnavailable extends Schema.TaggedError<IdentityProviderUnavailable>()(
  "IdentityProviderUnavailable",
  { issuer: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return "identity provider keys are unavailable; try again later"
  }
}

export class PrincipalNotFound extends Schema.TaggedError<PrincipalNotFound>()(
  "PrincipalNotFound",
  { principalId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `principal ${JSON.stringify(this.principalId)} not found`
  }
}

export class ApiTokenNotFound extends Schema.TaggedError<ApiTokenNotFound>()(
  "ApiTokenNotFound",
  { tokenId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `api token ${JSON.stringify(this.tokenId)} not found`
  }
}

export class RuleNotFound extends Schema.TaggedError<RuleNotFound>()(
  "RuleNotFound",
  { ruleId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `OIDC provisioning rule ${JSON.stringify(this.ruleId)} not found`
  }
}

/** 400: a role id other than the two built-ins. */
export class UnknownRole extends Schema.TaggedError<UnknownRole>()(
  "UnknownRole",
  { roleId: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `unknown built-in role ${JSON.stringify(this.roleId)}`
  }
}

/** 409: unassigning `auth-manager` from the only principal holding it would lock everyone out. */
export class LastAuthManager extends Schema.TaggedError<LastAuthManager>()(
  "LastAuthManager",
  { principalId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return "cannot remove the last auth-manager assignment: assign auth-manager to another principal first"
  }
}

/** 409: creating a provisioning rule with an id that is taken. */
export class RuleAlreadyExists extends Schema.TaggedError<RuleAlreadyExists>()(
  "RuleAlreadyExists",
  { ruleId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `OIDC provisioning rule ${JSON.stringify(this.ruleId)} already exists`
  }
}

/**
 * 502: the issuer's discovery document could not be fetched or read (network,
 * timeout, status, size, JSON). The detail names the issuer and the reason, which
 * helps the operator and holds nothing internal.
 */
export class IssuerDiscoveryFailed extends Schema.TaggedError<IssuerDiscoveryFailed>()(
  "IssuerDiscoveryFailed",
  { issuer: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 502 })
) {
  override get message() {
    return `OIDC discovery for ${this.issuer} failed: ${this.reason}`
  }
}
