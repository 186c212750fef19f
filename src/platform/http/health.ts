import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import { OpsGroup } from "../../contract/ops.js"
import { BlobStore } from "../storage/blob-store/blob-store.js"
import { apiOf } from "./routes.js"

/** Why the process is not ready to take traffic (logged, never sent to clients). */
export class NotReady extends Data.TaggedError("NotReady")<{ readonly reason: string }> {}

/** Why the process must be restarted (logged where it is decided, never sent to clients). */
export class NotLive extends Data.TaggedError("NotLive")<{ readonly reason: string }> {}

/**
 * What `/healthz` asks: whether this process can still serve once its dependencies are
 * back. It fails only for what a restart of the process fixes — the embedded PostgreSQL
 * server it owns could not be brought back — never for a dependency that is merely away.
 */
export class Liveness extends Context.Tag("imgsrv/Liveness")<Liveness, {
  readonly check: Effect.Effect<void, NotLive>
}>() {}

/** Nothing this process owns can fail for good (external PostgreSQL, ops-only mode). */
export const AlwaysLive = Layer.succeed(Liveness, { check: Effect.void })

/** What `/readyz` asks. */
export class Readiness extends Context.Tag("imgsrv/Readiness")<Readiness, {
  readonly check: Effect.Effect<void, NotReady>
}>() {}

/** Ready when PostgreSQL answers a query and the blob store's health check passes. */
export const ReadinessLive = Layer.effect(
  Readiness,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* BlobStore
    const database = sql`SELECT 1`.pipe(
      Effect.timeout("2 seconds"),
      Effect.mapError((e) => new NotReady({ reason: `postgres: ${e.message}` }))
    )
    const storage = store.health.pipe(
      Effect.timeout("2 seconds"),
      Effect.mapError((e) => new NotReady({ reason: `blob store: ${e.message}` }))
    )
    return { check: Effect.all([database, storage], { concurrency: 2, discard: true }) }
  })
)

/** Ops-only mode has no database: never ready for catalog traffic. */
export const ReadinessWithoutDatabase = Layer.succeed(Readiness, {
  check: Effect.fail(new NotReady({ reason: "no database configured (ops-only mode)" }))
})

export { OpsGroup }

export const OpsHandlersLive = HttpApiBuilder.group(
  apiOf(OpsGroup),
  "ops",
  (handlers) =>
    handlers
      .handleRaw("healthz", () =>
        Effect.flatMap(Liveness, (liveness) =>
          liveness.check.pipe(
            Effect.as(HttpServerResponse.empty({ status: 204 })),
            // The reason was logged when it happened; a probe every few seconds need not repeat it.
            Effect.catchAll(() => Effect.succeed(HttpServerResponse.text("Service Unavailable\n", { status: 503 })))
          )))
      .handleRaw("readyz", () =>
        Effect.flatMap(Readiness, (readiness) =>
          readiness.check.pipe(
            Effect.as(HttpServerResponse.empty({ status: 204 })),
            Effect.catchAll((notReady) =>
              Effect.logWarning("not ready").pipe(
                Effect.annotateLogs({ reason: notReady.reason }),
                Effect.as(HttpServerResponse.text("Service Unavailable\n", { status: 503 }))
              )
            )
          )))
)
