import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Context, Schema } from "effect"
import { InvalidPageRequest, PageParams } from "../contract/pagination.js"
import { InvalidRequest, Problem } from "../contract/problem.js"
import {
  ApiTokenNotFound,
  Forbidden,
  IdentityProviderUnavailable,
  IssuerDiscoveryFailed,
  LastAuthManager,
  PrincipalNotFound,
  RuleAlreadyExists,
  RuleNotFound,
  Unauthorized,
  UnknownRole
} from "./errors.js"
import {
  ApiTokenList,
  CreatePrincipalRequest,
  IssueApiTokenRequest,
  IssuedApiToken,
  type Principal,
  PrincipalList,
  PrincipalView,
  ReconciliationView,
  RoleList,
  RuleList,
  RuleView,
  SaveRuleRequest
} from "./schema.js"

/** The principal behind the current request (provided by the security middleware). */
export class CurrentPrincipal extends Context.Tag("imgsrv/CurrentPrincipal")<CurrentPrincipal, Principal>() {}

const failure = Schema.Union(Problem(Unauthorized), Problem(Forbidden), Problem(IdentityProviderUnavailable))

/**
 * Protects a route with `content.write`: declared on the group when every route of it
 * needs it (`publish`), else on each endpoint that does. Either way it runs before
 * anything else of the route — the builder wraps decoding in it: 401 before 403 before
 * validation.
 */
