import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"

/** The operational endpoints (handlers: platform/http/health.ts). */
export const OpsGroup = HttpApiGroup.make("ops", { topLevel: true })
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(HttpApiSchema.NoContent)
      .addError(HttpApiSchema.Text().annotations(HttpApiSchema.annotations({ status: 503, description: "Not live" })))
      .annotate(
        OpenApi.Description,
        "Liveness: 204 while the process serves HTTP, 503 (plain text) once the embedded PostgreSQL server cannot be brought back: restart the process."
      )
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(HttpApiSchema.NoContent)
      .addError(HttpApiSchema.Text().annotations(HttpApiSchema.annotations({ status: 503, description: "Not ready" })))
      .annotate(
        OpenApi.Description,
        "Readiness: 204 when PostgreSQL and the blob store answer, else 503 with a plain-text body."
      )
  )
  .annotate(OpenApi.Description, "Operational endpoints")
