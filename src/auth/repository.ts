import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Context, Effect, Layer, Option } from "effect"
import type { PrincipalKind, RoleId } from "./schema.js"

export interface TokenRow {
  readonly id: string
  readonly principal_id: string
  readonly name: string
  readonly secret_hash: Uint8Array
  readonly expires_at: Date
  readonly last_used_at: Date | null
  readonly revoked_at: Date | null
  readonly created_at: Date
}

export interface PrincipalRow {
  readonly id: string
  readonly kind: PrincipalKind
  readonly display_name: string
  readonly attributes: Record<string, unknown> | null
  readonly created_at: Date
}

/** SQL of the auth control plane. No rules here: see authentication.ts and service.ts. */
export class AuthRepository extends Context.Tag("imgsrv/AuthRepository")<AuthRepository, {
  readonly findToken: (id: string) => Effect.Effect<Option.Option<TokenRow>, SqlError.SqlError>
  readonly touchToken: (id: string) => Effect.Effect<void, SqlError.SqlError>
  readonly principalForIdentity: (
    provider: string,
    subject: string
  ) => Effect.Effect<Option.Option<PrincipalRow>, SqlError.SqlError>
  readonly actionsOf: (principalId: string) => Effect.Effect<ReadonlyArray<string>, SqlError.SqlError>
  readonly insertPrincipal: (principal: {
    readonly id: string
    readonly kind: PrincipalKind
    readonly displayName: string
    readonly attributes: Record<string, unknown> | null
  }) => Effect.Effect<PrincipalRow, SqlError.SqlError>
  readonly insertToken: (token: {
    readonly id: string
    readonly principalId: string
    readonly name: string
    readonly secretHash: Uint8Array
    readonly expiresAt: Date
  }) => Effect.Effect<TokenRow, SqlError.SqlError>
  readonly linkIdentity: (provider: string, subject: string, principalId: string) => Effect.Effect<void, SqlError.SqlError>
  readonly assignRole: (principalId: string, roleId: RoleId) => Effect.Effect<void, SqlError.SqlError>
}>() {}

export const AuthRepositoryLive = Layer.effect(
  AuthRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return {
      findToken: (id) =>
        sql<TokenRow>`SELECT * FROM auth_api_tokens WHERE id = ${id}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]))),
      touchToken: (id) => sql`UPDATE auth_api_tokens SET last_used_at = now() WHERE id = ${id}`.pipe(Effect.asVoid),
      principalForIdentity: (provider, subject) =>
        sql<PrincipalRow>`
          SELECT p.* FROM auth_external_identities i
          JOIN auth_principals p ON p.id = i.principal_id
          WHERE i.provider = ${provider} AND i.subject = ${subject}`.pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]))
        ),
      actionsOf: (principalId) =>
        sql<{ action: string }>`
          SELECT DISTINCT ra.action FROM auth_principal_roles pr
          JOIN auth_role_actions ra ON ra.role_id = pr.role_id
          WHERE pr.principal_id = ${principalId}`.pipe(Effect.map((rows) => rows.map((r) => r.action))),
      insertPrincipal: (p) =>
        sql<PrincipalRow>`
          INSERT INTO auth_principals (id, kind, display_name, attributes)
          VALUES (${p.id}, ${p.kind}, ${p.displayName}, ${p.attributes === null ? null : JSON.stringify(p.attributes)}::jsonb)
          RETURNING *`.pipe(Effect.map((rows) => rows[0]!)),
      insertToken: (t) =>
        sql<TokenRow>`
          INSERT INTO auth_api_tokens (id, principal_id, name, secret_hash, expires_at)
          VALUES (${t.id}, ${t.principalId}, ${t.name}, ${Buffer.from(t.secretHash)}, ${t.expiresAt})
          RETURNING *`.pipe(Effect.map((rows) => rows[0]!)),
      linkIdentity: (provider, subject, principalId) =>
        sql`INSERT INTO auth_external_identities (provider, subject, principal_id)
            VALUES (${provider}, ${subject}, ${principalId})`.pipe(Effect.asVoid),
      assignRole: (principalId, roleId) =>
        sql`INSERT INTO auth_principal_roles (principal_id, role_id) VALUES (${principalId}, ${roleId})
            ON CONFLICT DO NOTHING`.pipe(Effect.asVoid)
    }
  })
)
