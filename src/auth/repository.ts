import { SqlClient, type SqlError, SqlSchema } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { createHash } from "node:crypto"
import { dieOnSqlError } from "../platform/storage/sql-errors.js"
import { RuleAlreadyExists, RuleNotFound } from "./errors.js"
import { PrincipalId, PrincipalKind, RoleId, RuleId, TokenId } from "./schema.js"

// Rows are decoded with these schemas (SqlSchema): a row that does not match means the
// database and the code disagree, a defect like any other SQL failure.

/** A snake_case column decoded into a camelCase field of the domain type. */
const column = <A, I, R>(schema: Schema.Schema<A, I, R>, key: string) =>
  Schema.propertySignature(schema).pipe(Schema.fromKey(key))

export const TokenRow = Schema.Struct({
  id: TokenId,
  principalId: column(PrincipalId, "principal_id"),
  name: Schema.String,
  secretHash: column(Schema.Uint8ArrayFromSelf, "secret_hash"),
  expiresAt: column(Schema.DateFromSelf, "expires_at"),
  lastUsedAt: column(Schema.NullOr(Schema.DateFromSelf), "last_used_at"),
  revokedAt: column(Schema.NullOr(Schema.DateFromSelf), "revoked_at"),
  createdAt: column(Schema.DateFromSelf, "created_at")
})
export type TokenRow = typeof TokenRow.Type

export const PrincipalRow = Schema.Struct({
  id: PrincipalId,
  kind: PrincipalKind,
  displayName: column(Schema.String, "display_name"),
  attributes: Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  createdAt: column(Schema.DateFromSelf, "created_at")
})
export type PrincipalRow = typeof PrincipalRow.Type

/** A principal with its current role ids (sorted). */
export const PrincipalWithRolesRow = Schema.Struct({
  ...PrincipalRow.fields,
  roleIds: column(Schema.Array(RoleId), "role_ids")
})
export type PrincipalWithRolesRow = typeof PrincipalWithRolesRow.Type

/** The trust record of one OIDC issuer, shared by every rule naming it (spec/auth.md §5.2). */
export const ProviderRow = Schema.Struct({
  issuer: Schema.String,
  jwksUrl: column(Schema.String, "jwks_url"),
  audiences: Schema.Array(Schema.String),
  supportedSigningAlgorithms: column(Schema.Array(Schema.String), "supported_signing_algorithms"),
  /** Top-level claim names exposed to conditions. */
  forwardedClaims: column(Schema.Array(Schema.String), "forwarded_claims")
})
export type ProviderRow = typeof ProviderRow.Type

export const RuleRow = Schema.Struct({
  id: RuleId,
  displayName: column(Schema.String, "display_name"),
  provider: Schema.String,
  audience: Schema.String,
  /** The claims this rule asked for (the provider holds the issuer-wide union). */
  forwardedClaims: column(Schema.Array(Schema.String), "forwarded_claims"),
  /** Stored with the audience guard prepended. */
  condition: Schema.String,
  enabled: Schema.Boolean,
  roleIds: column(Schema.Array(RoleId), "role_ids")
})
export type RuleRow = typeof RuleRow.Type

export const NewPrincipal = Schema.Struct({
  id: PrincipalId,
  kind: PrincipalKind,
  displayName: Schema.String,
  attributes: Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})
export type NewPrincipal = typeof NewPrincipal.Type

export const NewToken = Schema.Struct({
  id: TokenId,
  principalId: PrincipalId,
  name: Schema.String,
  secretHash: Schema.Uint8ArrayFromSelf,
  expiresAt: Schema.DateFromSelf
})
export type NewToken = typeof NewToken.Type

/** A keyset page request: at most `limit` rows after the id `after`. */
const Page = Schema.Struct({ after: Schema.OptionFromSelf(Schema.String), limit: Schema.Number })

export interface RuleRecord {
  readonly id: RuleId
  readonly displayName: string
  readonly provider: string
  readonly audience: string
  readonly forwardedClaims: ReadonlyArray<string>
  readonly condition: string
  readonly enabled: boolean
  readonly roleIds: ReadonlyArray<RoleId>
}

/** Infrastructure failures are defects here: callers see only the expected outcomes. */
type Sql<A, E = never> = Effect.Effect<A, E>

