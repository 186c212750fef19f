import { Clock, Context, Effect, Either, Layer, Option } from "effect"
import { formatTimestamp } from "../contract/timestamp.js"
import { InvalidRequest } from "../platform/http/problem.js"
import {
  ApiTokenNotFound,
  type IssuerDiscoveryFailed,
  LastAuthManager,
  PrincipalNotFound,
  RuleAlreadyExists,
  RuleNotFound,
  UnknownRole
} from "./errors.js"
import { checkGuardedCondition } from "./oidc/conditions.js"
import { checkHttpsUrl, discoverIssuer } from "./oidc/discovery.js"
import { OidcHttp } from "./oidc/http.js"
import { AuthRepository, type PrincipalWithRolesRow, type RuleRecord, type RuleRow } from "./repository.js"
import {
  type ApiTokenView,
  BUILT_IN_ROLES,
  type CreatePrincipalRequest,
  isRoleId,
  type IssueApiTokenRequest,
  type IssuedApiToken,
  type Principal,
  type PrincipalId,
  PrincipalKind,
  type PrincipalView,
  type ReconciliationView,
  RESERVED_ATTRIBUTES,
  type RoleId,
  type RoleView,
  RuleId,
  type RuleView,
  type SaveRuleRequest,
  type TokenId
} from "./schema.js"
import { AuthIds } from "./tokens.js"
import { principalView, ruleView, tokenView } from "./views.js"

/**
 * The auth management rules behind `/v1/auth/*` (spec/auth.md §7): principals, role
 * assignments, API tokens, OIDC provisioning rules and their reconciliation. Every
 * operation is logged with the acting principal (`actor_principal_id`) as an audit
 * trail; secrets never are.
 */
