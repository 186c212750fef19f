import { Effect } from "effect"
import { AuthRepository } from "../../src/auth/repository.js"
import { PrincipalId, type RoleId } from "../../src/auth/schema.js"
import { type MintedToken, mintToken, randomBase32 } from "../../src/auth/tokens.js"

/**
 * A fresh service principal holding `roles`, with an API token expiring at `expiresAt`,
 * written through the auth repository the way an auth-manager's requests would (tests and
 * benchmarks need a credential before any exists). `link: false` leaves the token without
 * its identity row (a half-written credential).
 */
export const seedTokenPrincipal = (
  roles: ReadonlyArray<RoleId>,
  expiresAt: Date,
  options: { readonly displayName?: string; readonly link?: boolean } = {}
): Effect.Effect<{ readonly principalId: PrincipalId; readonly token: MintedToken }, never, AuthRepository> =>
  Effect.gen(function*() {
    const repo = yield* AuthRepository
    const principal = yield* repo.insertPrincipal({
      id: PrincipalId.make(`principal_${randomBase32()}`),
      kind: "service",
      displayName: options.displayName ?? "test",
      attributes: null
    })
    const token = mintToken()
    yield* repo.insertToken({
      id: token.id,
      principalId: principal.id,
      name: "test",
      secretHash: token.secretHash,
      expiresAt
    })
    if (options.link ?? true) yield* repo.linkIdentity("api-token", token.id, principal.id)
    for (const role of roles) yield* repo.assignRole(principal.id, role)
    return { principalId: principal.id, token }
  })