/**
 * Advisory lock guarding "somebody holds auth-manager": bootstrap and the
 * unassignment of auth-manager serialise on it, so replicas starting together mint
 * one bootstrap token and two concurrent unassignments cannot remove the last two
 * holders at once. ("imgsrvAM" as a 64-bit number.)
 */
const AUTH_MANAGER_LOCK_KEY = "7596490406398948685"

/** A 64-bit advisory lock key per OIDC identity (first 8 bytes of a SHA-256). */
const identityLockKey = (provider: string, subject: string) =>
  createHash("sha256").update(`${provider}\u0000${subject}`, "utf8").digest().readBigInt64BE(0).toString()

/**
 * SQL of the auth control plane. No rules here: see authentication.ts, service.ts, bootstrap.ts.
 * The SQL boundary: a failing statement dies (a 500 without internal text, the cause in the
 * log), and the one expected outcome of a write (a taken or missing id) is the domain error.
 */
export class AuthRepository extends Context.Tag("imgsrv/AuthRepository")<AuthRepository, {
  /** Runs `effect` in one transaction (nested calls join the outer one). */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Inside a transaction: waits for, then holds until commit, the auth-manager lock. */
  readonly lockAuthManagers: Sql<void>
  /** Inside a transaction: serialises provisioning of one OIDC identity across replicas. */
  readonly lockIdentity: (provider: string, subject: string) => Sql<void>
  /** Makes sure both built-in roles and their actions exist (idempotent). */
  readonly ensureBuiltInRoles: (
    roles: ReadonlyArray<
      {
        readonly id: RoleId
        readonly displayName: string
        readonly description: string
        readonly actions: ReadonlyArray<string>
      }
    >
  ) => Sql<void>

  // Principals and roles
  readonly insertPrincipal: (principal: NewPrincipal) => Sql<PrincipalRow>
  readonly findPrincipal: (id: PrincipalId) => Sql<Option.Option<PrincipalWithRolesRow>>
  /** At most `limit` principals after the id `after`, by id (keyset). */
  readonly listPrincipals: (after: Option.Option<string>, limit: number) => Sql<ReadonlyArray<PrincipalWithRolesRow>>
  readonly assignRole: (principalId: PrincipalId, roleId: RoleId) => Sql<void>
  readonly unassignRole: (principalId: PrincipalId, roleId: RoleId) => Sql<boolean>
  readonly holdsRole: (principalId: PrincipalId, roleId: RoleId) => Sql<boolean>
  readonly countRoleHolders: (roleId: RoleId) => Sql<number>
  readonly actionsOf: (principalId: PrincipalId) => Sql<ReadonlyArray<string>>

  // API tokens and identity links
  readonly findToken: (id: TokenId) => Sql<Option.Option<TokenRow>>
  readonly touchToken: (id: TokenId) => Sql<void>
  readonly insertToken: (token: NewToken) => Sql<TokenRow>
  /** At most `limit` tokens of the principal after the id `after`, by id (keyset). */
  readonly listTokens: (
    principalId: PrincipalId,
    after: Option.Option<string>,
    limit: number
  ) => Sql<ReadonlyArray<TokenRow>>
  /** Sets `revoked_at` unless already set (the first revocation time is kept). */
  readonly revokeToken: (id: TokenId) => Sql<Option.Option<TokenRow>>
  readonly principalForIdentity: (provider: string, subject: string) => Sql<Option.Option<PrincipalRow>>
  readonly linkIdentity: (provider: string, subject: string, principalId: PrincipalId) => Sql<void>
  /** Links unless the identity is linked already; true when this call created the link. */
  readonly linkIdentityIfAbsent: (provider: string, subject: string, principalId: PrincipalId) => Sql<boolean>

