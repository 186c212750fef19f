import { Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import { BearerAuthenticators, refuse } from "../authentication.js"
import { AuthRepository, type PrincipalRow, type RuleRow } from "../repository.js"
import { GITHUB_ACTIONS_ISSUER, type Principal, PrincipalId, type PrincipalKind } from "../schema.js"
import { AuthIds } from "../tokens.js"
import { compileCondition } from "./conditions.js"
import { OidcVerifier, type VerifiedIdentity } from "./verifier.js"

/**
 * The OIDC bearer authenticator: a verified JWT identity is resolved to a principal
 * by its identity link, or by the provisioning rules it matches — auto-provisioning a
 * principal holding the rules' roles — or else to a transient principal that is
 * denied everything (spec/auth.md §5.6). Plugged into `Authentication` through
 * `BearerAuthenticators`, after the API-token authenticator.
 */

const sha256Hex = (text: string) => createHash("sha256").update(text, "utf8").digest("hex")

/** JSON with object keys sorted recursively and no whitespace. */
export const canonicalJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>
    return `{${
      Object.keys(record).sort().filter((k) => record[k] !== undefined)
        .map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(",")
    }}`
  }
  return JSON.stringify(value) ?? "null"
}

/**
 * The subject an OIDC identity is linked under: `sub#claims:<sha256>` of the
 * forwarded claims, so a link made for one set of claims (one workflow, one
 * repository) is not reused when the claims change.
 */
export const linkSubject = (identity: Pick<VerifiedIdentity, "subject" | "claims">): string =>
  Object.keys(identity.claims).length === 0
    ? identity.subject
    : `${identity.subject}#claims:${sha256Hex(`${identity.subject}\u0000${canonicalJson(identity.claims)}`)}`

/** How external subjects appear in logs: never raw. */
export const subjectHash = (provider: string, subject: string) => sha256Hex(`${provider}\u0000${subject}`)

/** Kind and display name of a principal standing for an OIDC identity. */
export const oidcPrincipalShape = (issuer: string, subject: string): { kind: PrincipalKind; displayName: string } =>
  issuer === GITHUB_ACTIONS_ISSUER
    ? { kind: "service", displayName: `github-actions:${subject}` }
    : { kind: "user", displayName: `oidc:${subject}` }

const asPrincipal = (row: PrincipalRow): Principal => ({
  id: row.id,
  kind: row.kind,
  displayName: row.displayName,
  credential: "oidc",
  transient: false
})

/** The rules an identity matches that grant content-writer, in rule-id order. */
export const matchingRules = (rules: ReadonlyArray<RuleRow>, identity: VerifiedIdentity) =>
  rules.filter((rule) =>
    rule.enabled && rule.provider === identity.provider && rule.roleIds.includes("content-writer") &&
    compileCondition(rule.condition).matches({
      identity: { provider: identity.provider, subject: identity.subject, credential_id: identity.credentialId },
      claims: identity.claims
    })
  )

export const OidcAuthenticatorsLive = Layer.effect(
  BearerAuthenticators,
  Effect.gen(function*() {
    const repo = yield* AuthRepository
    const verifier = yield* OidcVerifier
    const ids = yield* AuthIds

    const resolve = (identity: VerifiedIdentity) =>
      Effect.gen(function*() {
        const subject = linkSubject(identity)
        const resolved = (resolution: string, principal: Principal) =>
          Effect.logDebug("identity resolved").pipe(
            Effect.annotateLogs({ resolution, principal_id: principal.transient ? "transient" : principal.id }),
            Effect.as(principal)
          )

        const linked = yield* repo.principalForIdentity(identity.provider, subject)
        if (Option.isSome(linked)) return yield* resolved("linked", asPrincipal(linked.value))

        const rules = matchingRules(yield* repo.enabledRulesFor(identity.provider), identity)
        const shape = oidcPrincipalShape(identity.provider, identity.subject)
        if (rules.length === 0) {
          return yield* resolved("transient", {
            id: PrincipalId.make(`transient:${identity.provider}:${identity.subject}`),
            kind: shape.kind,
            displayName: shape.displayName,
            credential: "oidc",
            transient: true
          })
        }
        const ruleIds = rules.map((r) => r.id)
        const roles = [...new Set(rules.flatMap((r) => r.roleIds))].sort()

        // One transaction under a per-identity lock: concurrent first logins of one
        // identity (parallel CI jobs) provision one principal, never two.
        const outcome = yield* repo.transaction(Effect.gen(function*() {
          yield* repo.lockIdentity(identity.provider, subject)
          const raced = yield* repo.principalForIdentity(identity.provider, subject)
          if (Option.isSome(raced)) return { resolution: "linked", row: raced.value }
          const existing = yield* repo.findRulePrincipal(identity.provider, identity.subject, ruleIds)
          if (Option.isSome(existing)) {
            // Link the new claim fingerprint too, so the next request takes the short path.
            yield* repo.linkIdentityIfAbsent(identity.provider, subject, existing.value.id)
            return { resolution: "existing_rule_principal", row: existing.value }
          }
          const row = yield* repo.insertPrincipal({
            id: yield* ids.principalId,
            kind: shape.kind,
            displayName: shape.displayName,
            attributes: { provider: identity.provider, subject: identity.subject, provisioning_rule_id: ruleIds[0]! }
          })
          yield* repo.linkIdentity(identity.provider, subject, row.id)
          for (const role of roles) yield* repo.assignRole(row.id, role)
          return { resolution: "provisioned", row }
        }))
        if (outcome.resolution === "provisioned") {
          yield* Effect.logInfo("identity auto-provisioned").pipe(
            Effect.annotateLogs({
              principal_id: outcome.row.id,
              provisioning_rule_id: ruleIds[0]!,
              rule_count: rules.length,
              role_count: roles.length
            })
          )
          return asPrincipal(outcome.row)
        }
        return yield* resolved(outcome.resolution, asPrincipal(outcome.row))
      })

    const authenticate = (authorization: string, credential: string) =>
      Effect.gen(function*() {
        // The OIDC authenticator is strict about the header: exactly "Bearer <jwt>".
        if (authorization !== `Bearer ${credential}`) return Option.none<Principal>()
        const verified = yield* verifier.verify(credential).pipe(
          Effect.catchTag("JwtRejected", (rejected) => refuse(rejected.reason))
        )
        if (Option.isNone(verified)) return Option.none<Principal>()
        const identity = verified.value
        return Option.some(
          yield* resolve(identity).pipe(
            Effect.annotateLogs({
              identity_provider: identity.provider,
              subject_hash: subjectHash(identity.provider, identity.subject)
            })
          )
        )
      }).pipe(Effect.annotateLogs({ authenticator: "oidc" }))

    return { authenticators: [authenticate] }
  })
)
