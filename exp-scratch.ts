import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, HttpMiddleware, HttpServer, HttpRouter, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import * as http from "node:http"
import { apiMiddleware, makeRouteTable, serverMiddleware } from "/work/main/src/platform/http.ts"
const mode = process.argv[2]
const G = HttpApiGroup.make("ops").add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(HttpApiSchema.NoContent))
  .add(HttpApiEndpoint.get("j", "/j").addSuccess(Schema.Struct({ ok: Schema.Boolean, x: Schema.String })))
const Api = HttpApi.make("imgsrv").add(G)
const routes = makeRouteTable(Api)
const H = HttpApiBuilder.group(Api, "ops", (h) => h.handle("healthz", () => Effect.void).handle("j", () => Effect.succeed({ ok: true, x: "y".repeat(600) })))
let app: Layer.Layer<never, never, any>
if (mode === "router") {
  app = HttpRouter.empty.pipe(HttpRouter.get("/healthz", HttpServerResponse.empty({ status: 204 })), HttpServer.serve()) as any
} else {
  const api = HttpApiBuilder.api(Api).pipe(Layer.provide(H), ...(mode === "full" || mode === "amw" ? [Layer.provide(HttpApiBuilder.middleware(apiMiddleware({ routes })))] : []))
  app = (mode === "full" || mode === "smw" ? HttpApiBuilder.serve(serverMiddleware(routes, { tracing: false })) : HttpApiBuilder.serve()).pipe(Layer.provide(api))
}
const tracer = process.argv[3] === "notrace" ? Layer.setTracerEnabled(false) : Layer.empty
Layer.launch(app.pipe(Layer.provide(NodeHttpServer.layer(() => http.createServer(), { port: 18092, host: "127.0.0.1" })), Layer.provide(tracer))).pipe(NodeRuntime.runMain)
