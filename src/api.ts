import * as HttpApi from "@effect/platform/HttpApi"
import * as OpenApi from "@effect/platform/OpenApi"
import { AuthGroup } from "./auth/api.js"
import { CatalogGroup } from "./catalog/api.js"
import { API_ID } from "./contract/http.js"
import { OpsGroup } from "./contract/ops.js"
import { problemJsonErrors } from "./contract/problem.js"
import { GcGroup } from "./gc/api.js"
import { PublishGroup } from "./publishing/api.js"
import { RetentionGroup } from "./retention/api.js"
import { StreamsGroup } from "./streams/api.js"
import { BlobsGroup, UploadsGroup } from "./uploads/api.js"
import { EventsGroup, WebhooksGroup } from "./webhooks/api.js"

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
  .add(GcGroup)
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
