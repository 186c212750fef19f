import {
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiSchema,
  HttpServerResponse,
  OpenApi
} from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import { BlobStore } from "./blob-store/blob-store.js"
import { apiOf } from "./http.js"

/** Why the process is not ready to take traffic (logged, never sent to clients). */
export class NotReady extends Data.TaggedError("NotReady")<{ readonly reason: string }> {}

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

export const OpsGroup = HttpApiGroup.make("ops", { topLevel: true })
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(HttpApiSchema.NoContent)
      .annotate(OpenApi.Description, "Liveness: 204 whenever the process serves HTTP.")
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(HttpApiSchema.NoContent)
      .addError(HttpApiSchema.Text().annotations(HttpApiSchema.annotations({ status: 503, description: "Not ready" })))
      .annotate(
        OpenApi.Description,
        "Readiness: 204 when PostgreSQL and the blob store answer, else 503 with a plain-text body."
      )
  )
  .annotate(OpenApi.Description, "Operational endpoints")

export const OpsHandlersLive = HttpApiBuilder.group(
  apiOf(OpsGroup),
  "ops",
  (handlers) =>
    handlers
      .handle("healthz", () => Effect.void)
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
