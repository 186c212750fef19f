import * as HttpApiSchema from "@effect/platform/HttpApiSchema"

/**
 * What every group of the public API shares: the HttpApi identifier (the server's handler
 * layers and the typed client both register groups under it) and the bodiless 304.
 */

/** The HttpApi identifier every group is registered under (see `apiOf` in platform/http/routes.ts). */
export const API_ID = "imgsrv"

/** 304 for a conditional GET/HEAD that matched (no body), as the download endpoints declare it. */
export const NotModified = HttpApiSchema.Empty(304).annotations({ description: "Not Modified" })
