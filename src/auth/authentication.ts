import { Context, DateTime, Effect, Layer, Option } from "effect"
import { Forbidden, type IdentityProviderUnavailable, Unauthorized } from "./errors.js"
import { AuthRepository } from "./repository.js"
import type { Action, Principal } from "./schema.js"
import { bearerCredential, parseToken, secretMatches } from "./tokens.js"

/**
 * Turns an `Authorization` header into a principal and decides whether that
 * principal may perform an action. Roles are read on every request, so a role
 * change or a revocation takes effect on the next call (spec/auth.md §1.1).
 *
 * Storage failures are defects (→ 500 without internal text), never a 401: a
 * database outage must not look like a bad token. Why a credential was refused goes
 * to the debug log only (`error_kind`, `reason`); the client always sees one 401.
 */
export class Authentication extends Context.Tag("imgsrv/Authentication")<Authentication, {
  readonly authenticate: (
    authorization: string | undefined
  ) => Effect.Effect<Principal, Unauthorized | IdentityProviderUnavailable>
  readonly authorize: (principal: Principal, action: Action) => Effect.Effect<void, Forbidden>
}>() {}

/**
 * A further way to authenticate a bearer credential that is not an imgsrv API token
 * (OIDC JWTs). `None` means "not mine"; the pipeline then answers 401.
 */
export class BearerAuthenticators extends Context.Tag("imgsrv/BearerAuthenticators")<BearerAuthenticators, {
  readonly authenticators: ReadonlyArray<
    (
      authorization: string,
      credential: string
    ) => Effect.Effect<Option.Option<Principal>, Unauthorized | IdentityProviderUnavailable>
  >
}>() {}

export const NoExtraAuthenticators = Layer.succeed(BearerAuthenticators, { authenticators: [] })

/** Logs why a credential was refused (debug) and fails with the one client-visible 401. */
export const refuse = (reason: string, errorKind: "unauthenticated" | "unresolved_identity" = "unauthenticated") =>
  Effect.logDebug("authentication failed").pipe(
    Effect.annotateLogs({ operation: "authenticate", error_kind: errorKind, reason }),
    Effect.zipRight(Effect.fail(new Unauthorized()))
  )

export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.gen(function*() {
    const repo = yield* AuthRepository
    const extra = yield* BearerAuthenticators

    const viaApiToken = (credential: string) =>
      Effect.gen(function*() {
        const parsed = parseToken(credential)
        if (!parsed) return Option.none<Principal>()
        const token = yield* repo.findToken(parsed.id)
        if (Option.isNone(token)) return yield* refuse("token not found")
        const row = token.value
        if (!secretMatches(parsed.secret, row.secretHash)) return yield* refuse("secret mismatch")
        if (row.revokedAt !== null) return yield* refuse("token revoked")
        const now = yield* DateTime.now
        if (DateTime.toEpochMillis(now) >= row.expiresAt.getTime()) return yield* refuse("token expired")
        // Best effort: a failed bump never fails the request.
        yield* repo.touchToken(row.id).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("could not record token use", cause))
        )
        const principal = yield* repo.principalForIdentity("api-token", row.id)
        if (Option.isNone(principal)) return yield* refuse("token is not linked to a principal", "unresolved_identity")
        return Option.some<Principal>({
          id: principal.value.id,
          kind: principal.value.kind,
          displayName: principal.value.displayName,
          credential: "api-token",
          transient: false
        })
      }).pipe(Effect.annotateLogs({ authenticator: "api-token", token_id: parseToken(credential)?.id ?? "" }))

    const authenticate = (authorization: string | undefined) =>
      Effect.gen(function*() {
        const credential = bearerCredential(authorization)
        if (credential === undefined || authorization === undefined) {
          return yield* refuse(
            authorization === undefined ? "no Authorization header" : "malformed Authorization header"
          )
        }
        const byToken = yield* viaApiToken(credential)
        if (Option.isSome(byToken)) return byToken.value
        for (const authenticator of extra.authenticators) {
          const found = yield* authenticator(authorization, credential)
          if (Option.isSome(found)) return found.value
        }
        return yield* refuse("no authenticator accepted the credential")
      }).pipe(Effect.withSpan("auth.authenticate"))

    const authorize = (principal: Principal, action: Action) =>
      Effect.gen(function*() {
        // A transient OIDC principal (no rule matched) is denied without consulting roles.
        const allowed = principal.transient ? false : (yield* repo.actionsOf(principal.id)).includes(action)
        const attributes = {
          operation: "authorize",
          action,
          resource_type: action === "auth.manage" ? "auth" : "content",
          authenticator: principal.credential,
          // A transient id embeds the raw OIDC subject, which is never logged.
          principal_id: principal.transient ? "transient" : principal.id
        }
        if (!allowed) {
          yield* Effect.logWarning("authorization denied").pipe(
            Effect.annotateLogs({ ...attributes, error_kind: "unauthorized" })
          )
          return yield* new Forbidden({ action })
        }
        yield* Effect.logDebug("authorization allowed").pipe(Effect.annotateLogs(attributes))
      })

    return { authenticate, authorize }
  })
)
