import { HttpServer } from "@effect/platform"
import { Effect, Either, Layer, ManagedRuntime, Redacted } from "effect"
import { AppLive } from "../../src/app.js"
import { AuthRepositoryLive } from "../../src/auth/repository.js"
import { type AppConfigShape, parseAppConfig } from "../../src/platform/config/config.js"
import { DatabaseLive } from "../../src/platform/storage/database.js"
import { quietInProcessSettings } from "../../test/support/in-process.js"
import { seedTokenPrincipal } from "../../test/support/tokens.js"

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
  const parsed = parseAppConfig({ ...quietInProcessSettings(dataDir, dbUrl), ...settings })
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
    const { token } = await auth.runPromise(
      seedTokenPrincipal(["content-writer"], new Date(Date.now() + ttlMs), { displayName: "bench" })
    )
    return token.plaintext
  } finally {
    await auth.dispose()
  }
}
