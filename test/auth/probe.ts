import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpServer } from "@effect/platform"
import { Effect, Either, Layer, ManagedRuntime, Redacted, Schema } from "effect"
import { AuthLive } from "../../src/auth/layers.js"
import { CurrentPrincipal, RequireContentWrite } from "../../src/auth/middleware.js"
import { AppConfig, defaultRawSettings, parseAppConfig } from "../../src/platform/config.js"
import { DatabaseLive } from "../../src/platform/database.js"
import { API_ID, apiMiddleware, makeRouteTable } from "../../src/platform/http.js"
import { ApiServerLive } from "../../src/platform/http-server.js"
import { LoggingLive } from "../../src/platform/logging.js"

/**
 * A content-write route for auth tests while the content routes (uploads, images)
 * live on other branches: the real security middleware, the real auth layers and the
 * real database of a running test app, served by the real HTTP plumbing (problem
 * rendering, WWW-Authenticate). Its payload is strict JSON, to show that 401/403
 * come before body validation.
 */

const ProbeGroup = HttpApiGroup.make("probe")
  .add(
    HttpApiEndpoint.post("write", "/v1/probe/content")
      .middleware(RequireContentWrite)
      .setPayload(Schema.Struct({ n: Schema.Number }).annotations({ parseOptions: { onExcessProperty: "error" } }))
      .addSuccess(Schema.Struct({ principal_id: Schema.String, credential: Schema.String }))
  )
  .add(HttpApiEndpoint.get("anonymous", "/v1/probe/anonymous").addSuccess(Schema.Struct({ ok: Schema.Boolean })))

const ProbeApi = HttpApi.make(API_ID).add(ProbeGroup)

export interface Probe {
  readonly baseUrl: string
  /** `POST /v1/probe/content` with `{n: 1}` (or `body`) and the given Authorization header. */
  readonly write: (authorization?: string, body?: string) => Promise<Response>
  readonly anonymous: (authorization?: string) => Promise<Response>
  readonly close: () => Promise<void>
}

export const startProbe = async (options: {
  readonly databaseUrl: string
  readonly oidcCaFile?: string
  readonly verbosity?: "debug" | "error"
}): Promise<Probe> => {
  const parsed = parseAppConfig({
    ...defaultRawSettings(),
    "listen": "127.0.0.1:0",
    "postgres-url": options.databaseUrl,
    "oidc-ca-file": options.oidcCaFile ?? ""
  })
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  const routes = makeRouteTable(ProbeApi)
  const handlers = HttpApiBuilder.group(ProbeApi, "probe", (h) =>
    h
      .handle("write", () => Effect.map(CurrentPrincipal, (p) => ({ principal_id: p.id, credential: p.credential })))
      .handle("anonymous", () => Effect.succeed({ ok: true })))
  const api = HttpApiBuilder.api(ProbeApi).pipe(
    Layer.provide(handlers),
    Layer.provide(AuthLive),
    Layer.provide(HttpApiBuilder.middleware(apiMiddleware({ routes })))
  )
  const server = ApiServerLive({
    listen: parsed.right.listen,
    shutdownTimeout: parsed.right.shutdownTimeout,
    routes,
    tracing: false
  }).pipe(
    Layer.provide(api),
    Layer.provide(DatabaseLive({ url: Redacted.make(options.databaseUrl), maxConnections: 3 })),
    Layer.provide(Layer.succeed(AppConfig, parsed.right)),
    Layer.provide(LoggingLive("json", options.verbosity ?? "error"))
  )
  const runtime = ManagedRuntime.make(server)
  const address = await runtime.runPromise(HttpServer.HttpServer.pipe(Effect.map((s) => s.address)))
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
  const baseUrl = `http://127.0.0.1:${address.port}`
  const headers = (authorization?: string): Record<string, string> =>
    authorization === undefined ? {} : { authorization }
  return {
    baseUrl,
    write: (authorization, body = JSON.stringify({ n: 1 })) =>
      fetch(`${baseUrl}/v1/probe/content`, { method: "POST", headers: headers(authorization), body }),
    anonymous: (authorization) => fetch(`${baseUrl}/v1/probe/anonymous`, { headers: headers(authorization) }),
    close: () => runtime.dispose()
  }
}
