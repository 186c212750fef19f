import { HttpApiBuilder, HttpMiddleware, HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { Duration } from "effect"
import { Effect, Layer, Option } from "effect"
import type * as http from "node:http"
import type { ListenAddress, TlsFiles } from "../config/config.js"
import { type ClientPolicy, type HttpMetrics, makeHttpMetrics, serverMiddleware } from "./access-log.js"
import { JsonBodyLimitLive } from "./api-middleware.js"
import { answerCached, CachedDocuments } from "./cached-documents.js"
import type { TrustedProxies } from "./client-address.js"
import { answerImmutable, ImmutableResponses } from "./fast-path.js"
import { ListenFailed } from "./listen.js"
import { makeRateLimiter, type RateLimitSettings } from "./rate-limit.js"
import { ROUTER_CONFIG, type RouteTable, spanNameOf } from "./routes.js"
import { makeApiNodeServer } from "./tls.js"

/**
 * The `HttpServer` of the API: @effect/platform-node's listener (listen, address,
 * close), with request dispatch of our own. Each request is first offered to the
 * cached documents (cached-documents.ts — the Simple Streams documents) and the
 * immutable responses (fast-path.ts `answerImmutable` — a published manifest), answered
 * from memory without the cost of running the Effect app, and otherwise handed to the
 * app exactly as `NodeHttpServer.layer` would. WebSocket upgrades are not offered
 * (the API has none): an `Upgrade` request is an ordinary request.
 */
const listener = (
  server: http.Server,
  listen: ListenAddress,
  options: { readonly tracing: boolean; readonly metrics: HttpMetrics; readonly clients: ClientPolicy }
): Layer.Layer<HttpServer.HttpServer, ListenFailed> =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function*() {
      const node = yield* NodeHttpServer.make(() => server, {
        port: listen.port,
        ...(listen.host ? { host: listen.host } : {})
      }).pipe(Effect.mapError((error) => new ListenFailed({ address: listen, error: error.cause })))
      const responses = yield* Effect.serviceOption(ImmutableResponses)
      const documents = yield* Effect.serviceOption(CachedDocuments)
      return HttpServer.make({
        address: node.address,
        serve: (app, middleware) =>
          Effect.gen(function*() {
            const handle = middleware === undefined
              ? yield* NodeHttpServer.makeHandler(app)
              : yield* NodeHttpServer.makeHandler(app, middleware)
            const runtime = yield* Effect.runtime<never>()
            // With tracing on, every request must run in the app to get its span.
            const immutable = Option.isSome(responses) && !options.tracing
              ? answerImmutable(responses.value, runtime, options.metrics, options.clients)
              : undefined
            const cached = Option.isSome(documents) && !options.tracing
              ? answerCached(documents.value, runtime, options.metrics, options.clients)
              : undefined
            const onRequest = immutable === undefined && cached === undefined
              ? handle
              : (request: http.IncomingMessage, response: http.ServerResponse) => {
                if (cached?.(request, response) === true || immutable?.(request, response) === true) return
                handle(request, response)
              }
            yield* Effect.addFinalizer(() => Effect.sync(() => server.off("request", onRequest)))
            server.on("request", onRequest)
          })
      })
    })
  )

/**
 * The public API listener. On shutdown it stops accepting connections, lets
 * in-flight requests finish for up to `shutdownTimeout`, then cuts whatever is
 * left (a stuck download must not hold the process forever).
 */
export const ApiServerLive = (options: {
  readonly listen: ListenAddress
  readonly tls: Option.Option<TlsFiles>
  readonly shutdownTimeout: Duration.Duration
  readonly routes: RouteTable
  readonly tracing: boolean
  readonly trustedProxies: TrustedProxies
  readonly rateLimits: RateLimitSettings
}) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    // HTTPS when TLS files are configured (tls.ts); otherwise plain HTTP.
    const server = yield* makeApiNodeServer(options.tls, {
      // Large parts stream for minutes; only the header phase gets a deadline.
      requestTimeout: 0,
      headersTimeout: 30_000
    })
    server.keepAliveTimeout = 65_000
    // Limits count per listener, in this process's memory (rate-limit.ts), by effect's
    // `Clock` (read synchronously: the limiter runs before any fiber of the request).
    const clock = yield* Effect.clock
    const clients: ClientPolicy = {
      trustedProxies: options.trustedProxies,
      rateLimiter: makeRateLimiter(options.rateLimits, () => clock.unsafeCurrentTimeMillis())
    }
    const metrics = makeHttpMetrics(() => {
      const bound = server.address()
      return bound === null || typeof bound === "string" ? undefined : { address: bound.address, port: bound.port }
    })

    // Built after `serve` (it is provided to this layer), so it is released first:
    // drain happens while the request handler is still attached.
    const drain = Layer.scopedDiscard(Effect.gen(function*() {
      const address = yield* HttpServer.addressFormattedWith((addr) => Effect.succeed(addr))
      yield* Effect.logInfo("http server listening").pipe(Effect.annotateLogs({ name: "api", addr: address }))
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          yield* Effect.logInfo("stopping http server").pipe(Effect.annotateLogs({ name: "api" }))
          const closed = Effect.async<void>((resume) => {
            if (!server.listening) return resume(Effect.void)
            server.close(() => resume(Effect.void))
            // close() only drops connections idle at that moment; keep-alive connections
            // whose last response finishes later must be dropped as they become idle.
            const sweep = setInterval(() => server.closeIdleConnections(), 100)
            server.closeIdleConnections()
            server.once("close", () => clearInterval(sweep))
            return Effect.sync(() => clearInterval(sweep))
          })
          const drained = yield* closed.pipe(
            Effect.interruptible,
            Effect.timeout(options.shutdownTimeout),
            Effect.option
          )
          if (drained._tag === "None") {
            yield* Effect.logWarning("shutdown timeout reached; closing remaining connections")
            server.closeAllConnections()
          }
        })
      )
    }))

    const documents = yield* Effect.serviceOption(CachedDocuments)
    const localWrite = Option.map(documents, (d) => d.localWrite)
    const serve = HttpApiBuilder.serve(
      serverMiddleware(options.routes, {
        tracing: options.tracing,
        metrics,
        clients,
        ...(Option.isSome(localWrite) ? { localWrite: localWrite.value } : {})
      })
    )
      .pipe(
        HttpMiddleware.withSpanNameGenerator(spanNameOf(options.routes)),
        // Without an exporter a request span is a no-op that still costs URL parsing and
        // header redaction on every request: skip it altogether.
        (layer) => options.tracing ? layer : HttpMiddleware.withTracerDisabledWhen(layer, () => true),
        Layer.provide(JsonBodyLimitLive),
        Layer.locally(HttpRouter.currentRouterConfig, ROUTER_CONFIG)
      )
    return drain.pipe(
      Layer.provide(serve),
      Layer.provideMerge(
        Layer.merge(
          listener(server, options.listen, { tracing: options.tracing, metrics, clients }),
          NodeHttpServer.layerContext
        )
      )
    )
  }))
