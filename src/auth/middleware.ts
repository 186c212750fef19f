import { HttpServerRequest } from "@effect/platform"
import { Effect, Layer } from "effect"
import { CurrentPrincipal, RequireAuthManage, RequireContentWrite } from "./api.js"
import { Authentication } from "./authentication.js"
import type { Action } from "./schema.js"

// The tags are declarations of the API (auth/api.ts, which the typed client imports);
// their implementations, which authenticate and authorize, are here.
export { CurrentPrincipal, RequireAuthManage, RequireContentWrite }

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