export class AuthManagement extends Context.Tag("imgsrv/AuthManagement")<AuthManagement, {
  readonly listRoles: () => ReadonlyArray<RoleView>
  /** At most `limit` principals after the id `after`, by id. */
  readonly listPrincipals: (after: Option.Option<string>, limit: number) => Effect.Effect<ReadonlyArray<PrincipalView>>
  readonly getPrincipal: (id: PrincipalId) => Effect.Effect<PrincipalView, PrincipalNotFound>
  readonly createPrincipal: (
    request: CreatePrincipalRequest,
    actor: Principal
  ) => Effect.Effect<PrincipalView, InvalidRequest>
  readonly assignRole: (
    principalId: PrincipalId,
    roleId: string,
    actor: Principal
  ) => Effect.Effect<void, UnknownRole | PrincipalNotFound>
  readonly unassignRole: (
    principalId: PrincipalId,
    roleId: string,
    actor: Principal
  ) => Effect.Effect<void, UnknownRole | PrincipalNotFound | LastAuthManager>
  readonly issueToken: (
    principalId: PrincipalId,
    request: IssueApiTokenRequest,
    actor: Principal
  ) => Effect.Effect<IssuedApiToken, InvalidRequest | PrincipalNotFound>
  /** At most `limit` tokens of the principal after the id `after`, by id. */
  readonly listTokens: (
    principalId: PrincipalId,
    after: Option.Option<string>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ApiTokenView>, PrincipalNotFound>
  readonly revokeToken: (tokenId: TokenId, actor: Principal) => Effect.Effect<void, ApiTokenNotFound>
  /** At most `limit` rules after the id `after`, by id. */
  readonly listRules: (after: Option.Option<string>, limit: number) => Effect.Effect<ReadonlyArray<RuleView>>
  readonly getRule: (id: RuleId) => Effect.Effect<RuleView, RuleNotFound>
  readonly createRule: (
    request: SaveRuleRequest,
    actor: Principal
  ) => Effect.Effect<RuleView, InvalidRequest | RuleAlreadyExists | IssuerDiscoveryFailed>
  readonly replaceRule: (
    id: RuleId,
    request: SaveRuleRequest,
    actor: Principal
  ) => Effect.Effect<RuleView, InvalidRequest | RuleNotFound | IssuerDiscoveryFailed>
  readonly deleteRule: (id: RuleId, actor: Principal) => Effect.Effect<void, RuleNotFound>
  /** `ruleId` as the path carries it: checked here, with the 400s of a malformed id. */
  readonly reconcileRule: (
    ruleId: string,
    apply: boolean,
    actor: Principal
  ) => Effect.Effect<ReconciliationView, InvalidRequest | RuleNotFound>
}>() {}

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i

/** Parses an RFC 3339 timestamp (sub-millisecond digits are dropped), or undefined. */
export const parseRfc3339 = (text: string): Date | undefined => {
  const match = RFC3339.exec(text.trim())
  if (!match) return undefined
  const fraction = match[2] ? match[2].slice(0, 4) : ""
  const date = new Date(`${match[1]!.toUpperCase()}${fraction}${match[3]!.toUpperCase()}`)
  return Number.isNaN(date.getTime()) ? undefined : date
}

/** Order-preserving union without duplicates. */
const union = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => [...new Set([...a, ...b])]

/** Rule ids travel in URL paths: a conservative alphabet keeps every rule addressable. */
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const RULE_ID_RULE = "1–128 characters of letters, digits, '.', '_', ':' or '-'"

const invalid = (detail: string) => new InvalidRequest({ detail })

const fromEither = <A>(either: Either.Either<A, string>) =>
  Either.match(either, { onLeft: (detail) => Effect.fail(invalid(detail)), onRight: Effect.succeed })

const checkRole = (roleId: string): Effect.Effect<RoleId, UnknownRole> =>
  isRoleId(roleId) ? Effect.succeed(roleId) : Effect.fail(new UnknownRole({ roleId }))

/** Only the two built-in roles, and OIDC rules can only ever grant content-writer (spec/auth.md §5.1). */
const RULE_ROLES: ReadonlyArray<RoleId> = ["content-writer"]

export const AuthManagementLive = Layer.effect(
  AuthManagement,
  Effect.gen(function*() {
    const repo = yield* AuthRepository
    const http = yield* OidcHttp
    const ids = yield* AuthIds

    const audit = (message: string, operation: string, actor: Principal, attributes: Record<string, unknown>) =>
      Effect.logInfo(message).pipe(
        Effect.annotateLogs({ operation, actor_principal_id: actor.id, ...attributes })
      )

    const principalOrFail = (id: PrincipalId) =>
      repo.findPrincipal(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new PrincipalNotFound({ principalId: id })),
          onSome: Effect.succeed
        }))
      )

    const providerOf = (issuer: string) => repo.findProvider(issuer)

    const viewOf = (rule: RuleRow) => Effect.map(providerOf(rule.provider), (provider) => ruleView(rule, provider))

    const listRoles = () =>
      BUILT_IN_ROLES.map((role): RoleView => ({
        id: role.id,
        name: role.id,
        display_name: role.displayName,
        description: role.description,
        actions: [...role.actions]
      }))

    const createPrincipal = (request: CreatePrincipalRequest, actor: Principal) =>
      Effect.gen(function*() {
        if (!PrincipalKind.literals.includes(request.kind as PrincipalKind)) {
          return yield* invalid(`unsupported principal kind ${JSON.stringify(request.kind)}`)
        }
        const displayName = request.display_name.trim()
        if (displayName === "") return yield* invalid("display_name is required")
        const attributes = request.attributes ?? {}
        const reserved = RESERVED_ATTRIBUTES.filter((key) => Object.hasOwn(attributes, key))
        if (reserved.length > 0) {
          return yield* invalid(`attribute ${JSON.stringify(reserved[0])} is reserved for the server`)
        }
        const row = yield* repo.insertPrincipal({
          id: yield* ids.principalId,
          kind: request.kind as PrincipalKind,
          displayName,
          attributes: Object.keys(attributes).length > 0 ? attributes : null
        })
        yield* audit("principal created", "auth.create_principal", actor, {
          principal_id: row.id,
          principal_kind: row.kind,
          role_count: 0
        })
        return principalView({ ...row, roleIds: [] })
      })

    const assignRole = (principalId: PrincipalId, roleId: string, actor: Principal) =>
      Effect.gen(function*() {
        const role = yield* checkRole(roleId)
        yield* principalOrFail(principalId)
        yield* repo.assignRole(principalId, role)
        yield* audit("principal role assigned", "auth.assign_role", actor, { principal_id: principalId, role_id: role })
      })

    const unassignRole = (principalId: PrincipalId, roleId: string, actor: Principal) =>
      Effect.gen(function*() {
        const role = yield* checkRole(roleId)
        yield* principalOrFail(principalId)
        yield* repo.transaction(Effect.gen(function*() {
          if (role === "auth-manager") {
            // Serialised with bootstrap and other unassignments: two managers removing
            // each other at once cannot both succeed.
            yield* repo.lockAuthManagers
            const holds = yield* repo.holdsRole(principalId, role)
            if (holds && (yield* repo.countRoleHolders(role)) <= 1) {
              return yield* new LastAuthManager({ principalId })
            }
          }
          yield* repo.unassignRole(principalId, role)
        }))
        yield* audit("principal role unassigned", "auth.unassign_role", actor, {
          principal_id: principalId,
          role_id: role
        })
      })

    const issueToken = (principalId: PrincipalId, request: IssueApiTokenRequest, actor: Principal) =>
      Effect.gen(function*() {
        if (request.expires_at === undefined || request.expires_at.trim() === "") {
          return yield* invalid("expires_at is required (an RFC 3339 timestamp in the future)")
        }
        const expiresAt = parseRfc3339(request.expires_at)
        if (expiresAt === undefined) return yield* invalid("expires_at must be an RFC 3339 timestamp")
        const now = yield* Clock.currentTimeMillis
        if (expiresAt.getTime() <= now) return yield* invalid("expires_at must be in the future")
        yield* principalOrFail(principalId)
        const minted = yield* ids.token
        const row = yield* repo.transaction(Effect.gen(function*() {
          const inserted = yield* repo.insertToken({
            id: minted.id,
            principalId,
            name: (request.name ?? "").trim(),
            secretHash: minted.secretHash,
            expiresAt
          })
          yield* repo.linkIdentity("api-token", minted.id, principalId)
          return inserted
        }))
        yield* audit("api token issued", "auth.issue_api_token", actor, {
          token_id: row.id,
          principal_id: principalId,
          expires_at: formatTimestamp(row.expiresAt)
        })
        return {
          id: row.id,
          principal_id: row.principalId,
          name: row.name,
          expires_at: formatTimestamp(row.expiresAt),
          plaintext: minted.plaintext
        }
      })

    const listTokens = (principalId: PrincipalId, after: Option.Option<string>, limit: number) =>
      Effect.gen(function*() {
        yield* principalOrFail(principalId)
        return (yield* repo.listTokens(principalId, after, limit)).map(tokenView)
      })

    const revokeToken = (tokenId: TokenId, actor: Principal) =>
      Effect.gen(function*() {
        const revoked = yield* repo.revokeToken(tokenId)
        if (Option.isNone(revoked)) return yield* new ApiTokenNotFound({ tokenId })
        yield* audit("api token revoked", "auth.revoke_api_token", actor, {
          token_id: tokenId,
          principal_id: revoked.value.principalId
        })
      })

    /** Validates a rule request and turns it into what is stored (before any network call). */
    const prepareRule = (id: RuleId, request: SaveRuleRequest) =>
      Effect.gen(function*() {
        const displayName = request.display_name.trim()
        if (displayName === "") return yield* invalid("display_name is required")
        const issuerUrl = request.issuer_url.trim()
        yield* fromEither(checkHttpsUrl(issuerUrl, "issuer_url"))
        const audience = request.audience.trim()
        if (audience === "") return yield* invalid("audience is required")
        const condition = request.condition.trim()
        const guarded = yield* fromEither(checkGuardedCondition(audience, condition))
        const forwardedClaims = union(
          (request.forwarded_claims ?? []).map((c) => c.trim()).filter((c) => c !== ""),
          ["aud"]
        )
        return {
          id,
          displayName,
          provider: issuerUrl,
          audience,
          forwardedClaims,
          condition: guarded,
          enabled: request.enabled ?? true,
          roleIds: RULE_ROLES
        }
      })

    /**
     * Discovers the issuer (network, outside any transaction), then in one transaction
     * widens the issuer's trust record and writes the rule — a failed save leaves the
     * trust record as it was.
     */
    const saveRule = <E>(
      id: RuleId,
      request: SaveRuleRequest,
      write: (rule: RuleRecord) => Effect.Effect<void, E>
    ) =>
      Effect.gen(function*() {
        const rule = yield* prepareRule(id, request)
        const discovered = yield* discoverIssuer(rule.provider).pipe(Effect.provideService(OidcHttp, http))
        return yield* repo.transaction(Effect.gen(function*() {
          const stored = yield* repo.lockProvider({
            issuer: discovered.issuer,
            jwksUrl: discovered.jwksUrl,
            audiences: [rule.audience],
            supportedSigningAlgorithms: discovered.algorithms,
            forwardedClaims: rule.forwardedClaims
          })
          // Audiences and claims only ever grow; keys and algorithms follow the fresh discovery.
          yield* repo.updateProvider({
            issuer: discovered.issuer,
            jwksUrl: discovered.jwksUrl,
            audiences: union(stored.audiences, [rule.audience]),
            supportedSigningAlgorithms: discovered.algorithms,
            forwardedClaims: union(stored.forwardedClaims, rule.forwardedClaims)
          })
          yield* write(rule)
          const row = yield* repo.findRule(id)
          return yield* viewOf(Option.getOrThrow(row))
        }))
      })

    const createRule = (request: SaveRuleRequest, actor: Principal) =>
      Effect.gen(function*() {
        const chosen = (request.id ?? "").trim() || (yield* ids.ruleId)
        if (!RULE_ID.test(chosen)) {
          return yield* invalid(`id must be ${RULE_ID_RULE}`)
        }
        const id = RuleId.make(chosen)
        if (Option.isSome(yield* repo.findRule(id))) return yield* new RuleAlreadyExists({ ruleId: id })
        const view = yield* saveRule(id, request, repo.insertRule)
        yield* audit("oidc provisioning rule created", "auth.create_oidc_provisioning_rule", actor, {
          rule_id: view.id,
          issuer_url: view.issuer_url,
          enabled: view.enabled,
          forwarded_claim_count: view.forwarded_claims?.length ?? 0
        })
        return view
      })

    const replaceRule = (id: RuleId, request: SaveRuleRequest, actor: Principal) =>
      Effect.gen(function*() {
        if (Option.isNone(yield* repo.findRule(id))) return yield* new RuleNotFound({ ruleId: id })
        const view = yield* saveRule(id, request, repo.replaceRule)
        yield* audit("oidc provisioning rule updated", "auth.update_oidc_provisioning_rule", actor, {
          rule_id: view.id,
          issuer_url: view.issuer_url,
          enabled: view.enabled,
          forwarded_claim_count: view.forwarded_claims?.length ?? 0
        })
        return view
      })

    const deleteRule = (id: RuleId, actor: Principal) =>
      Effect.gen(function*() {
        yield* repo.deleteRule(id)
        yield* audit("oidc provisioning rule deleted", "auth.delete_oidc_provisioning_rule", actor, { rule_id: id })
      })

    const reconcileRule = (rawRuleId: string, apply: boolean, actor: Principal) =>
      Effect.gen(function*() {
        const trimmed = rawRuleId.trim()
        if (trimmed === "") return yield* invalid("rule id is required")
        if (!RULE_ID.test(trimmed)) return yield* invalid(`rule id must be ${RULE_ID_RULE}`)
        const ruleId = RuleId.make(trimmed)
        // Meant for after a rule is disabled or deleted: a deleted rule is still known by the
        // principals it provisioned. An id nothing ever carried is a typo, not an empty result.
        if (!(yield* repo.ruleIdKnown(ruleId))) return yield* new RuleNotFound({ ruleId })
        const principals = yield* (apply
          ? repo.transaction(Effect.gen(function*() {
            const affected = yield* repo.principalsProvisionedBy(ruleId, "content-writer", true)
            const after: Array<PrincipalWithRolesRow> = []
            for (const principal of affected) {
              yield* repo.unassignRole(principal.id, "content-writer")
              after.push({ ...principal, roleIds: principal.roleIds.filter((r) => r !== "content-writer") })
            }
            return after
          }))
          : repo.principalsProvisionedBy(ruleId, "content-writer", false))
        yield* audit(
          "oidc provisioning rule reconciliation evaluated",
          "auth.reconcile_oidc_provisioning_rule",
          actor,
          { rule_id: ruleId, applied: apply, principal_count: principals.length, role_count: 1 }
        )
        return {
          rule_id: ruleId,
          unassign_role_ids: ["content-writer"],
          principals: principals.map(principalView),
          applied: apply
        }
      })

    return AuthManagement.of({
      listRoles,
      listPrincipals: (after, limit) =>
        Effect.map(repo.listPrincipals(after, limit), (rows) => rows.map(principalView)),
      getPrincipal: (id) => Effect.map(principalOrFail(id), principalView),
      createPrincipal,
      assignRole,
      unassignRole,
      issueToken,
      listTokens,
      revokeToken,
      listRules: (after, limit) => Effect.flatMap(repo.listRules(after, limit), Effect.forEach(viewOf)),
      getRule: (id) =>
        Effect.gen(function*() {
          const rule = yield* repo.findRule(id)
          if (Option.isNone(rule)) return yield* new RuleNotFound({ ruleId: id })
          return yield* viewOf(rule.value)
        }),
      createRule,
      replaceRule,
      deleteRule,
      reconcileRule
    })
  })
)
