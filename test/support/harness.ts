import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3"
import { HttpServer } from "@effect/platform"
import type { Scope } from "effect"
import { Effect, Either, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import pg from "pg"
import { inject } from "vitest"
import { AppLive } from "../../src/app.js"
import { BootstrapOutput } from "../../src/auth/bootstrap.js"
import { AuthRepositoryLive } from "../../src/auth/repository.js"
import { type RoleId } from "../../src/auth/schema.js"
import { type AppConfigShape, parseAppConfig } from "../../src/platform/config/config.js"
import type { RawSettings } from "../../src/platform/config/settings.js"
import { ImmutableResponses } from "../../src/platform/http/fast-path.js"
import { DatabaseLive, migrate } from "../../src/platform/storage/database.js"
import { quietInProcessSettings } from "./in-process.js"
import { seedTokenPrincipal } from "./tokens.js"

/**
 * Test harness: real PostgreSQL (a fresh database per call on the run's embedded
 * server) and real object stores (a temp directory, or a fresh bucket on the run's
 * s3rver). Nothing is mocked.
 */

const adminUrl = () => inject("pgAdminUrl")

const uniqueName = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`

const withAdmin = async <A>(f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: adminUrl() })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/** Creates an empty database; returns its URL and a function dropping it. */
export const createDatabase = async (): Promise<{ url: string; drop: () => Promise<void> }> => {
  const name = uniqueName("t")
  await withAdmin((c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(name)}`))
  const url = new URL(adminUrl())
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: () =>
      withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`)).then(() => {})
  }
}

/** A fresh, migrated database as a scoped Effect resource (dropped when the scope closes). */
export const freshDatabaseUrl = Effect.acquireRelease(
  Effect.promise(() => createDatabase()),
  (db) => Effect.promise(() => db.drop())
).pipe(Effect.map((db) => Redacted.make(db.url)))

/** SqlClient + PgClient + PgPool on a fresh, migrated database. */
export const TestDatabaseLive = Layer.unwrapScoped(
  Effect.map(freshDatabaseUrl, (url) => {
    const database = DatabaseLive({ url, maxConnections: 5 })
    return Layer.effectDiscard(migrate()).pipe(Layer.provideMerge(database))
  })
)

export interface TestS3 {
  readonly endpoint: string
  readonly bucket: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
}

/** A fresh bucket on the run's S3 server. */
export const createBucket = async (): Promise<TestS3> => {
  const bucket = uniqueName("b").replace(/_/g, "-")
  const endpoint = inject("s3Endpoint")
  const client = new S3Client({
    endpoint: `http://${endpoint}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: inject("s3AccessKeyId"), secretAccessKey: inject("s3SecretAccessKey") }
  })
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }))
  } finally {
    client.destroy()
  }
  return { endpoint, bucket, accessKeyId: inject("s3AccessKeyId"), secretAccessKey: inject("s3SecretAccessKey") }
}

export const tempDir = async (prefix = "imgsrv-test-") => mkdtemp(path.join(tmpdir(), prefix))

export type StoreKind = "filesystem" | "s3"

export interface TestApp {
  readonly baseUrl: string
  readonly config: AppConfigShape
  readonly databaseUrl: string
  readonly dataDir: string
  /** The S3 bucket in use, when `store` is `s3`. */
  readonly s3: TestS3 | undefined
  /** `fetch` against the app, with an optional bearer token and JSON body. */
  readonly request: (
    method: string,
    pathAndQuery: string,
    options?: {
      readonly token?: string
      readonly json?: unknown
      readonly body?: RequestInit["body"]
      readonly headers?: Record<string, string>
    }
  ) => Promise<Response>
  /** A principal holding `roles`, and a plaintext API token for it. */
  readonly tokenFor: (...roles: ReadonlyArray<RoleId>) => Promise<string>
  /** The responses the listener answers from memory (published manifests), keyed by path. */
  readonly immutableResponses: () => ImmutableResponses["Type"]
  /** What start-up printed as the one-time bootstrap banner ("" when it did not bootstrap). */
  readonly bootstrapBanner: () => string
  /** The bootstrap token from that banner (throws when there was none). */
  readonly bootstrapToken: () => string
  readonly close: () => Promise<void>
}

/** Just the HTTP side of an app: what request helpers need, so they also drive spawned processes. */
export type ApiClient = Pick<TestApp, "request">

