import { Effect, Exit, Redacted, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import type { TestProject } from "vitest/node"
import { startEmbeddedPostgres } from "../../src/platform/storage/embedded-postgres.js"
import { startS3Server } from "./s3-server.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL of the run's embedded PostgreSQL (database `postgres`). */
    pgAdminUrl: string
    /** The run's S3 server (s3rver): `host:port` and static credentials. */
    s3Endpoint: string
    s3AccessKeyId: string
    s3SecretAccessKey: string
  }
}

/**
 * One real PostgreSQL server and one S3 server for the whole run; each test file
 * creates its own database and bucket on them (test/support/harness.ts).
 */
export default async function setup(project: TestProject) {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-test-pg-"))
  // As root, PostgreSQL runs as user "postgres", which must be able to enter the dir.
  await chmod(dir, 0o755)
  const scope = Effect.runSync(Scope.make())
  const pg = await Effect.runPromise(
    startEmbeddedPostgres(path.join(dir, "postgres"), { database: "postgres" }).pipe(Scope.extend(scope))
  )
  const s3 = await startS3Server()
  project.provide("pgAdminUrl", Redacted.value(pg.url))
  project.provide("s3Endpoint", s3.endpoint)
  project.provide("s3AccessKeyId", s3.accessKeyId)
  project.provide("s3SecretAccessKey", s3.secretAccessKey)
  return async () => {
    await s3.stop()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(dir, { recursive: true, force: true })
  }
}
