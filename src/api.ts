import { HttpApi, OpenApi } from "@effect/platform"
import { AuthGroup } from "./auth/api.js"
import { CatalogGroup } from "./catalog/api.js"
import { API_ID } from "./contract/http.js"
import { OpsGroup } from "./contract/ops.js"
import { PublishGroup } from "./publishing/api.js"
import { RetentionGroup } from "./retention/api.js"
import { StreamsGroup } from "./streams/api.js"
import { BlobsGroup, UploadsGroup } from "./uploads/api.js"
import { EventsGroup, WebhooksGroup } from "./webhooks/api.js"

type JsonObject = Record<string, unknown>
const isObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null

/**
 * Every error response is RFC 9457 problem+json (platform/problem.ts). The generator
 * loses that encoding where it merges several errors of one status into one union, and
 * it adds the HttpApi decode error to every 400 although `renderFailure` never sends
 * that shape; this puts both right in the generated document.
 */
export const problemJsonErrors = (spec: Record<string, unknown>): Record<string, unknown> => {
  const decodeError = "#/components/schemas/HttpApiDecodeError"
  for (const item of Object.values(isObject(spec["paths"]) ? spec["paths"] : {})) {
    for (const operation of Object.values(isObject(item) ? item : {})) {
      const responses = isObject(operation) && isObject(operation["responses"]) ? operation["responses"] : {}
      for (const [status, response] of Object.entries(responses)) {
        if (Number(status) < 400 || !isObject(response) || !isObject(response["content"])) continue
        const json = response["content"]["application/json"]
        if (!isObject(json) || !isObject(json["schema"])) continue
        const schema = json["schema"]
        const options = (Array.isArray(schema["anyOf"]) ? schema["anyOf"] : [schema])
          .filter((option) => !(isObject(option) && option["$ref"] === decodeError))
        const problem = options.length === 0
          ? { $ref: "#/components/schemas/InvalidRequest" }
          : options.length === 1
          ? options[0]
          : { anyOf: options }
        response["content"] = { "application/problem+json": { schema: problem } }
      }
    }
  }
  return spec
}

/**
 * The whole public HTTP surface of imgsrv, one group per concern. The OpenAPI
 * document (`/openapi.json`) is generated from these definitions, and the typed client
 * (`src/client/`) is derived from them: this module and everything it imports are
 * declarations only, never server code (the build's version is annotated in `app.ts`).
 */
export class ImgsrvApi extends HttpApi.make(API_ID)
  .add(OpsGroup)
  .add(AuthGroup)
  .add(UploadsGroup)
  .add(BlobsGroup)
  .add(CatalogGroup)
  .add(PublishGroup)
  .add(RetentionGroup)
  .add(StreamsGroup)
  .add(WebhooksGroup)
  .add(EventsGroup)
  .annotate(OpenApi.Title, "imgsrv")
  .annotate(OpenApi.Transform, problemJsonErrors)
  .annotate(
    OpenApi.Description,
    "A registry for disk and VM images: verified CAS uploads, durable publishing, aliases, " +
      "streamed downloads and the Incus Simple Streams surface."
  )
{}

/** What ops-only mode serves itself; every other route of `ImgsrvApi` answers 503. */
export class OpsOnlyApi extends HttpApi.make(API_ID)
  .add(OpsGroup)
  .annotate(OpenApi.Title, "imgsrv (ops-only)")
  .annotate(OpenApi.Transform, problemJsonErrors)
{}

/** Routes served outside the HttpApi groups (documentation). */
export const OPENAPI_PATH = "/openapi.json"
export const DOCS_PATH = "/docs"
export const DOCS_ROUTES = [
  { method: "GET", path: OPENAPI_PATH, group: "docs" },
  { method: "GET", path: DOCS_PATH, group: "docs" }
] as const