/** An `ApiClient` for any imgsrv listening at `baseUrl` (e.g. a spawned process). */
export const apiClient = (baseUrl: string): ApiClient => ({
  request: (method, pathAndQuery, init = {}) => {
    const headers: Record<string, string> = { ...init.headers }
    if (init.token !== undefined) headers["authorization"] = `Bearer ${init.token}`
    let body = init.body
    if (init.json !== undefined) {
      body = JSON.stringify(init.json)
      headers["content-type"] ??= "application/json"
    }
    return fetch(`${baseUrl}${pathAndQuery}`, { method, headers, ...(body !== undefined ? { body } : {}) })
  }
})

/**
 * Starts the whole application in this process on 127.0.0.1 with a random port,
 * a fresh database and the chosen object store. Settings may be overridden.
 */
export const startTestApp = async (options: {
  readonly store?: StoreKind
  readonly settings?: Partial<RawSettings>
  /** Reuse a database (e.g. to run two app instances on one catalog). */
  readonly databaseUrl?: string
  /** Reuse a data dir / bucket with `databaseUrl` for multi-instance tests. */
  readonly dataDir?: string
  readonly s3?: TestS3
} = {}): Promise<TestApp> => {
  const store = options.store ?? "filesystem"
  const db = options.databaseUrl ? { url: options.databaseUrl, drop: async () => {} } : await createDatabase()
  const dataDir = options.dataDir ?? await tempDir()
  const s3 = store === "s3" ? options.s3 ?? await createBucket() : undefined
  const raw: RawSettings = {
    ...quietInProcessSettings(dataDir, db.url),
    "postgres-max-connections": "5",
    "cas-promotion-poll-interval": "200ms",
    "upload-expiry-poll-interval": "200ms",
    "publish-worker-poll-interval": "200ms",
    // Auth tests send many bad credentials from 127.0.0.1; the failed-auth limit (on by
    // default) is tested on its own, in test/platform/rate-limit.test.ts.
    "rate-limit-auth-failures": "0",
    // The collector's first run at start-up would move object-store counters and hold its
    // lock under tests that measure them; test/gc/ turns it on where it is the subject.
    "gc-enabled": "false",
    ...(s3
      ? {
        "s3-endpoint": s3.endpoint,
        "s3-bucket": s3.bucket,
        "s3-access-key-id": s3.accessKeyId,
        "s3-secret-access-key": s3.secretAccessKey,
        "s3-path-style": "true"
      }
      : {}),
    ...options.settings
  }
  const parsed = parseAppConfig(raw)
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  const config = parsed.right
  // The bootstrap banner goes to this buffer instead of the test runner's stdout.
  let banner = ""
  const runtime = ManagedRuntime.make(
    AppLive(config).pipe(Layer.provide(Layer.succeed(BootstrapOutput, { write: (text) => void (banner += text) })))
  )
  const address = await runtime.runPromise(HttpServer.HttpServer.pipe(Effect.map((s) => s.address)))
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
  const baseUrl = `http://127.0.0.1:${address.port}`

  const tokenRuntime = ManagedRuntime.make(
    AuthRepositoryLive.pipe(Layer.provide(DatabaseLive({ url: Redacted.make(db.url), maxConnections: 2 })))
  )

  const { request } = apiClient(baseUrl)

  const tokenFor = (...roles: ReadonlyArray<RoleId>) =>
    tokenRuntime.runPromise(
      seedTokenPrincipal(roles, new Date(Date.now() + 3_600_000), {
        displayName: `test ${roles.join("+") || "no roles"}`
      }).pipe(Effect.map(({ token }) => token.plaintext))
    )

  return {
    baseUrl,
    config,
    databaseUrl: db.url,
    dataDir,
    s3,
    request,
    tokenFor,
    immutableResponses: () =>
      Option.getOrThrowWith(
        runtime.runSync(Effect.serviceOption(ImmutableResponses)),
        () => new Error("this app has no catalog (ops-only mode)")
      ),
    bootstrapBanner: () => banner,
    bootstrapToken: () => {
      const match = /imgsrv_at_[A-Za-z0-9_-]+/.exec(banner)
      if (!match) throw new Error("this app did not print a bootstrap token")
      return match[0]
    },
    close: async () => {
      await tokenRuntime.dispose()
      await runtime.dispose()
      await db.drop()
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** Runs `f` with a scope closed afterwards (for Effect-based fixtures in plain tests). */
export const scoped = <A, E>(f: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(f))

export const optionValue = Option.getOrUndefined
