import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Layer, TestClock } from "effect"
import { Authentication, AuthenticationLive, NoExtraAuthenticators } from "../../src/auth/authentication.js"
import { AuthRepository, AuthRepositoryLive } from "../../src/auth/repository.js"
import { mintToken } from "../../src/auth/tokens.js"
import { TestDatabaseLive } from "../support/harness.js"
import { seedTokenPrincipal } from "../support/tokens.js"

/**
 * The API-token pipeline against real PostgreSQL, with Effect's TestClock for the
 * expiry boundary (spec/auth.md §3.3; §9 items 5–8, 10, 22, 24, 63).
 */

const Live = AuthenticationLive.pipe(
  Layer.provide(NoExtraAuthenticators),
  Layer.provideMerge(AuthRepositoryLive),
  Layer.provideMerge(TestDatabaseLive)
)

/** A principal with `roles` and a token expiring at `expiresAt` (linked unless told otherwise). */
const seed = seedTokenPrincipal

const bearer = (plaintext: string) => `Bearer ${plaintext}`

layer(Live)("API token authentication", (it) => {
  it.effect("a token is accepted one second before expires_at and refused at and after it", () =>
    Effect.gen(function*() {
      const auth = yield* Authentication
      // TestClock starts at the epoch.
      const { principalId, token } = yield* seed(["content-writer"], new Date(10_000))
      yield* TestClock.setTime(9_000)
      const principal = yield* auth.authenticate(bearer(token.plaintext))
      expect(principal.id).toBe(principalId)
      expect(principal.credential).toBe("api-token")
      yield* TestClock.setTime(10_000)
      expect(Exit.isFailure(yield* Effect.exit(auth.authenticate(bearer(token.plaintext))))).toBe(true)
      yield* TestClock.setTime(11_000)
      const after = yield* Effect.flip(auth.authenticate(bearer(token.plaintext)))
      expect(after._tag).toBe("Unauthorized")
    }))

  it.effect("unknown ids, wrong secrets and revoked tokens are all the same 401", () =>
    Effect.gen(function*() {
      const auth = yield* Authentication
      const repo = yield* AuthRepository
      const { token } = yield* seed(["content-writer"], new Date(Date.UTC(2099, 0, 1)))
      const other = mintToken()
      const failures = [
        `imgsrv_at_${other.id}_${token.secret}`, // unknown id
        `imgsrv_at_${token.id}_${other.secret}`, // right id, wrong secret
        `ak_${token.id}_${token.secret}` // wrong prefix
      ]
      for (const credential of failures) {
        const error = yield* Effect.flip(auth.authenticate(bearer(credential)))
        expect(error._tag).toBe("Unauthorized")
        expect(error.message).toBe("invalid bearer token")
      }
      yield* repo.revokeToken(token.id)
      expect((yield* Effect.flip(auth.authenticate(bearer(token.plaintext))))._tag).toBe("Unauthorized")
    }))

  it.effect("a token without its identity link is unresolved: 401, never a provisioned principal", () =>
    Effect.gen(function*() {
      const auth = yield* Authentication
      const { token } = yield* seed(["content-writer"], new Date(Date.UTC(2099, 0, 1)), { link: false })
      expect((yield* Effect.flip(auth.authenticate(bearer(token.plaintext))))._tag).toBe("Unauthorized")
    }))

  it.effect("records last_used_at at verification, and a failing write of it does not fail the request", () =>
    Effect.gen(function*() {
      const auth = yield* Authentication
      const repo = yield* AuthRepository
      const sql = yield* SqlClient.SqlClient
      const { token } = yield* seed([], new Date(Date.UTC(2099, 0, 1)))
      const before = Date.now()
      // Authenticated although the principal holds no role: the bump precedes authorization.
      yield* auth.authenticate(bearer(token.plaintext))
      const used = (yield* repo.findToken(token.id)).pipe((o) => o._tag === "Some" ? o.value.lastUsedAt : null)
      expect(used).not.toBeNull()
      expect(used!.getTime()).toBeGreaterThanOrEqual(before - 1000)
      expect(used!.getTime()).toBeLessThanOrEqual(Date.now() + 1000)

      const broken = yield* seed(["content-writer"], new Date(Date.UTC(2099, 0, 1)))
      yield* sql.unsafe(`
        CREATE FUNCTION refuse_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'last_used_at is read-only today'; END $$;
        CREATE TRIGGER refuse_touch BEFORE UPDATE OF last_used_at ON auth_api_tokens
          FOR EACH ROW WHEN (NEW.id = '${broken.token.id}') EXECUTE FUNCTION refuse_touch();`)
      const principal = yield* auth.authenticate(bearer(broken.token.plaintext))
      expect(principal.id).toBe(broken.principalId)
      yield* sql.unsafe("DROP TRIGGER refuse_touch ON auth_api_tokens; DROP FUNCTION refuse_touch();")
    }))

  it.effect("authorization reads the principal's current roles on every call", () =>
    Effect.gen(function*() {
      const auth = yield* Authentication
      const repo = yield* AuthRepository
      const { principalId, token } = yield* seed([], new Date(Date.UTC(2099, 0, 1)))
      const principal = yield* auth.authenticate(bearer(token.plaintext))
      const denied = yield* Effect.flip(auth.authorize(principal, "content.write"))
      expect(denied.message).toBe("principal is not authorized for action content.write")
      yield* repo.assignRole(principalId, "content-writer")
      yield* auth.authorize(principal, "content.write")
      expect((yield* Effect.flip(auth.authorize(principal, "auth.manage"))).message).toBe(
        "principal is not authorized for action auth.manage"
      )
      yield* repo.unassignRole(principalId, "content-writer")
      expect(Exit.isFailure(yield* Effect.exit(auth.authorize(principal, "content.write")))).toBe(true)
    }))

  it.effect("a transient OIDC principal is denied without consulting roles", () =>
    Effect.gen(function*() {
      const auth = yield* Authentication
      // Even an id that does hold the role is refused when the principal is transient.
      const { principalId } = yield* seed(["content-writer", "auth-manager"], new Date(Date.UTC(2099, 0, 1)))
      const transient = {
        id: principalId,
        kind: "user" as const,
        displayName: "oidc:x",
        credential: "oidc" as const,
        transient: true
      }
      expect((yield* Effect.flip(auth.authorize(transient, "content.write")))._tag).toBe("Forbidden")
      expect((yield* Effect.flip(auth.authorize(transient, "auth.manage")))._tag).toBe("Forbidden")
      yield* auth.authorize({ ...transient, transient: false }, "content.write")
    }))
})
