import { HttpApiBuilder, HttpApiScalar, OpenApi } from "@effect/platform"
import type { HttpApi } from "@effect/platform"
import type { Redacted } from "effect"
import { Effect, Layer, Option } from "effect"
import { DOCS_PATH, DOCS_ROUTES, ImgsrvApi, OPENAPI_PATH, OpsOnlyApi } from "./api.js"
import { AuthApiLive, AuthBackgroundLive, AuthLive, AuthStartupLive } from "./auth/layers.js"
import { buildInfo } from "./build-info.js"
import { CatalogApiLive, CatalogBackgroundLive, CatalogCacheLive, CatalogSharedLive } from "./catalog/layers.js"
import { GcApiLive, GcBackgroundLive } from "./gc/layers.js"
import { AppConfig, type AppConfigShape, describeConfig } from "./platform/config/config.js"
import { apiMiddleware } from "./platform/http/api-middleware.js"
import { CachedDocumentsLive } from "./platform/http/cached-documents.js"
import {
  AlwaysLive,
  Liveness,
  NotLive,
  OpsHandlersLive,
  ReadinessLive,
  ReadinessWithoutDatabase
} from "./platform/http/health.js"
import { makeRouteTable } from "./platform/http/routes.js"
import { ApiServerLive } from "./platform/http/server.js"
import { LoggingLive } from "./platform/observability/logging.js"
import { MetricsServerLive, ScrapeCollectorsLive } from "./platform/observability/metrics.js"
import { TracingLive } from "./platform/observability/tracing.js"
import { BlobStore } from "./platform/storage/blob-store/blob-store.js"
import { makeFilesystemBlobStore } from "./platform/storage/blob-store/filesystem.js"
import { instrumentBlobStore } from "./platform/storage/blob-store/instrumented.js"
import { DatabaseLive, migrate, PoolMetricsLive } from "./platform/storage/database.js"
import { startEmbeddedPostgres } from "./platform/storage/embedded-postgres.js"
import { PublishingApiLive, PublishingBackgroundLive, PublishingSharedLive } from "./publishing/layers.js"
import { RetentionApiLive, RetentionBackgroundLive, RetentionSharedLive } from "./retention/layers.js"
import { StreamsApiLive, StreamsBackgroundLive } from "./streams/layers.js"
import { UploadsApiLive, UploadsBackgroundLive, UploadsSharedLive } from "./uploads/layers.js"
import { WebhooksApiLive, WebhooksBackgroundLive, WebhooksSharedLive } from "./webhooks/layers.js"

/**
 * Composition root: which layers make up a running imgsrv for a given
 * configuration. `main.ts` launches it; tests build it with their own config.
 */

const routes = makeRouteTable(ImgsrvApi, DOCS_ROUTES)

/**
 * PostgreSQL: the operator's URL, or an embedded server under the data dir (supervised: its
 * failure for good is what `/healthz` reports). Migrated before anything uses it.
 */
const DatabaseFromConfig = (config: AppConfigShape) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const db = config.database
    let url: Redacted.Redacted<string>
    let liveness = AlwaysLive
    if (db._tag === "embedded") {
      const embedded = yield* startEmbeddedPostgres(db.dataDir, { restart: db.restart })
      url = embedded.url
      liveness = Layer.succeed(Liveness, {
        check: Effect.mapError(embedded.liveness, (down) => new NotLive({ reason: down.message }))
      })
      yield* Effect.logInfo("embedded mode: PostgreSQL and blobs live in the data directory").pipe(
        Effect.annotateLogs({ data_dir: config.dataDir })
      )
    } else if (db._tag === "external") {
      url = db.url
    } else {
      return yield* Effect.dieMessage("DatabaseFromConfig used in ops-only mode")
    }
    const { connect, statement } = config.postgresTimeouts
    // On a connection of their own, without the statement timeout: a migration may run for
    // minutes, and replicas starting together wait for it on the advisory lock.
    yield* migrate().pipe(
      Effect.provide(DatabaseLive({ url, maxConnections: 1, timeouts: { connect, statement: Option.none() } }))
    )
    const database = DatabaseLive({
      url,
      maxConnections: config.postgresMaxConnections,
      timeouts: { connect, statement: Option.some(statement) }
    })
    return Layer.merge(database, liveness)
  }))

/** The blob store the configuration names, wrapped with metrics and spans. */
export const BlobStoreFromConfig = (config: AppConfigShape) =>
  Layer.scoped(
    BlobStore,
    Effect.gen(function*() {
      const storage = config.storage
      // The S3 driver (and the AWS SDK, ~12 MiB resident) is loaded only when it is the store.
      const store = storage._tag === "s3"
        ? yield* (yield* Effect.promise(() => import("./platform/storage/blob-store/s3.js"))).makeS3BlobStore({
          ...storage.s3,
          sessionToken: Option.getOrUndefined(storage.s3.sessionToken)
        })
        : yield* makeFilesystemBlobStore(storage.root)
      yield* Effect.logInfo("blob store configured").pipe(
        Effect.annotateLogs(
          storage._tag === "s3"
            ? { driver: "s3", endpoint: storage.s3.endpoint, bucket: storage.s3.bucket }
            : { driver: "filesystem", root: storage.root }
        )
      )
      return instrumentBlobStore(store)
    })
  )

