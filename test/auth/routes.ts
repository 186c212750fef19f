/**
 * The endpoint matrix of spec/auth.md §2.3–2.4, for tests that walk every route.
 * Each protected route comes with a request a content writer would get 400 for (bad
 * path parameter or body), so the tests can show 401 → 403 → validation in that order.
 */

export interface ProtectedRoute {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
  /** The route as the OpenAPI document writes it. */
  readonly template: string
  /** A concrete path whose parameters (or `body`) are invalid. */
  readonly invalidPath: string
  readonly invalidBody?: string
}

const BAD_JSON = "{\"name\": "

/** `content.write` routes (spec/auth.md §2.3). */
export const CONTENT_WRITE_ROUTES: ReadonlyArray<ProtectedRoute> = [
  {
    method: "POST",
    template: "/v1/uploads",
    invalidPath: "/v1/uploads",
    invalidBody: "{\"expected_digest\":\"md5:x\"}"
  },
  {
    method: "PUT",
    template: "/v1/uploads/{upload_id}/parts/{part_number}",
    invalidPath: "/v1/uploads/not-a-uuid/parts/1",
    invalidBody: "bytes"
  },
  {
    method: "POST",
    template: "/v1/uploads/{upload_id}/complete",
    invalidPath: "/v1/uploads/not-a-uuid/complete",
    invalidBody: "{\"parts\":[]}"
  },
  { method: "POST", template: "/v1/uploads/{upload_id}/abort", invalidPath: "/v1/uploads/not-a-uuid/abort" },
  { method: "POST", template: "/v1/images", invalidPath: "/v1/images", invalidBody: BAD_JSON },
  {
    method: "POST",
    template: "/v1/images/{name}/versions",
    invalidPath: "/v1/images/Not_Lowercase/versions",
    invalidBody: "{\"version\":\"1.0\"}"
  },
  {
    method: "POST",
    template: "/v1/images/{name}/versions/{version}/artifacts",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/artifacts",
    invalidBody: "{}"
  },
  {
    method: "DELETE",
    template: "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/artifacts/not-a-uuid"
  },
  {
    method: "POST",
    template: "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/artifacts/not-a-uuid/attachments",
    invalidBody: "{}"
  },
  {
    method: "DELETE",
    template: "/v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/artifacts/not-a-uuid/attachments/not-a-uuid"
  },
  {
    method: "POST",
    template: "/v1/images/{name}/versions/{version}/publish",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/publish"
  },
  { method: "GET", template: "/v1/publish-jobs/{job_id}", invalidPath: "/v1/publish-jobs/not-a-uuid" },
  { method: "POST", template: "/v1/publish-jobs/{job_id}/retry", invalidPath: "/v1/publish-jobs/not-a-uuid/retry" },
  {
    method: "POST",
    template: "/v1/publish-jobs/{job_id}/abandon",
    invalidPath: "/v1/publish-jobs/not-a-uuid/abandon"
  },
  { method: "DELETE", template: "/v1/images/{name}", invalidPath: "/v1/images/Not_Lowercase" },
  {
    method: "DELETE",
    template: "/v1/images/{name}/versions/{version}",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0"
  },
  {
    method: "PUT",
    template: "/v1/images/{name}/aliases/{alias}",
    invalidPath: "/v1/images/Not_Lowercase/aliases/latest",
    invalidBody: "{\"version\":\"1.0\"}"
  },
  {
    method: "DELETE",
    template: "/v1/images/{name}/aliases/{alias}",
    invalidPath: "/v1/images/Not_Lowercase/aliases/latest"
  },
  { method: "GET", template: "/v1/events", invalidPath: "/v1/events?after=not-a-uuid" },
  {
    method: "POST",
    template: "/v1/images/{name}/versions/{version}/yank",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/yank",
    invalidBody: "{\"reason\":\"broken\"}"
  },
  {
    method: "DELETE",
    template: "/v1/images/{name}/versions/{version}/yank",
    invalidPath: "/v1/images/Not_Lowercase/versions/1.0/yank"
  },
  {
    method: "PUT",
    template: "/v1/images/{name}/retention",
    invalidPath: "/v1/images/Not_Lowercase/retention",
    invalidBody: "{\"keep_last\":1}"
  },
  { method: "GET", template: "/v1/images/{name}/retention", invalidPath: "/v1/images/Not_Lowercase/retention" },
  {
    method: "GET",
    template: "/v1/images/{name}/retention/preview",
    invalidPath: "/v1/images/Not_Lowercase/retention/preview"
  }
]