export class RequireContentWrite extends HttpApiMiddleware.Tag<RequireContentWrite>()("imgsrv/RequireContentWrite", {
  provides: CurrentPrincipal,
  failure,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Protects an endpoint with `auth.manage` (every `/v1/auth/*` route). */
export class RequireAuthManage extends HttpApiMiddleware.Tag<RequireAuthManage>()("imgsrv/RequireAuthManage", {
  provides: CurrentPrincipal,
  failure,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/**
 * `/v1/auth/*` — the auth management API (spec/api.md §2.11). Every endpoint needs
 * `auth.manage`, declared once on the group; 401/403 still come before any parameter or
 * body validation.
 */

const PrincipalPath = Schema.Struct({ principal_id: Schema.String })
const RolePath = Schema.Struct({ principal_id: Schema.String, role_id: Schema.String })
const TokenPath = Schema.Struct({ token_id: Schema.String })
const RulePath = Schema.Struct({ rule_id: Schema.String })

export class AuthGroup extends HttpApiGroup.make("auth")
  // Every route needs `auth.manage`; on the group, it still runs before any decoding (401/403 first).
  .middleware(RequireAuthManage)
  .add(
    HttpApiEndpoint.get("listRoles", "/v1/auth/roles")
      .addSuccess(RoleList)
      .annotate(OpenApi.Description, "The two built-in roles: content-writer, then auth-manager.")
  )
  .add(
    HttpApiEndpoint.get("listPrincipals", "/v1/auth/principals")
      .setUrlParams(PageParams)
      .addSuccess(PrincipalList)
      .addError(Problem(InvalidPageRequest))
      .annotate(
        OpenApi.Description,
        "Every principal (bootstrap, local, OIDC-provisioned) with its current roles, by id. Paginated like " +
          "`GET /v1/images`."
      )
  )
  .add(
    HttpApiEndpoint.post("createPrincipal", "/v1/auth/principals")
      .setPayload(CreatePrincipalRequest)
      .addSuccess(PrincipalView, { status: 201 })
      .addError(Problem(InvalidRequest))
      .annotate(OpenApi.Description, "Creates a local principal (usually kind service) without roles.")
  )
  .add(
    HttpApiEndpoint.get("getPrincipal", "/v1/auth/principals/:principal_id")
      .setPath(PrincipalPath)
      .addSuccess(PrincipalView)
      .addError(Problem(PrincipalNotFound))
  )
  .add(
    HttpApiEndpoint.put("assignRole", "/v1/auth/principals/:principal_id/roles/:role_id")
      .setPath(RolePath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(UnknownRole))
      .addError(Problem(PrincipalNotFound))
      .annotate(OpenApi.Description, "Assigns a built-in role; assigning a held role is a no-op (204).")
  )
  .add(
    HttpApiEndpoint.del("unassignRole", "/v1/auth/principals/:principal_id/roles/:role_id")
      .setPath(RolePath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(UnknownRole))
      .addError(Problem(PrincipalNotFound))
      .addError(Problem(LastAuthManager))
      .annotate(
        OpenApi.Description,
        "Removes a role (idempotent). Removing auth-manager from the last principal holding it is refused (409)."
      )
  )
  .add(
    HttpApiEndpoint.post("issueApiToken", "/v1/auth/principals/:principal_id/api-tokens")
      .setPath(PrincipalPath)
      .setPayload(IssueApiTokenRequest)
      .addSuccess(IssuedApiToken, { status: 201 })
      .addError(Problem(InvalidRequest))
      .addError(Problem(PrincipalNotFound))
      .annotate(OpenApi.Description, "Issues an API token; the response carries the plaintext, shown only this once.")
  )
  .add(
    HttpApiEndpoint.get("listApiTokens", "/v1/auth/principals/:principal_id/api-tokens")
      .setPath(PrincipalPath)
      .setUrlParams(PageParams)
      .addSuccess(ApiTokenList)
      .addError(Problem(InvalidPageRequest))
      .addError(Problem(PrincipalNotFound))
      .annotate(
        OpenApi.Description,
        "Token metadata (never the plaintext), revoked and expired tokens included, by id. Paginated like " +
          "`GET /v1/images`."
      )
  )
  .add(
    HttpApiEndpoint.del("revokeApiToken", "/v1/auth/api-tokens/:token_id")
      .setPath(TokenPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(ApiTokenNotFound))
      .annotate(OpenApi.Description, "Revokes a token at once; revoking again keeps the first revoked_at.")
  )
  .add(
    HttpApiEndpoint.get("listRules", "/v1/auth/oidc-provisioning-rules")
      .setUrlParams(PageParams)
      .addSuccess(RuleList)
      .addError(Problem(InvalidPageRequest))
      .annotate(OpenApi.Description, "Provisioning rules by id. Paginated like `GET /v1/images`.")
  )
  .add(
    HttpApiEndpoint.post("createRule", "/v1/auth/oidc-provisioning-rules")
      .setPayload(SaveRuleRequest)
      .addSuccess(RuleView, { status: 201 })
      .addError(Problem(InvalidRequest))
      .addError(Problem(RuleAlreadyExists))
      .addError(Problem(IssuerDiscoveryFailed))
      .annotate(
        OpenApi.Description,
        "Trusts an OIDC issuer (discovered now) for JWTs whose claims satisfy the CEL condition; grants content-writer."
      )
  )
  .add(
    HttpApiEndpoint.get("getRule", "/v1/auth/oidc-provisioning-rules/:rule_id")
      .setPath(RulePath)
      .addSuccess(RuleView)
      .addError(Problem(RuleNotFound))
  )
  .add(
    HttpApiEndpoint.put("replaceRule", "/v1/auth/oidc-provisioning-rules/:rule_id")
      .setPath(RulePath)
      .setPayload(SaveRuleRequest)
      .addSuccess(RuleView)
      .addError(Problem(InvalidRequest))
      .addError(Problem(RuleNotFound))
      .addError(Problem(IssuerDiscoveryFailed))
      .annotate(OpenApi.Description, "Full replacement (the path id wins; an omitted enabled means true).")
  )
  .add(
    HttpApiEndpoint.del("deleteRule", "/v1/auth/oidc-provisioning-rules/:rule_id")
      .setPath(RulePath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(RuleNotFound))
      .annotate(OpenApi.Description, "Deletes the rule; issuer trust and provisioned principals stay.")
  )
  .add(
    HttpApiEndpoint.get("previewReconciliation", "/v1/auth/oidc-provisioning-rules/:rule_id/reconciliation")
      .setPath(RulePath)
      .addSuccess(ReconciliationView)
      .addError(Problem(InvalidRequest))
      .addError(Problem(RuleNotFound))
      .annotate(
        OpenApi.Description,
        "Principals provisioned by this rule that still hold content-writer (works for deleted rules; 404 for an id no rule or principal ever carried)."
      )
  )
  .add(
    HttpApiEndpoint.post("applyReconciliation", "/v1/auth/oidc-provisioning-rules/:rule_id/reconciliation")
      .setPath(RulePath)
      .addSuccess(ReconciliationView)
      .addError(Problem(InvalidRequest))
      .addError(Problem(RuleNotFound))
      .annotate(OpenApi.Description, "Removes content-writer from those principals; other roles are untouched.")
  )
  .annotate(OpenApi.Description, "Auth management: principals, roles, API tokens, OIDC provisioning rules")
{}