/**
 * Every HttpApi group's handlers: the ops routes and each domain's `XxxApiLive` (its
 * `layers.ts`), behind the security middlewares of `AuthLive`, which every group uses.
 */
const ApiHandlersLive = Layer.mergeAll(
  OpsHandlersLive,
  AuthApiLive,
  UploadsApiLive,
  CatalogApiLive,
  PublishingApiLive,
  StreamsApiLive,
  WebhooksApiLive,
  GcApiLive,
  RetentionApiLive
).pipe(
  Layer.provide(AuthLive),
  Layer.provide(ReadinessLive)
)

/** Each domain's background loops and scrape-time gauges, and the pool's, beside the API. */
const BackgroundLive = Layer.mergeAll(
  AuthBackgroundLive,
  UploadsBackgroundLive,
  CatalogBackgroundLive,
  PublishingBackgroundLive,
  StreamsBackgroundLive,
  WebhooksBackgroundLive,
  GcBackgroundLive,
  RetentionBackgroundLive,
  PoolMetricsLive
)

/**
 * What a domain's two halves (or another domain) share, one instance each: repositories
 * and in-process wake signals (each domain's `XxxSharedLive`).
 */
const SharedDomainLive = Layer.mergeAll(
  UploadsSharedLive,
  CatalogSharedLive,
  PublishingSharedLive,
  WebhooksSharedLive,
  RetentionSharedLive
)

/** The API listener serving `api` (either flavour), with the OpenAPI document and its viewer. */
const apiListener = <E, R>(config: AppConfigShape, api: Layer.Layer<HttpApi.Api, E, R>) =>
  ApiServerLive({
    listen: config.listen,
    tls: config.tls,
    shutdownTimeout: config.shutdownTimeout,
    routes,
    tracing: Option.isSome(config.otel),
    trustedProxies: config.trustedProxies,
    rateLimits: config.rateLimits
  }).pipe(
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: OPENAPI_PATH })),
    Layer.provide(HttpApiScalar.layer({ path: DOCS_PATH })),
    Layer.provide(api)
  )

/** The full service: API listener, background loops, metrics listener. */
const FullServiceLive = (config: AppConfigShape) => {
  const api = HttpApiBuilder.api(ImgsrvApi.annotate(OpenApi.Version, buildInfo.version)).pipe(
    Layer.provide(ApiHandlersLive),
    Layer.provide(HttpApiBuilder.middleware(apiMiddleware({ routes })))
  )
  const server = apiListener(config, api).pipe(
    // After migrations, before the listener serves: the first auth-manager exists.
    Layer.provide(AuthStartupLive)
  )
  return Layer.mergeAll(server, BackgroundLive).pipe(
    Layer.provide(SharedDomainLive),
    // The published manifests, encoded: read by the catalog and the listener (catalog/manifest-cache.ts).
    // Also an output of the service: tests look into it.
    Layer.provideMerge(CatalogCacheLive(routes)),
    // The Simple Streams documents, kept rendered and served by the listener (streams/cache.ts).
    Layer.provideMerge(CachedDocumentsLive(routes)),
    Layer.provide(BlobStoreFromConfig(config)),
    Layer.provide(DatabaseFromConfig(config))
  )
}

/** Ops-only mode: health, readiness (never ready) and metrics; every other route 503. */
const OpsOnlyServiceLive = (config: AppConfigShape) => {
  const api = HttpApiBuilder.api(OpsOnlyApi).pipe(
    Layer.provide(OpsHandlersLive),
    Layer.provide(Layer.merge(ReadinessWithoutDatabase, AlwaysLive)),
    Layer.provide(HttpApiBuilder.middleware(apiMiddleware({ routes, unavailableExcept: ["ops", "docs"] })))
  )
  return apiListener(config, api)
}

/** Everything a running imgsrv is, for one configuration. */
export const AppLive = (config: AppConfigShape) => {
  const service = config.database._tag === "none" ? OpsOnlyServiceLive(config) : FullServiceLive(config)
  const metrics = Option.match(config.metrics, {
    onNone: () => Layer.empty,
    onSome: (m) =>
      MetricsServerLive({
        ...m,
        target: {
          serviceName: Option.match(config.otel, { onNone: () => "imgsrv", onSome: (o) => o.serviceName }),
          serviceVersion: buildInfo.version
        }
      })
  })
  const announce = Layer.effectDiscard(
    Effect.logInfo("imgsrv starting").pipe(Effect.annotateLogs(describeConfig(config)))
  )
  return Layer.mergeAll(service, metrics).pipe(
    Layer.provide(announce),
    Layer.provide(ScrapeCollectorsLive),
    Layer.provide(Layer.succeed(AppConfig, config)),
    Layer.provide(TracingLive(config.otel, buildInfo.version)),
    Layer.provide(LoggingLive(config.logFormat, config.verbosity))
  )
}
