import { Effect, Layer, Redacted } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import pg from "pg"
import { describe, expect, it } from "vitest"
import { BootstrapOutput, runBootstrap } from "../../src/auth/bootstrap.js"
import { AuthRepository, AuthRepositoryLive } from "../../src/auth/repository.js"
import { PrincipalId, RuleId, TokenId } from "../../src/auth/schema.js"
import { AuthIds, hashSecret, TOKEN_PREFIX } from "../../src/auth/tokens.js"
import { DatabaseLive, migrate } from "../../src/platform/storage/database.js"
import { createDatabase, startTestApp } from "../support/harness.js"
import { freePort, type ImgsrvProcess, spawnImgsrv, waitForStatus } from "../support/process.js"

/**
 * Bootstrap of the first auth-manager, in real processes: once across replicas, in
 * the embedded default too, printed on stdout only (spec/auth.md §4; §9 items 25–30, 72).
 * The tutorial's steps after it are in tutorial.test.ts; secrets in a whole debug-level
 * run are in secrets.test.ts.
 */

const TOKEN = /imgsrv_at_[A-Za-z0-9_-]+/g

const countRows = async (url: string, table: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n
  } finally {
    await client.end()
  }
}

const started = async (proc: ImgsrvProcess, port: number) => {
  await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204, 60_000)
  return proc
}

describe("bootstrap across replicas", () => {
  it("two servers starting together on one empty database print exactly one token; a restart prints none", async () => {
    const db = await createDatabase()
    const procs: Array<ImgsrvProcess> = []
    try {
      const ports = [await freePort(), await freePort()]
      const env = (port: number) => ({
        IMGSRV_POSTGRES_URL: db.url,
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: "",
        IMGSRV_LOG_FORMAT: "json"
      })
      procs.push(spawnImgsrv({ env: env(ports[0]!) }), spawnImgsrv({ env: env(ports[1]!) }))
      await Promise.all(procs.map((p, i) => started(p, ports[i]!)))
      const stdouts = procs.map((p) => p.stdout())
      const tokens = stdouts.flatMap((out) => out.match(TOKEN) ?? [])
      expect(tokens).toHaveLength(1)
      const banner = stdouts.find((out) => out !== "")!
      expect(stdouts.filter((out) => out !== "")).toHaveLength(1)
      expect(banner.split("\n")[0]).toBe(`imgsrv bootstrap token (one-time): ${tokens[0]}`)
      expect(banner).toMatch(/\nprincipal_id: principal_[A-Z2-7]{26}\ntoken_id: [A-Z2-7]{26}\nexpires_at: \S+Z\n$/)
      // Nothing half-made by the loser.
      expect(await countRows(db.url, "auth_principals")).toBe(1)
      expect(await countRows(db.url, "auth_api_tokens")).toBe(1)

      // The token works against either replica.
      for (const port of ports) {
        const response = await fetch(`http://127.0.0.1:${port}/v1/auth/roles`, {
          headers: { authorization: `Bearer ${tokens[0]}` }
        })
        expect(response.status).toBe(200)
      }
      await Promise.all(procs.splice(0).map((p) => p.stop()))

      const port = await freePort()
      const again = spawnImgsrv({ env: env(port) })
      procs.push(again)
      await started(again, port)
      expect(again.stdout()).toBe("")
      expect(again.stderr()).not.toContain("bootstrap auth manager created")
    } finally {
      await Promise.all(procs.map((p) => p.stop()))
      await db.drop()
    }
  })
})

