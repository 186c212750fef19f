import { Context, DateTime, Duration, Effect, Layer, Option } from "effect"
import { formatTimestamp } from "../contract/timestamp.js"
import { AuthRepository } from "./repository.js"
import { BUILT_IN_ROLES, type PrincipalId, type TokenId } from "./schema.js"
import { AuthIds } from "./tokens.js"

/**
 * First start: when no principal holds `auth-manager`, create the principal
 * "bootstrap auth manager", a 24 h API token named `bootstrap` and the role, and
 * print the token once on stdout (spec/auth.md §4).
 *
 * Check and creation run in ONE transaction under an advisory transaction lock
 * (shared with auth-manager unassignment), so replicas starting together on an empty
 * database mint exactly one token, and a failure part-way leaves nothing behind. The
 * banner is printed only after the commit: a token is never shown that does not exist.
 */

export const BOOTSTRAP_TOKEN_TTL = Duration.hours(24)
export const BOOTSTRAP_PRINCIPAL_NAME = "bootstrap auth manager"
export const BOOTSTRAP_TOKEN_NAME = "bootstrap"

/**
 * Where the one-time banner goes: stdout (never the structured log, which is on
 * stderr and may be shipped elsewhere). A Reference so tests can capture it.
 */
export class BootstrapOutput extends Context.Reference<BootstrapOutput>()("imgsrv/BootstrapOutput", {
  defaultValue: () => ({
    write: (text: string): void => {
      process.stdout.write(text)
    }
  })
}) {}

export interface BootstrapResult {
  readonly principalId: PrincipalId
  readonly tokenId: TokenId
  readonly expiresAt: Date
  readonly plaintext: string
}

/** The banner: the token line first, so `imgsrv_at_[A-Za-z0-9_-]+` finds it as the first match. */
export const bootstrapBanner = (result: BootstrapResult): string =>
  [
    `imgsrv bootstrap token (one-time): ${result.plaintext}`,
    `principal_id: ${result.principalId}`,
    `token_id: ${result.tokenId}`,
    `expires_at: ${formatTimestamp(result.expiresAt)}`,
    ""
  ].join("\n")

/** Runs bootstrap; Some when this call created the bootstrap principal. */
export const runBootstrap = Effect.gen(function*() {
  const repo = yield* AuthRepository
  const ids = yield* AuthIds
  const created = yield* repo.transaction(Effect.gen(function*() {
    yield* repo.lockAuthManagers
    yield* repo.ensureBuiltInRoles(BUILT_IN_ROLES)
    if ((yield* repo.countRoleHolders("auth-manager")) > 0) return Option.none<BootstrapResult>()
    const now = yield* DateTime.now
    // Whole seconds, so the printed expires_at is exactly the stored one.
    const expiresAt = new Date(
      Math.floor(DateTime.toEpochMillis(DateTime.addDuration(now, BOOTSTRAP_TOKEN_TTL)) / 1000) * 1000
    )
    const principal = yield* repo.insertPrincipal({
      id: yield* ids.principalId,
      kind: "service",
      displayName: BOOTSTRAP_PRINCIPAL_NAME,
      attributes: { bootstrap: true }
    })
    const token = yield* ids.token
    yield* repo.insertToken({
      id: token.id,
      principalId: principal.id,
      name: BOOTSTRAP_TOKEN_NAME,
      secretHash: token.secretHash,
      expiresAt
    })
    yield* repo.linkIdentity("api-token", token.id, principal.id)
    yield* repo.assignRole(principal.id, "auth-manager")
    return Option.some<BootstrapResult>({
      principalId: principal.id,
      tokenId: token.id,
      expiresAt,
      plaintext: token.plaintext
    })
  }))
  if (Option.isSome(created)) {
    const result = created.value
    const output = yield* BootstrapOutput
    output.write(bootstrapBanner(result))
    yield* Effect.logInfo("bootstrap auth manager created").pipe(
      Effect.annotateLogs({
        operation: "auth.bootstrap_admin",
        principal_id: result.principalId,
        token_id: result.tokenId,
        expires_at: formatTimestamp(result.expiresAt)
      })
    )
  }
  return created
}).pipe(Effect.withSpan("auth.bootstrap"))

/** Bootstrap as a start-up step: after migrations, before the listener serves. */
export const AuthBootstrapLive = Layer.effectDiscard(runBootstrap)
