import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { ifNoneMatchMatches } from "../platform/http/download.js"
import { apiOf } from "../platform/http/routes.js"
import { StreamsGroup } from "./api.js"
import { countDocumentResponse, DOCUMENT_HEADERS, StreamsCache } from "./cache.js"

/**
 * 200 with the body, or 304 when the client already holds this exact document. Most
 * requests never get here: the listener answers them from the cache (cache.ts); this is
 * the path while the cached copy is being brought up to date, and with tracing on.
 */
const respond = (cache: StreamsCache["Type"], document: "index" | "images") =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const rendered = (yield* cache.current)[document]
    const headers = { ...DOCUMENT_HEADERS, etag: rendered.etag }
    const notModified = ifNoneMatchMatches(request.headers["if-none-match"], rendered.etag)
    countDocumentResponse(document, notModified ? 304 : 200)
    return notModified
      ? HttpServerResponse.empty({ status: 304, headers })
      : HttpServerResponse.uint8Array(rendered.body, { contentType: "application/json", headers })
  })

export const StreamsHandlersLive = HttpApiBuilder.group(
  apiOf(StreamsGroup),
  "streams",
  (handlers) =>
    Effect.gen(function*() {
      const cache = yield* StreamsCache
      return handlers
        .handleRaw("getSimpleStreamsIndex", () => respond(cache, "index"))
        .handleRaw("getSimpleStreamsImages", () => respond(cache, "images"))
    })
)
