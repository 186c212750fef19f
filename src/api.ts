import { HttpApi, OpenApi } from "@effect/platform"
import { AuthGroup } from "./auth/api.js"
import { buildInfo } from "./build-info.js"
import { CatalogGroup } from "./catalog/api.js"
import { OpsGroup } from "./platform/health.js"
import { API_ID } from "./platform/http.js"
import { PublishGroup } from "./publishing/api.js"
import { StreamsGroup } from "./streams/api.js"
import { BlobsGroup, UploadsGroup } from "./uploads/api.js"

/**
 * The whole public HTTP surface of imgsrv, one group per concern. The OpenAPI
 * document (`/openapi.json`) is generated from these definitions.
 */
export class ImgsrvApi extends HttpApi.make(API_ID)
  .add(OpsGroup)
  .add(AuthGroup)
  .add(UploadsGroup)
  .add(BlobsGroup)
  .add(CatalogGroup)
  .add(PublishGroup)
  .add(StreamsGroup)
  .annotate(OpenApi.Title, "imgsrv")
  .annotate(OpenApi.Version, buildInfo.version)
  .annotate(
    OpenApi.Description,
    "A registry for disk and VM images: verified CAS uploads, durable publishing, aliases, " +
      "streamed downloads and the Incus Simple Streams surface."
  )
{}

/** What ops-only mode serves itself; every other route of `ImgsrvApi` answers 503. */
export class OpsOnlyApi extends HttpApi.make(API_ID).add(OpsGroup).annotate(OpenApi.Title, "imgsrv (ops-only)") {}

/** Routes served outside the HttpApi groups (documentation). */
export const DOCS_ROUTES = [
  { method: "GET", path: "/openapi.json", group: "docs" },
  { method: "GET", path: "/docs", group: "docs" }
] as const