  // OIDC providers and provisioning rules
  readonly findProvider: (issuer: string) => Sql<Option.Option<ProviderRow>>
  /** Inside a transaction: the provider row, locked until commit (inserted first when absent). */
  readonly lockProvider: (seed: ProviderRow) => Sql<ProviderRow>
  readonly updateProvider: (provider: ProviderRow) => Sql<void>
  /** At most `limit` rules after the id `after`, by id (keyset). */
  readonly listRules: (after: Option.Option<string>, limit: number) => Sql<ReadonlyArray<RuleRow>>
  readonly findRule: (id: RuleId) => Sql<Option.Option<RuleRow>>
  readonly enabledRulesFor: (provider: string) => Sql<ReadonlyArray<RuleRow>>
  /** Inserts a rule with its roles. */
  readonly insertRule: (rule: RuleRecord) => Sql<void, RuleAlreadyExists>
  /** Replaces a rule and its roles. */
  readonly replaceRule: (rule: RuleRecord) => Sql<void, RuleNotFound>
  readonly deleteRule: (id: RuleId) => Sql<void, RuleNotFound>
  /** The oldest principal provisioned for `provider`/`subject` by one of `ruleIds`. */
  readonly findRulePrincipal: (
    provider: string,
    subject: string,
    ruleIds: ReadonlyArray<RuleId>
  ) => Sql<Option.Option<PrincipalRow>>
  /** Whether `ruleId` names a rule, or a deleted one that provisioned principals (reconciliation's subjects). */
  readonly ruleIdKnown: (ruleId: RuleId) => Sql<boolean>
  /** Principals whose `provisioning_rule_id` is `ruleId` and who hold `roleId`, locked when `forUpdate`. */
  readonly principalsProvisionedBy: (
    ruleId: RuleId,
    roleId: RoleId,
    forUpdate: boolean
  ) => Sql<ReadonlyArray<PrincipalWithRolesRow>>
}>() {}

const TruthRow = Schema.Struct({ truth: Schema.Boolean })
const CountRow = Schema.Struct({ n: Schema.Number })
const ActionRow = Schema.Struct({ action: Schema.String })

