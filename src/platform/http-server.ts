import { HttpApiBuilder, HttpMiddleware, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer } from "effect"
import * as http from "node:http"
import type { ListenAddress } from "./config.js"
import { JsonBodyLimitLive, type RouteTable, serverMiddleware, spanNameOf } from "./http.js"

/**
 * The public API listener. On shutdown it stops accepting connections, lets
 * in-flight requests finish for up to `shutdownTimeout`, then cuts whatever is
 * left (a stuck download must not hold the process forever).
 */
export const ApiServerLive = (options: {
  readonly listen: ListenAddress
  readonly shutdownTimeout: Duration.Duration
  readonly routes: RouteTable
  readonly tracing: boolean
}) =>
  Layer.suspend(() => {
    const server = http.createServer({
      // Large parts stream for minutes; only the header phase gets a deadline.
      requestTimeout: 0,
      headersTimeout: 30_000
    })
    server.keepAliveTimeout = 65_000

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
          const drained = yield* closed.pipe(Effect.interruptible, Effect.timeout(options.shutdownTimeout), Effect.option)
          if (drained._tag === "None") {
            yield* Effect.logWarning("shutdown timeout reached; closing remaining connections").pipe(
              Effect.annotateLogs({ open_connections: "unknown" })
            )
            server.closeAllConnections()
          }
        })
      )
    }))

    const serve = HttpApiBuilder.serve(serverMiddleware(options.routes, { tracing: options.tracing })).pipe(
      HttpMiddleware.withSpanNameGenerator(spanNameOf(options.routes)),
      Layer.provide(JsonBodyLimitLive)
    )
    return drain.pipe(
      Layer.provide(serve),
      Layer.provideMerge(NodeHttpServer.layer(() => server, {
        port: options.listen.port,
        ...(options.listen.host ? { host: options.listen.host } : {})
      }))
    )
  })
