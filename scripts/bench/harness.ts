import { HttpServer } from "@effect/platform"
import { Effect, Either, Layer, ManagedRuntime, Redacted } from "effect"
import { AppLive } from "../../src/app.js"
import { AuthRepository, AuthRepositoryLive } from "../../src/auth/repository.js"
import { PrincipalId } from "../../src/auth/schema.js"
import { mintToken, randomBase32 } from "../../src/auth/tokens.js"
import { type AppConfigShape, defaultRawSettings, parseAppConfig } from "../../src/platform/config/config.js"
import { DatabaseLive } from "../../src/platform/storage/database.js"

/** How every benchmark ends: exit 0, or the error's stack on stderr and exit 1. */
export const runBench = (main: () => Promise<void>): void => {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
      process.exit(1)
    }
  )
}

/**
 * The whole app in this process on an ephemeral port, quiet (errors only, no metrics
 * listener), on `dataDir` and the PostgreSQL at `dbUrl`; `settings` override the defaults.
 */
export const startInProcessApp = async (
  dataDir: string,
  dbUrl: string,
  settings: Readonly<Record<string, string>> = {},
  check: (config: AppConfigShape) => void = () => {}
) => {
  const parsed = parseAppConfig({
    ...defaultRawSettings(),
    "listen": "127.0.0.1:0",
    "metrics-listen": "",
    "log-format": "json",
    "verbosity": "error",
    "data-dir": dataDir,
    "postgres-url": dbUrl,
    ...settings
  })
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  const config = parsed.right
  check(config)
  const app = ManagedRuntime.make(AppLive(config))
  const address = await app.runPromise(HttpServer.HttpServer.pipe(Effect.map((s) => s.address)))
  const base = `http://127.0.0.1:${address._tag === "TcpAddress" ? address.port : 0}`
  return { app, base, config }
}

/**
 * A content-writer API token valid for `ttlMs`, made the way an operator's auth-manager
 * would (through the auth repository, on a migrated database); returns the plaintext.
 */
export const mintWriterToken = async (dbUrl: string, ttlMs: number): Promise<string> => {
  const auth = ManagedRuntime.make(
    AuthRepositoryLive.pipe(Layer.provide(Layer.orDie(DatabaseLive({ url: Redacted.make(dbUrl), maxConnections: 1 }))))
  )
  try {
    return await auth.runPromise(Effect.gen(function*() {
      const repo = yield* AuthRepository
      const principal = yield* repo.insertPrincipal({
        id: PrincipalId.make(`principal_${randomBase32()}`),
        kind: "service",
        displayName: "bench",
        attributes: null
      })
      const minted = mintToken()
      yield* repo.insertToken({
        id: minted.id,
        principalId: principal.id,
        name: "bench",
        secretHash: minted.secretHash,
        expiresAt: new Date(Date.now() + ttlMs)
      })
      yield* repo.linkIdentity("api-token", minted.id, principal.id)
      yield* repo.assignRole(principal.id, "content-writer")
      return minted.plaintext
    }))
  } finally {
    await auth.dispose()
  }
}