export const AuthRepositoryLive = Layer.effect(
  AuthRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** The boolean `truth` column of a one-row question (`SELECT EXISTS (…) AS truth`). */
    const truth = (statement: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      SqlSchema.single({ Request: Schema.Void, Result: TruthRow, execute: () => statement })(undefined).pipe(
        Effect.map((row) => row.truth),
        Effect.orDie
      )

    const jsonb = (value: unknown) => value === null ? null : JSON.stringify(value)

    // `limit`: a page's LIMIT, bound as the statement's last parameter.
    const principalsWithRoles = (where: string, params: ReadonlyArray<unknown> = [], limit?: number) =>
      sql.unsafe(
        `SELECT p.id, p.kind, p.display_name, p.attributes, p.created_at,
                COALESCE(array_agg(pr.role_id ORDER BY pr.role_id) FILTER (WHERE pr.role_id IS NOT NULL), '{}') AS role_ids
         FROM auth_principals p
         LEFT JOIN auth_principal_roles pr ON pr.principal_id = p.id
         ${where}
         GROUP BY p.id
         ORDER BY p.id
         ${limit === undefined ? "" : `LIMIT $${params.length + 1}`}`,
        limit === undefined ? params : [...params, limit]
      )

    const ruleRows = (where: string, params: ReadonlyArray<unknown> = [], limit?: number) =>
      sql.unsafe(
        `SELECT r.id, r.display_name, r.provider, r.audience, r.forwarded_claims, r.condition, r.enabled,
                COALESCE(array_agg(rr.role_id ORDER BY rr.role_id) FILTER (WHERE rr.role_id IS NOT NULL), '{}') AS role_ids
         FROM auth_provisioning_rules r
         LEFT JOIN auth_provisioning_rule_roles rr ON rr.rule_id = r.id
         ${where}
         GROUP BY r.id
         ORDER BY r.id
         ${limit === undefined ? "" : `LIMIT $${params.length + 1}`}`,
        limit === undefined ? params : [...params, limit]
      )

    const writeRuleRoles = (ruleId: RuleId, roleIds: ReadonlyArray<RoleId>) =>
      Effect.gen(function*() {
        yield* sql`DELETE FROM auth_provisioning_rule_roles WHERE rule_id = ${ruleId}`
        for (const roleId of roleIds) {
          yield* sql`INSERT INTO auth_provisioning_rule_roles (rule_id, role_id) VALUES (${ruleId}, ${roleId})`
        }
      })

    const findPrincipal = SqlSchema.findOne({
      Request: PrincipalId,
      Result: PrincipalWithRolesRow,
      execute: (id) => principalsWithRoles("WHERE p.id = $1", [id])
    })
    const listPrincipals = SqlSchema.findAll({
      Request: Page,
      Result: PrincipalWithRolesRow,
      execute: ({ after, limit }) =>
        Option.match(after, {
          onNone: () => principalsWithRoles("", [], limit),
          onSome: (id) => principalsWithRoles("WHERE p.id > $1", [id], limit)
        })
    })
    const provisionedHolders = SqlSchema.findAll({
      Request: Schema.Struct({ ruleId: RuleId, roleId: RoleId }),
      Result: PrincipalWithRolesRow,
      execute: ({ roleId, ruleId }) =>
        principalsWithRoles(
          `WHERE p.attributes->>'provisioning_rule_id' = $1
            AND EXISTS (SELECT 1 FROM auth_principal_roles h WHERE h.principal_id = p.id AND h.role_id = $2)`,
          [ruleId, roleId]
        )
    })
    const insertPrincipal = SqlSchema.single({
      Request: NewPrincipal,
      Result: PrincipalRow,
      execute: (p) =>
        sql`
          INSERT INTO auth_principals (id, kind, display_name, attributes)
          VALUES (${p.id}, ${p.kind}, ${p.displayName}, ${jsonb(p.attributes)}::jsonb)
          RETURNING *`
    })
    const principalForIdentity = SqlSchema.findOne({
      Request: Schema.Struct({ provider: Schema.String, subject: Schema.String }),
      Result: PrincipalRow,
      execute: ({ provider, subject }) =>
        sql`
          SELECT p.* FROM auth_external_identities i
          JOIN auth_principals p ON p.id = i.principal_id
          WHERE i.provider = ${provider} AND i.subject = ${subject}`
    })
    const findRulePrincipal = SqlSchema.findOne({
      Request: Schema.Struct({ provider: Schema.String, subject: Schema.String, ruleIds: Schema.Array(RuleId) }),
      Result: PrincipalRow,
      execute: ({ provider, ruleIds, subject }) =>
        sql`
          SELECT * FROM auth_principals
          WHERE attributes->>'provider' = ${provider}
            AND attributes->>'subject' = ${subject}
            AND attributes->>'provisioning_rule_id' = ANY(${ruleIds}::text[])
          ORDER BY created_at, id
          LIMIT 1`
    })

    const findToken = SqlSchema.findOne({
      Request: TokenId,
      Result: TokenRow,
      execute: (id) => sql`SELECT * FROM auth_api_tokens WHERE id = ${id}`
    })
    const insertToken = SqlSchema.single({
      Request: NewToken,
      Result: TokenRow,
      execute: (t) =>
        sql`
          INSERT INTO auth_api_tokens (id, principal_id, name, secret_hash, expires_at)
          VALUES (${t.id}, ${t.principalId}, ${t.name}, ${Buffer.from(t.secretHash)}, ${t.expiresAt})
          RETURNING *`
    })
    const listTokens = SqlSchema.findAll({
      Request: Schema.Struct({ principalId: PrincipalId, ...Page.fields }),
      Result: TokenRow,
      execute: ({ after, limit, principalId }) =>
        sql`
          SELECT * FROM auth_api_tokens
          WHERE principal_id = ${principalId} AND ${
          Option.match(after, { onNone: () => sql.literal("TRUE"), onSome: (id) => sql`id > ${id}` })
        }
          ORDER BY id
          LIMIT ${limit}`
    })
    const revokeToken = SqlSchema.findOne({
      Request: TokenId,
      Result: TokenRow,
      execute: (id) =>
        sql`
          UPDATE auth_api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = ${id}
          RETURNING *`
    })

    const findProvider = SqlSchema.findOne({
      Request: Schema.String,
      Result: ProviderRow,
      execute: (issuer) =>
        sql`
          SELECT issuer, jwks_url, audiences, supported_signing_algorithms, forwarded_claims
          FROM auth_oidc_providers WHERE issuer = ${issuer}`
    })
    const lockedProvider = SqlSchema.single({
      Request: Schema.String,
      Result: ProviderRow,
      execute: (issuer) =>
        sql`
          SELECT issuer, jwks_url, audiences, supported_signing_algorithms, forwarded_claims
          FROM auth_oidc_providers WHERE issuer = ${issuer} FOR UPDATE`
    })
    const listRules = SqlSchema.findAll({
      Request: Page,
      Result: RuleRow,
      execute: ({ after, limit }) =>
        Option.match(after, {
          onNone: () => ruleRows("", [], limit),
          onSome: (id) => ruleRows("WHERE r.id > $1", [id], limit)
        })
    })
    const findRule = SqlSchema.findOne({
      Request: RuleId,
      Result: RuleRow,
      execute: (id) => ruleRows("WHERE r.id = $1", [id])
    })
    const enabledRulesFor = SqlSchema.findAll({
      Request: Schema.String,
      Result: RuleRow,
      execute: (provider) => ruleRows("WHERE r.enabled AND r.provider = $1", [provider])
    })

    return AuthRepository.of({
      // BEGIN/COMMIT failures die too; the wrapped effect's own errors pass through.
      transaction: (effect) => dieOnSqlError(sql.withTransaction(effect)),
      lockAuthManagers: sql`SELECT pg_advisory_xact_lock(${AUTH_MANAGER_LOCK_KEY}::bigint)`.pipe(
        Effect.asVoid,
        Effect.orDie
      ),
      lockIdentity: (provider, subject) =>
        sql`SELECT pg_advisory_xact_lock(${identityLockKey(provider, subject)}::bigint)`.pipe(
          Effect.asVoid,
          Effect.orDie
        ),
      ensureBuiltInRoles: (roles) =>
        Effect.forEach(roles, (role) =>
          Effect.gen(function*() {
            yield* sql`
              INSERT INTO auth_roles (id, display_name, description)
              VALUES (${role.id}, ${role.displayName}, ${role.description})
              ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name, description = EXCLUDED.description`
            for (const action of role.actions) {
              yield* sql`INSERT INTO auth_role_actions (role_id, action) VALUES (${role.id}, ${action})
                         ON CONFLICT DO NOTHING`
            }
          }), { discard: true }).pipe(Effect.orDie),

      insertPrincipal: (p) => insertPrincipal(p).pipe(Effect.orDie),
      findPrincipal: (id) => findPrincipal(id).pipe(Effect.orDie),
      listPrincipals: (after, limit) => listPrincipals({ after, limit }).pipe(Effect.orDie),
      assignRole: (principalId, roleId) =>
        sql`INSERT INTO auth_principal_roles (principal_id, role_id) VALUES (${principalId}, ${roleId})
            ON CONFLICT DO NOTHING`.pipe(Effect.asVoid, Effect.orDie),
      unassignRole: (principalId, roleId) =>
        sql`
          DELETE FROM auth_principal_roles WHERE principal_id = ${principalId} AND role_id = ${roleId}
          RETURNING principal_id`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),
      holdsRole: (principalId, roleId) =>
        truth(sql`
          SELECT EXISTS (SELECT 1 FROM auth_principal_roles WHERE principal_id = ${principalId} AND role_id = ${roleId}) AS truth`),
      countRoleHolders: (roleId) =>
        SqlSchema.single({
          Request: Schema.Void,
          Result: CountRow,
          execute: () => sql`SELECT count(*)::int AS n FROM auth_principal_roles WHERE role_id = ${roleId}`
        })(undefined).pipe(Effect.map((row) => row.n), Effect.orDie),
      actionsOf: (principalId) =>
        SqlSchema.findAll({
          Request: Schema.Void,
          Result: ActionRow,
          execute: () =>
            sql`
              SELECT DISTINCT ra.action FROM auth_principal_roles pr
              JOIN auth_role_actions ra ON ra.role_id = pr.role_id
              WHERE pr.principal_id = ${principalId}`
        })(undefined).pipe(Effect.map((rows) => rows.map((r) => r.action)), Effect.orDie),

      findToken: (id) => findToken(id).pipe(Effect.orDie),
      touchToken: (id) =>
        sql`UPDATE auth_api_tokens SET last_used_at = now() WHERE id = ${id}`.pipe(Effect.asVoid, Effect.orDie),
      insertToken: (t) => insertToken(t).pipe(Effect.orDie),
      listTokens: (principalId, after, limit) => listTokens({ principalId, after, limit }).pipe(Effect.orDie),
      revokeToken: (id) => revokeToken(id).pipe(Effect.orDie),
      principalForIdentity: (provider, subject) => principalForIdentity({ provider, subject }).pipe(Effect.orDie),
      linkIdentity: (provider, subject, principalId) =>
        sql`INSERT INTO auth_external_identities (provider, subject, principal_id)
            VALUES (${provider}, ${subject}, ${principalId})`.pipe(Effect.asVoid, Effect.orDie),
      linkIdentityIfAbsent: (provider, subject, principalId) =>
        sql`
          INSERT INTO auth_external_identities (provider, subject, principal_id)
          VALUES (${provider}, ${subject}, ${principalId})
          ON CONFLICT DO NOTHING RETURNING provider`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),

      findProvider: (issuer) => findProvider(issuer).pipe(Effect.orDie),
      lockProvider: (seed) =>
        Effect.gen(function*() {
          yield* sql`
            INSERT INTO auth_oidc_providers (issuer, jwks_url, audiences, supported_signing_algorithms, forwarded_claims)
            VALUES (${seed.issuer}, ${seed.jwksUrl}, ${seed.audiences}, ${seed.supportedSigningAlgorithms},
                    ${JSON.stringify(seed.forwardedClaims)}::jsonb)
            ON CONFLICT (issuer) DO NOTHING`
          return yield* lockedProvider(seed.issuer)
        }).pipe(Effect.orDie),
      updateProvider: (p) =>
        sql`
          UPDATE auth_oidc_providers
          SET jwks_url = ${p.jwksUrl}, audiences = ${p.audiences},
              supported_signing_algorithms = ${p.supportedSigningAlgorithms},
              forwarded_claims = ${JSON.stringify(p.forwardedClaims)}::jsonb, updated_at = now()
          WHERE issuer = ${p.issuer}`.pipe(Effect.asVoid, Effect.orDie),
      listRules: (after, limit) => listRules({ after, limit }).pipe(Effect.orDie),
      findRule: (id) => findRule(id).pipe(Effect.orDie),
      enabledRulesFor: (provider) => enabledRulesFor(provider).pipe(Effect.orDie),
      insertRule: (rule) =>
        Effect.gen(function*() {
          const inserted = yield* sql`
            INSERT INTO auth_provisioning_rules (id, display_name, provider, audience, forwarded_claims, condition, enabled)
            VALUES (${rule.id}, ${rule.displayName}, ${rule.provider}, ${rule.audience}, ${rule.forwardedClaims},
                    ${rule.condition}, ${rule.enabled})
            ON CONFLICT (id) DO NOTHING RETURNING id`
          if (inserted.length === 0) return yield* new RuleAlreadyExists({ ruleId: rule.id })
          yield* writeRuleRoles(rule.id, rule.roleIds)
        }).pipe(dieOnSqlError),
      replaceRule: (rule) =>
        Effect.gen(function*() {
          const updated = yield* sql`
            UPDATE auth_provisioning_rules
            SET display_name = ${rule.displayName}, provider = ${rule.provider}, audience = ${rule.audience},
                forwarded_claims = ${rule.forwardedClaims}, condition = ${rule.condition}, enabled = ${rule.enabled},
                updated_at = now()
            WHERE id = ${rule.id} RETURNING id`
          if (updated.length === 0) return yield* new RuleNotFound({ ruleId: rule.id })
          yield* writeRuleRoles(rule.id, rule.roleIds)
        }).pipe(dieOnSqlError),
      deleteRule: (id) =>
        sql`DELETE FROM auth_provisioning_rules WHERE id = ${id} RETURNING id`.pipe(
          Effect.orDie,
          Effect.flatMap((rows) => rows.length > 0 ? Effect.void : Effect.fail(new RuleNotFound({ ruleId: id })))
        ),
      findRulePrincipal: (provider, subject, ruleIds) =>
        findRulePrincipal({ provider, subject, ruleIds }).pipe(Effect.orDie),
      ruleIdKnown: (ruleId) =>
        truth(sql`
          SELECT EXISTS (SELECT 1 FROM auth_provisioning_rules WHERE id = ${ruleId})
              OR EXISTS (SELECT 1 FROM auth_principals WHERE attributes->>'provisioning_rule_id' = ${ruleId}) AS truth`),
      principalsProvisionedBy: (ruleId, roleId, forUpdate) =>
        Effect.gen(function*() {
          if (forUpdate) {
            // Lock the assignments being reconciled so a concurrent apply waits, then sees none.
            yield* sql`
              SELECT pr.principal_id FROM auth_principal_roles pr
              JOIN auth_principals p ON p.id = pr.principal_id
              WHERE pr.role_id = ${roleId} AND p.attributes->>'provisioning_rule_id' = ${ruleId}
              FOR UPDATE OF pr`
          }
          return yield* provisionedHolders({ ruleId, roleId })
        }).pipe(Effect.orDie)
    })
  })
)
