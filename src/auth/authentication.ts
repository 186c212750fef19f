import { Context, DateTime, Effect, Layer, Option } from "effect"
import { Forbidden, Unauthorized } from "./errors.js"
import { AuthRepository } from "./repository.js"
import type { Action, Principal } from "./schema.js"
import { bearerCredential, parseToken, secretMatches } from "./tokens.js"

/**
 * Turns an `Authorization` header into a principal and decides whether that
 * principal may perform an action. Roles are read on every request, so a role
 * change or a revocation takes effect on the next call (spec/auth.md §1.1).
 *
 * Storage failures are defects (→ 500 without internal text), never a 401: a
 * database outage must not look like a bad token.
 */
export class Authentication extends Context.Tag("imgsrv/Authentication")<Authentication, {
  readonly authenticate: (authorization: string | undefined) => Effect.Effect<Principal, Unauthorized>
  readonly authorize: (principal: Principal, action: Action) => Effect.Effect<void, Forbidden>
}>() {}

/**
 * A further way to authenticate a bearer credential that is not an imgsrv API token
 * (OIDC JWTs). `None` means "not mine"; the pipeline then answers 401.
 */
export class BearerAuthenticators extends Context.Tag("imgsrv/BearerAuthenticators")<BearerAuthenticators, {
  readonly authenticators: ReadonlyArray<
    (authorization: string, credential: string) => Effect.Effect<Option.Option<Principal>, Unauthorized>
  >
}>() {}

export const NoExtraAuthenticators = Layer.succeed(BearerAuthenticators, { authenticators: [] })

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
        if (Option.isNone(token)) return yield* new Unauthorized()
        const row = token.value
        if (!secretMatches(parsed.secret, row.secret_hash)) return yield* new Unauthorized()
        if (row.revoked_at !== null) return yield* new Unauthorized()
        const now = yield* DateTime.now
        if (DateTime.toEpochMillis(now) >= row.expires_at.getTime()) return yield* new Unauthorized()
        // Best effort: a failed bump never fails the request.
        yield* repo.touchToken(row.id).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("could not record token use", cause))
        )
        const principal = yield* repo.principalForIdentity("api-token", row.id)
        if (Option.isNone(principal)) return yield* new Unauthorized()
        return Option.some<Principal>({
          id: principal.value.id,
          kind: principal.value.kind,
          displayName: principal.value.display_name,
          credential: "api-token",
          transient: false
        })
      })

    const authenticate = (authorization: string | undefined) =>
      Effect.gen(function*() {
        const credential = bearerCredential(authorization)
        if (credential === undefined || authorization === undefined) return yield* new Unauthorized()
        const byToken = yield* viaApiToken(credential)
        if (Option.isSome(byToken)) return byToken.value
        for (const authenticator of extra.authenticators) {
          const found = yield* authenticator(authorization, credential)
          if (Option.isSome(found)) return found.value
        }
        return yield* new Unauthorized()
      }).pipe(
        Effect.catchTag("SqlError", (error) => Effect.die(error)),
        Effect.withSpan("auth.authenticate")
      )

    const authorize = (principal: Principal, action: Action) =>
      Effect.gen(function*() {
        if (principal.transient) return yield* new Forbidden({ action })
        const actions = yield* repo.actionsOf(principal.id)
        if (!actions.includes(action)) return yield* new Forbidden({ action })
      }).pipe(Effect.catchTag("SqlError", (error) => Effect.die(error)))

    return { authenticate, authorize }
  })
)