describe("bootstrap in one process", () => {
  it("takes the principal id and the token from AuthIds, so a test can fix them", async () => {
    const db = await createDatabase()
    try {
      const id = TokenId.make("A".repeat(26))
      const secret = "B".repeat(26)
      const written: Array<string> = []
      const result = await Effect.runPromise(
        Effect.gen(function*() {
          yield* migrate()
          return yield* runBootstrap
        }).pipe(
          Effect.provideService(AuthIds, {
            principalId: Effect.succeed(PrincipalId.make("principal_FIXED")),
            ruleId: Effect.succeed(RuleId.make("rule-fixed")),
            token: Effect.succeed({
              id,
              secret,
              plaintext: `${TOKEN_PREFIX}${id}_${secret}`,
              secretHash: hashSecret(secret)
            })
          }),
          Effect.provideService(BootstrapOutput, { write: (text) => void written.push(text) }),
          Effect.provide(
            AuthRepositoryLive.pipe(Layer.provideMerge(DatabaseLive({ url: Redacted.make(db.url), maxConnections: 2 })))
          )
        )
      )
      expect(result._tag).toBe("Some")
      expect(written.join("")).toMatch(
        new RegExp(
          `^imgsrv bootstrap token \\(one-time\\): imgsrv_at_${id}_${secret}\nprincipal_id: principal_FIXED\ntoken_id: ${id}\n`
        )
      )
    } finally {
      await db.drop()
    }
  })

  it("prints nothing when an auth-manager already exists, and again after the role is lost (recovery)", async () => {
    const db = await createDatabase()
    try {
      await Effect.runPromise(
        Effect.gen(function*() {
          yield* migrate()
          const repo = yield* AuthRepository
          yield* repo.insertPrincipal({
            id: PrincipalId.make("principal_SEEDED"),
            kind: "user",
            displayName: "seeded admin",
            attributes: null
          })
          yield* repo.assignRole(PrincipalId.make("principal_SEEDED"), "auth-manager")
        }).pipe(
          Effect.provide(
            AuthRepositoryLive.pipe(Layer.provideMerge(DatabaseLive({ url: Redacted.make(db.url), maxConnections: 2 })))
          )
        )
      )
      const seeded = await startTestApp({ databaseUrl: db.url })
      expect(seeded.bootstrapBanner()).toBe("")
      await seeded.close()

      // Recovery documented in docs/publishers.md (bootstrap): remove the auth-manager assignments, restart.
      const client = new pg.Client({ connectionString: db.url })
      await client.connect()
      await client.query("DELETE FROM auth_principal_roles WHERE role_id = 'auth-manager'")
      await client.end()
      const recovered = await startTestApp({ databaseUrl: db.url })
      const token = recovered.bootstrapToken()
      const roles = await recovered.request("GET", "/v1/auth/roles", { token })
      expect(roles.status).toBe(200)
      const second = await startTestApp({ databaseUrl: db.url })
      expect(second.bootstrapBanner()).toBe("")
      await second.close()
      await recovered.close()
    } finally {
      await db.drop()
    }
  })

  it("issues a 24 h token named bootstrap whose principal holds only auth-manager", async () => {
    const app = await startTestApp()
    try {
      const token = app.bootstrapToken()
      const expiresAt = /expires_at: (\S+)/.exec(app.bootstrapBanner())![1]!
      expect(expiresAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
      expect(Math.abs(Date.parse(expiresAt) - (Date.now() + 24 * 3600_000))).toBeLessThan(60_000)
      const principalId = /principal_id: (\S+)/.exec(app.bootstrapBanner())![1]!
      const principal = await (await app.request("GET", `/v1/auth/principals/${principalId}`, { token })).json()
      expect(principal).toEqual({
        id: principalId,
        kind: "service",
        display_name: "bootstrap auth manager",
        attributes: { bootstrap: true },
        role_ids: ["auth-manager"]
      })
      const tokens = await (await app.request("GET", `/v1/auth/principals/${principalId}/api-tokens`, { token }))
        .json() as {
          api_tokens: Array<Record<string, unknown>>
        }
      expect(tokens.api_tokens).toHaveLength(1)
      expect(tokens.api_tokens[0]).toMatchObject({ name: "bootstrap", expires_at: expiresAt })
    } finally {
      await app.close()
    }
  })
})

describe("the embedded default", () => {
  it("bootstraps on a fresh data directory; the printed token manages auth; the log carries no token", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-auth-embedded-"))
    await chmod(dir, 0o755) // as root, embedded PostgreSQL runs as "postgres"
    const port = await freePort()
    const proc = spawnImgsrv({
      env: {
        IMGSRV_DATA_DIR: dir,
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: "",
        IMGSRV_LOG_FORMAT: "json"
      }
    })
    try {
      await started(proc, port)
      const out = proc.stdout()
      const token = out.match(TOKEN)![0]
      expect(out.split("\n")[0]).toBe(`imgsrv bootstrap token (one-time): ${token}`)
      const principal = await fetch(`http://127.0.0.1:${port}/v1/auth/principals`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ kind: "service", display_name: "publisher" })
      })
      expect(principal.status).toBe(201)
      const record = proc.stderr().split("\n").filter((l) => l.includes("bootstrap auth manager created"))
      expect(record).toHaveLength(1)
      expect(JSON.parse(record[0]!)).toMatchObject({ operation: "auth.bootstrap_admin", token_id: expect.any(String) })
      expect(proc.stderr()).not.toMatch(TOKEN)
      expect(proc.stderr()).not.toContain(token.slice(token.lastIndexOf("_") + 1))
    } finally {
      expect(await proc.stop()).toBe(0)
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe("without a database (ops-only mode)", () => {
  it("every /v1/auth route is 503 auth service is not configured, and nothing is printed", async () => {
    const port = await freePort()
    const proc = spawnImgsrv({
      env: { IMGSRV_EMBEDDED: "false", IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "" }
    })
    try {
      await waitForStatus(`http://127.0.0.1:${port}/healthz`, 204)
      for (
        const [method, route] of [["GET", "/v1/auth/roles"], ["POST", "/v1/auth/principals"], [
          "DELETE",
          "/v1/auth/api-tokens/x"
        ]]
      ) {
        const response = await fetch(`http://127.0.0.1:${port}${route}`, {
          method,
          headers: { authorization: "Bearer imgsrv_at_whatever" }
        })
        expect(response.status).toBe(503)
        expect(((await response.json()) as { detail: string }).detail).toBe("auth service is not configured")
      }
    } finally {
      expect(await proc.stop()).toBe(0)
    }
    expect(proc.stdout()).toBe("")
  })
})
