import { HttpApiBuilder, HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { cursorField, paginate } from "../platform/http/pagination.js"
import { apiOf } from "../platform/http/routes.js"
import { AuthGroup } from "./api.js"
import { CurrentPrincipal } from "./middleware.js"
import { AuthManagement } from "./service.js"

/** Handlers of `/v1/auth/*`: call the management service with the acting principal; no rules here. */

/** Principals, tokens and rules are listed by id: the cursor is the last id served. */
const IdKey = Schema.String
const byId = (item: { readonly id: string }) => item.id

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
        .handle("listPrincipals", () =>
          Effect.map(
            paginate(IdKey, byId, management.listPrincipals),
            ({ items, next_cursor }) => ({ principals: items, ...cursorField(next_cursor) })
          ))
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
          Effect.map(
            paginate(IdKey, byId, (after, limit) =>
              management.listTokens(path.principal_id, after, limit)),
            ({ items, next_cursor }) => ({ api_tokens: items, ...cursorField(next_cursor) })
          ))
        .handle("revokeApiToken", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.revokeToken(path.token_id, actor)))
        .handle("listRules", () =>
          Effect.map(
            paginate(IdKey, byId, management.listRules),
            ({ items, next_cursor }) => ({ rules: items, ...cursorField(next_cursor) })
          ))
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
