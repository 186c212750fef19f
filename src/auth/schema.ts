import { Schema } from "effect"
import { nextCursorField } from "../contract/pagination.js"
import { boundedText, strictBody, TEXT_LIMITS } from "../contract/params.js"
import { TimestampString } from "../contract/timestamp.js"

/** The two actions imgsrv authorizes (spec/auth.md §2.2). */
export const Action = Schema.Literal("content.write", "auth.manage")
export type Action = typeof Action.Type

/** Built-in role ids; roles are fixed data, never created through the API. */
export const RoleId = Schema.Literal("content-writer", "auth-manager")
export type RoleId = typeof RoleId.Type

export const PrincipalKind = Schema.Literal("user", "service")
export type PrincipalKind = typeof PrincipalKind.Type

// Ids of auth's entities. imgsrv mints `principal_<base32>` principal ids and UUID rule ids,
// but a principal or rule id may be any non-empty text (what the database checks): rules
// can be created with a chosen id, principals seeded by an operator.

export const PrincipalId = Schema.NonEmptyString.pipe(Schema.brand("PrincipalId"))
export type PrincipalId = typeof PrincipalId.Type

/**
 * The ID part of an API token (26 base32 characters when minted; `parseToken` and the
 * database check the format). Not refined here: a path parameter that is no token id
 * still goes to the lookup, whose refusals (404, or 400 for text PostgreSQL cannot
 * store) are the API's answers.
 */
export const TokenId = Schema.String.pipe(Schema.brand("TokenId"))
export type TokenId = typeof TokenId.Type

export const RuleId = Schema.NonEmptyString.pipe(Schema.brand("RuleId"))
export type RuleId = typeof RuleId.Type

/** Who is calling, as resolved by the authentication pipeline for one request. */
export interface Principal {
  /** A transient OIDC principal's id (`transient:<issuer>:<subject>`) names no stored principal. */
  readonly id: PrincipalId
  readonly kind: PrincipalKind
  readonly displayName: string
  /** How the caller authenticated; a transient OIDC principal is never authorized. */
  readonly credential: "api-token" | "oidc"
  /** True for an OIDC identity that matched no provisioning rule (never persisted). */
  readonly transient: boolean
}

// ---------------------------------------------------------------------------------
// Built-in roles (spec/auth.md §2.1): static data, in the order GET /v1/auth/roles returns.
// ---------------------------------------------------------------------------------

export interface BuiltInRole {
  readonly id: RoleId
  readonly displayName: string
  readonly description: string
  readonly actions: ReadonlyArray<Action>
}

export const BUILT_IN_ROLES: ReadonlyArray<BuiltInRole> = [
  {
    id: "content-writer",
    displayName: "Content writer",
    description: "Can write imgsrv content.",
    actions: ["content.write"]
  },
  {
    id: "auth-manager",
    displayName: "Auth manager",
    description: "Can manage imgsrv authentication policy.",
    actions: ["auth.manage"]
  }
]

export const isRoleId = Schema.is(RoleId)

/**
 * Attribute keys the server sets itself (bootstrap marker, OIDC provenance). A client
 * may not supply them, so nobody can forge an OIDC principal or a bootstrap marker
 * through `POST /v1/auth/principals` (spec/auth.md §1.1, hardening).
 */
export const RESERVED_ATTRIBUTES = ["provider", "subject", "provisioning_rule_id", "transient", "bootstrap"] as const

/** The issuer whose provisioned principals are `service` principals named `github-actions:<sub>`. */
export const GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

// ---------------------------------------------------------------------------------
// Wire shapes of the management API (spec/api.md §2.11). Optional members are
// omitted, never null; arrays are always present.
// ---------------------------------------------------------------------------------

const Attributes = Schema.Record({ key: Schema.String, value: Schema.Unknown })

export const RoleView = Schema.Struct({
  id: RoleId,
  /** Same as `id`; the tutorial selects roles by `.name` (api.md §5 D4). */
  name: RoleId,
  display_name: Schema.String,
  description: Schema.String,
  actions: Schema.Array(Action)
}).annotations({ identifier: "Role" })
export type RoleView = typeof RoleView.Type

export const RoleList = Schema.Struct({ roles: Schema.Array(RoleView) }).annotations({ identifier: "RoleList" })

export const PrincipalView = Schema.Struct({
  id: Schema.String,
  kind: PrincipalKind,
  display_name: Schema.String,
  attributes: Schema.optional(Attributes),
  role_ids: Schema.Array(Schema.String)
}).annotations({ identifier: "Principal" })
export type PrincipalView = typeof PrincipalView.Type

