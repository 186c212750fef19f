import { HttpApiBuilder, HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { cursorField, paginate } from "../platform/http/pagination.js"
import { apiOf } from "../platform/http/routes.js"
import { AuthGroup } from "./api.js"
import { ApiTokenNotFound, PrincipalNotFound, RuleNotFound } from "./errors.js"
import { CurrentPrincipal } from "./middleware.js"
import { PrincipalId, RuleId, TokenId } from "./schema.js"
import { AuthManagement } from "./service.js"

/** Handlers of `/v1/auth/*`: call the management service with the acting principal; no rules here. */

/**
 * A path parameter as the id the service takes. Text that cannot be such an id (what the
 * database checks; the router never hands over an empty segment) names nothing: the 404
 * the lookup would have answered.
 */
const pathId = <A, E>(schema: Schema.Schema<A, string>, notFound: (raw: string) => E) => (raw: string) =>
  Effect.mapError(Schema.decode(schema)(raw), () => notFound(raw))
const principalIdOf = pathId(PrincipalId, (principalId) => new PrincipalNotFound({ principalId }))
const tokenIdOf = pathId(TokenId, (tokenId) => new ApiTokenNotFound({ tokenId }))
const ruleIdOf = pathId(RuleId, (ruleId) => new RuleNotFound({ ruleId }))

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
          Effect.flatMap(principalIdOf(path.principal_id), management.getPrincipal))
        .handle("assignRole", ({ path }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            return yield* management.assignRole(yield* principalIdOf(path.principal_id), path.role_id, actor)
          }))
        .handle("unassignRole", ({ path }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            return yield* management.unassignRole(yield* principalIdOf(path.principal_id), path.role_id, actor)
          }))
        .handle("issueApiToken", ({ path, payload }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            const issued = yield* management.issueToken(yield* principalIdOf(path.principal_id), payload, actor)
            yield* noStore
            return issued
          }))
        .handle("listApiTokens", ({ path }) =>
          Effect.flatMap(principalIdOf(path.principal_id), (principalId) =>
            Effect.map(
              paginate(IdKey, byId, (after, limit) =>
                management.listTokens(principalId, after, limit)),
              ({ items, next_cursor }) => ({ api_tokens: items, ...cursorField(next_cursor) })
            )))
        .handle("revokeApiToken", ({ path }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            return yield* management.revokeToken(yield* tokenIdOf(path.token_id), actor)
          }))
        .handle("listRules", () =>
          Effect.map(
            paginate(IdKey, byId, management.listRules),
            ({ items, next_cursor }) => ({ rules: items, ...cursorField(next_cursor) })
          ))
        .handle("createRule", ({ payload }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.createRule(payload, actor)))
        .handle("getRule", ({ path }) =>
          Effect.flatMap(ruleIdOf(path.rule_id), management.getRule))
        .handle("replaceRule", ({ path, payload }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            return yield* management.replaceRule(yield* ruleIdOf(path.rule_id), payload, actor)
          }))
        .handle("deleteRule", ({ path }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentPrincipal
            return yield* management.deleteRule(yield* ruleIdOf(path.rule_id), actor)
          }))
        .handle("previewReconciliation", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.reconcileRule(path.rule_id, false, actor)))
        .handle("applyReconciliation", ({ path }) =>
          Effect.flatMap(CurrentPrincipal, (actor) =>
            management.reconcileRule(path.rule_id, true, actor)))
    })
)
