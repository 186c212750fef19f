import { Schema } from "effect"

/** The two actions imgsrv authorizes (spec/auth.md §2.2). */
export const Action = Schema.Literal("content.write", "auth.manage")
export type Action = typeof Action.Type

/** Built-in role ids; roles are fixed data, never created through the API. */
export const RoleId = Schema.Literal("content-writer", "auth-manager")
export type RoleId = typeof RoleId.Type

export const PrincipalKind = Schema.Literal("user", "service")
export type PrincipalKind = typeof PrincipalKind.Type

/** Who is calling, as resolved by the authentication pipeline for one request. */
export interface Principal {
  readonly id: string
  readonly kind: PrincipalKind
  readonly displayName: string
  /** How the caller authenticated; a transient OIDC principal is never authorized. */
  readonly credential: "api-token" | "oidc"
  /** True for an OIDC identity that matched no provisioning rule (never persisted). */
  readonly transient: boolean
}