export const PrincipalList = Schema.Struct({ principals: Schema.Array(PrincipalView), next_cursor: nextCursorField })
  .annotations({
    identifier: "PrincipalList"
  })

/** Largest `attributes` of a principal, as JSON text: they are stored and listed with it. */
export const MAX_ATTRIBUTES_BYTES = 16 * 1024

const BoundedAttributes = Attributes.pipe(
  Schema.filter((attributes) => Buffer.byteLength(JSON.stringify(attributes), "utf8") <= MAX_ATTRIBUTES_BYTES, {
    message: () => `attributes must be at most ${MAX_ATTRIBUTES_BYTES} bytes of JSON`
  })
)

/** `kind` is a plain string here so an unknown kind gets its own 400 detail. */
export const CreatePrincipalRequest = Schema.Struct({
  kind: boundedText("kind", TEXT_LIMITS.short),
  display_name: boundedText("display_name", TEXT_LIMITS.short),
  attributes: Schema.optional(Schema.NullOr(BoundedAttributes))
}).annotations({ identifier: "CreatePrincipalRequest", ...strictBody })
export type CreatePrincipalRequest = typeof CreatePrincipalRequest.Type

/** `expires_at` (RFC 3339, strictly in the future) is required; it is optional here for a clearer 400. */
export const IssueApiTokenRequest = Schema.Struct({
  name: Schema.optional(boundedText("name", TEXT_LIMITS.short)),
  expires_at: Schema.optional(Schema.String)
}).annotations({ identifier: "IssueApiTokenRequest", ...strictBody })
export type IssueApiTokenRequest = typeof IssueApiTokenRequest.Type

export const ApiTokenView = Schema.Struct({
  id: Schema.String,
  principal_id: Schema.String,
  name: Schema.String,
  expires_at: TimestampString,
  last_used_at: Schema.optional(TimestampString),
  revoked_at: Schema.optional(TimestampString)
}).annotations({ identifier: "ApiToken" })
export type ApiTokenView = typeof ApiTokenView.Type

/** The issue response: the only time `plaintext` is ever sent. */
export const IssuedApiToken = Schema.Struct({
  id: Schema.String,
  principal_id: Schema.String,
  name: Schema.String,
  expires_at: TimestampString,
  plaintext: Schema.String
}).annotations({ identifier: "IssuedApiToken" })
export type IssuedApiToken = typeof IssuedApiToken.Type

export const ApiTokenList = Schema.Struct({ api_tokens: Schema.Array(ApiTokenView), next_cursor: nextCursorField })
  .annotations({
    identifier: "ApiTokenList"
  })

/** Most claims one rule may forward to its condition. */
export const MAX_FORWARDED_CLAIMS = 64

export const SaveRuleRequest = Schema.Struct({
  id: Schema.optional(Schema.String),
  display_name: boundedText("display_name", TEXT_LIMITS.short),
  issuer_url: boundedText("issuer_url", TEXT_LIMITS.url),
  audience: boundedText("audience", TEXT_LIMITS.short),
  forwarded_claims: Schema.optional(Schema.NullOr(
    Schema.Array(boundedText("forwarded claim name", TEXT_LIMITS.short)).pipe(
      Schema.maxItems(MAX_FORWARDED_CLAIMS, {
        message: () => `forwarded_claims must list at most ${MAX_FORWARDED_CLAIMS} claims`
      })
    )
  )),
  condition: Schema.String,
  enabled: Schema.optional(Schema.Boolean)
}).annotations({ identifier: "SaveOIDCProvisioningRuleRequest", ...strictBody })
export type SaveRuleRequest = typeof SaveRuleRequest.Type

export const RuleView = Schema.Struct({
  id: Schema.String,
  display_name: Schema.String,
  issuer_url: Schema.String,
  audience: Schema.String,
  /** The issuer-wide union of forwarded claims (always includes `aud`). */
  forwarded_claims: Schema.optional(Schema.Array(Schema.String)),
  condition: Schema.String,
  assign_role_ids: Schema.Array(Schema.String),
  enabled: Schema.Boolean
}).annotations({ identifier: "OIDCProvisioningRule" })
export type RuleView = typeof RuleView.Type

export const RuleList = Schema.Struct({ rules: Schema.Array(RuleView), next_cursor: nextCursorField }).annotations({
  identifier: "OIDCProvisioningRuleList"
})

export const ReconciliationView = Schema.Struct({
  rule_id: Schema.String,
  unassign_role_ids: Schema.Array(Schema.String),
  principals: Schema.Array(PrincipalView),
  applied: Schema.Boolean
}).annotations({ identifier: "OIDCProvisioningRuleReconciliation" })
export type ReconciliationView = typeof ReconciliationView.Type
