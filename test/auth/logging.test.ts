import { Effect, Logger, LogLevel } from "effect"
import { describe, expect, it } from "vitest"
import { isSecretKey, jsonLogger } from "../../src/platform/observability/logging.js"

/** Redaction of secret-looking log attributes (spec/auth.md §8.3; §9 items 69, 70). */

const render = (annotations: Record<string, unknown>) => {
  const lines: Array<string> = []
  const capture = Logger.map(jsonLogger, (line) => void lines.push(line))
  Effect.runSync(
    Effect.logInfo("record").pipe(
      Effect.annotateLogs(annotations),
      Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
      Logger.withMinimumLogLevel(LogLevel.Info)
    )
  )
  return JSON.parse(lines[0]!) as Record<string, unknown>
}

describe("log redaction", () => {
  it("masks every secret-looking key and keeps ids visible", () => {
    const secretKeys = [
      "authorization",
      "Authorization",
      "bearer_token",
      "api_token",
      "bootstrap-token",
      "password",
      "postgres_url",
      "secret_access_key",
      "session_token",
      "private_key",
      "access_key_id",
      "plaintext",
      "token"
    ]
    const record = render({
      ...Object.fromEntries(secretKeys.map((k) => [k, "secret-token"])),
      token_id: "ABC",
      principal_id: "principal_X",
      request_id: "r-1"
    })
    for (const key of secretKeys) {
      expect(isSecretKey(key), key).toBe(true)
      expect(record[key], key).toBe("[REDACTED]")
    }
    expect(record).toMatchObject({ token_id: "ABC", principal_id: "principal_X", request_id: "r-1" })
    expect(JSON.stringify(record)).not.toContain("secret-token")
  })

  it("never lets an api_token value through, whatever its shape", () => {
    const line = JSON.stringify(
      render({ api_token: "secret-token", apiToken: "secret-token", "API-Token": "secret-token" })
    )
    expect(line).not.toContain("secret-token")
  })
})
