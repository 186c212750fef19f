import { HttpApiBuilder, HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { apiOf } from "../platform/http/routes.js"
import { AuthGroup } from "./api.js"
import { CurrentPrincipal } from "./middleware.js"
import { AuthManagement } from "./service.js"

/** Handlers of `/v1/auth/*`: call the management service with the acting principal; no rules here. */

/** Responses carrying a token plaintext must never be stored by a cache. */
const noStore = HttpApp.appendPreResponseHandler((_request, response) =>
  Effect.succeed(HttpServerResponse.setHeader(response, "cache-control", "no-store"))
)

export const AuthHandlersLive = HttpApiBuilder.group(
  apiOf(AuthGroup),
  "auth",
  (handlers) =>
    Effect.gen(function*() {
      const management = yield* AuthManagement
      return handlers
        .handle("listRoles", () => Effect.succeed({ roles: management.listRoles() }))
        .handle("listPrincipals", () => Effect.map(management.listPrincipals, (principals) => ({ principals })))
        .handle("createPrincipal", ({ payload }) =>
          Effect.flatMap(CurrentPrincipal, (actor) => management.createPrincipal(payload, actor)))
        .handle("getPrincipal", ({ path }) =>
          management.getPrincipal(path.principal_id))
        .handle("assignRole", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.assignRole(path.principal_id, path.role_id, actor)))
        .handle("unassignRole", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.unassignRole(path.principal_id, path.role_id, actor)))
        .handle("issueApiToken", ({ path, payload }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            const issued = yield* management.issueToken(path.principal_id, payload, actor)
            yield* noStore
            return issued
          }))
        .handle("listApiTokens", ({ path }) =>
          Effect.map(management.listTokens(path.principal_id), (tokens) => ({ api_tokens: tokens })))
        .handle("revokeApiToken", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.revokeToken(path.token_id, actor)))
        .handle("listRules", () =>
          Effect.map(management.listRules, (rules) => ({ rules })))
        .handle("createRule", ({ payload }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.createRule(payload, actor)))
        .handle("getRule", ({ path }) =>
          management.getRule(path.rule_id))
        .handle("replaceRule", ({ path, payload }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.replaceRule(path.rule_id, payload, actor)))
        .handle("deleteRule", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.deleteRule(path.rule_id, actor)))
        .handle("previewReconciliation", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.reconcileRule(path.rule_id, false, actor)))
        .handle("applyReconciliation", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.reconcileRule(path.rule_id, true, actor)))
    })
)