/** `auth.manage` routes (spec/auth.md §2.3). */
export const AUTH_MANAGE_ROUTES: ReadonlyArray<ProtectedRoute> = [
  { method: "GET", template: "/v1/auth/roles", invalidPath: "/v1/auth/roles" },
  { method: "GET", template: "/v1/auth/principals", invalidPath: "/v1/auth/principals" },
  {
    method: "POST",
    template: "/v1/auth/principals",
    invalidPath: "/v1/auth/principals",
    invalidBody: "{\"kind\":\"robot\"}"
  },
  { method: "GET", template: "/v1/auth/principals/{principal_id}", invalidPath: "/v1/auth/principals/%20" },
  {
    method: "PUT",
    template: "/v1/auth/principals/{principal_id}/roles/{role_id}",
    invalidPath: "/v1/auth/principals/p/roles/superuser"
  },
  {
    method: "DELETE",
    template: "/v1/auth/principals/{principal_id}/roles/{role_id}",
    invalidPath: "/v1/auth/principals/p/roles/superuser"
  },
  {
    method: "POST",
    template: "/v1/auth/principals/{principal_id}/api-tokens",
    invalidPath: "/v1/auth/principals/p/api-tokens",
    invalidBody: "{\"expires_at\":\"yesterday\"}"
  },
  {
    method: "GET",
    template: "/v1/auth/principals/{principal_id}/api-tokens",
    invalidPath: "/v1/auth/principals/%20/api-tokens"
  },
  { method: "DELETE", template: "/v1/auth/api-tokens/{token_id}", invalidPath: "/v1/auth/api-tokens/%20" },
  { method: "GET", template: "/v1/auth/oidc-provisioning-rules", invalidPath: "/v1/auth/oidc-provisioning-rules" },
  {
    method: "POST",
    template: "/v1/auth/oidc-provisioning-rules",
    invalidPath: "/v1/auth/oidc-provisioning-rules",
    invalidBody: "{\"display_name\":\"x\"}"
  },
  {
    method: "GET",
    template: "/v1/auth/oidc-provisioning-rules/{rule_id}",
    invalidPath: "/v1/auth/oidc-provisioning-rules/%20"
  },
  {
    method: "PUT",
    template: "/v1/auth/oidc-provisioning-rules/{rule_id}",
    invalidPath: "/v1/auth/oidc-provisioning-rules/%20",
    invalidBody: "{}"
  },
  {
    method: "DELETE",
    template: "/v1/auth/oidc-provisioning-rules/{rule_id}",
    invalidPath: "/v1/auth/oidc-provisioning-rules/%20"
  },
  {
    method: "GET",
    template: "/v1/auth/oidc-provisioning-rules/{rule_id}/reconciliation",
    invalidPath: "/v1/auth/oidc-provisioning-rules/%20/reconciliation"
  },
  {
    method: "POST",
    template: "/v1/auth/oidc-provisioning-rules/{rule_id}/reconciliation",
    invalidPath: "/v1/auth/oidc-provisioning-rules/%20/reconciliation"
  },
  { method: "GET", template: "/v1/webhooks", invalidPath: "/v1/webhooks" },
  { method: "POST", template: "/v1/webhooks", invalidPath: "/v1/webhooks", invalidBody: "{\"url\":\"ftp://x\"}" },
  { method: "GET", template: "/v1/webhooks/{webhook_id}", invalidPath: "/v1/webhooks/not-a-uuid" },
  {
    method: "PATCH",
    template: "/v1/webhooks/{webhook_id}",
    invalidPath: "/v1/webhooks/not-a-uuid",
    invalidBody: "{}"
  },
  { method: "DELETE", template: "/v1/webhooks/{webhook_id}", invalidPath: "/v1/webhooks/not-a-uuid" },
  {
    method: "POST",
    template: "/v1/webhooks/{webhook_id}/rotate-secret",
    invalidPath: "/v1/webhooks/not-a-uuid/rotate-secret"
  },
  { method: "POST", template: "/v1/webhooks/{webhook_id}/ping", invalidPath: "/v1/webhooks/not-a-uuid/ping" },
  {
    method: "GET",
    template: "/v1/webhooks/{webhook_id}/deliveries",
    invalidPath: "/v1/webhooks/not-a-uuid/deliveries"
  },
  {
    method: "POST",
    template: "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    invalidPath: "/v1/webhooks/not-a-uuid/deliveries/not-a-uuid/redeliver"
  },
  // Garbage collection (docs/gc.md).
  { method: "POST", template: "/v1/admin/gc", invalidPath: "/v1/admin/gc", invalidBody: "{\"dry_run\":\"yes\"}" }
]

/** Anonymous routes of the API listener (spec/auth.md §2.4), as the OpenAPI document writes them. */
export const ANONYMOUS_ROUTES: ReadonlyArray<string> = [
  "GET /healthz",
  "GET /readyz",
  "GET /streams/v1/index.json",
  "GET /streams/v1/images.json",
  "GET /v1/uploads/{upload_id}",
  "GET /v1/blobs/{digest}",
  "GET /v1/images",
  "GET /v1/images/{name}",
  "GET /v1/images/{name}/versions",
  "GET /v1/images/{name}/versions/{version}",
  "GET /v1/images/{name}/refs/{ref}",
  "GET /v1/images/{name}/versions/{version}/artifacts",
  "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}",
  "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download",
  "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}/download",
  "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/download/{file_name}",
  "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}/attachments/{attachment_id}/download/{file_name}",
  "GET /v1/images/{name}/aliases",
  "GET /v1/images/{name}/aliases/{alias}"
]

export const routeKey = (route: Pick<ProtectedRoute, "method" | "template">) => `${route.method} ${route.template}`
