import { HttpApiMiddleware, HttpApiSecurity, HttpServerRequest } from "@effect/platform"
import { Context, Effect, Layer, Schema } from "effect"
import { Problem } from "../platform/problem.js"
import { Authentication } from "./authentication.js"
import { Forbidden, IdentityProviderUnavailable, Unauthorized } from "./errors.js"
import type { Action, Principal } from "./schema.js"

/** The principal behind the current request (provided by the security middleware). */
export class CurrentPrincipal extends Context.Tag("imgsrv/CurrentPrincipal")<CurrentPrincipal, Principal>() {}

const failure = Schema.Union(Problem(Unauthorized), Problem(Forbidden), Problem(IdentityProviderUnavailable))

/**
 * Protects an endpoint with `content.write`. Declared on endpoints (not groups) so it
 * runs before anything else of the route: 401 before 403 before validation.
 */
export class RequireContentWrite extends HttpApiMiddleware.Tag<RequireContentWrite>()("imgsrv/RequireContentWrite", {
  provides: CurrentPrincipal,
  failure,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Protects an endpoint with `auth.manage` (every `/v1/auth/*` route). */
export class RequireAuthManage extends HttpApiMiddleware.Tag<RequireAuthManage>()("imgsrv/RequireAuthManage", {
  provides: CurrentPrincipal,
  failure,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

// The security decoder only strips a case-sensitive "Bearer " prefix; the raw header
// is re-read so that the exact parsing rules of spec/auth.md §3.4 apply.
const guard = (action: Action) =>
  Effect.gen(function*() {
    const authentication = yield* Authentication
    return {
      bearer: () =>
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const principal = yield* authentication.authenticate(request.headers["authorization"])
          yield* authentication.authorize(principal, action)
          return principal
        })
    }
  })

export const RequireContentWriteLive = Layer.effect(RequireContentWrite, guard("content.write"))
export const RequireAuthManageLive = Layer.effect(RequireAuthManage, guard("auth.manage"))

export const AuthorizationLive = Layer.mergeAll(RequireContentWriteLive, RequireAuthManageLive)
