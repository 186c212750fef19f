import { Option, ParseResult, Schema, type SchemaAST } from "effect"
import { optionalTimestamp } from "../contract/optional-members.js"
import { formatTimestamp } from "../contract/timestamp.js"
import { unguardedCondition } from "./oidc/conditions.js"
import { PrincipalWithRolesRow, ProviderRow, RuleRow, TokenRow } from "./repository.js"
import { ApiTokenView, PrincipalView, RuleView } from "./schema.js"

/**
 * How auth's domain rows become the management API's views, declared as transformations
 * (one way: a view drops what the API never shows, such as a token's secret hash, so the
 * row cannot be rebuilt from it).
 */

const oneWay = (what: string) => (view: unknown, _: SchemaAST.ParseOptions, ast: SchemaAST.Transformation) =>
  ParseResult.fail(new ParseResult.Forbidden(ast, view, `${what} cannot be rebuilt from its view`))

/** A principal: `attributes` only when it has some. */
export const PrincipalViewFromRow = Schema.transformOrFail(Schema.typeSchema(PrincipalWithRolesRow), PrincipalView, {
  strict: true,
  decode: (row) =>
    ParseResult.succeed({
      id: row.id,
      kind: row.kind,
      display_name: row.displayName,
      ...(row.attributes !== null && Object.keys(row.attributes).length > 0 ? { attributes: row.attributes } : {}),
      role_ids: [...row.roleIds]
    }),
  encode: oneWay("a principal")
})

/** A token: never its secret; `last_used_at` and `revoked_at` once they happened. */
export const ApiTokenViewFromRow = Schema.transformOrFail(Schema.typeSchema(TokenRow), ApiTokenView, {
  strict: true,
  decode: (row) =>
    ParseResult.succeed({
      id: row.id,
      principal_id: row.principalId,
      name: row.name,
      expires_at: formatTimestamp(row.expiresAt),
      ...optionalTimestamp("last_used_at", row.lastUsedAt),
      ...optionalTimestamp("revoked_at", row.revokedAt)
    }),
  encode: oneWay("a token")
})

/**
 * A rule with its issuer's trust record (when stored): the forwarded claims are the
 * issuer-wide union, the condition is shown without the audience guard it is stored with.
 */
export const RuleViewFromRow = Schema.transformOrFail(
  Schema.Struct({ rule: Schema.typeSchema(RuleRow), provider: Schema.OptionFromSelf(Schema.typeSchema(ProviderRow)) }),
  RuleView,
  {
    strict: true,
    decode: ({ provider, rule }) => {
      const forwarded = Option.match(provider, { onNone: () => rule.forwardedClaims, onSome: (p) => p.forwardedClaims })
      return ParseResult.succeed({
        id: rule.id,
        display_name: rule.displayName,
        issuer_url: rule.provider,
        audience: rule.audience,
        ...(forwarded.length > 0 ? { forwarded_claims: [...forwarded] } : {}),
        condition: unguardedCondition(rule.audience, rule.condition),
        assign_role_ids: [...rule.roleIds],
        enabled: rule.enabled
      })
    },
    encode: oneWay("a rule")
  }
)

export const principalView: (row: PrincipalWithRolesRow) => PrincipalView = Schema.decodeSync(PrincipalViewFromRow)
export const tokenView: (row: TokenRow) => ApiTokenView = Schema.decodeSync(ApiTokenViewFromRow)
export const ruleView = (rule: RuleRow, provider: Option.Option<ProviderRow>): RuleView =>
  decodeRule({ rule, provider })
const decodeRule = Schema.decodeSync(RuleViewFromRow)
