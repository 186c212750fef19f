import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Metric } from "effect"
import { ifNoneMatchMatches } from "../platform/download.js"
import { apiOf } from "../platform/http.js"
import { StreamsGroup } from "./api.js"
import { type RenderedDocument, SimpleStreams } from "./service.js"

const documentResponses = Metric.counter("imgsrv_streams_document_responses_total", {
  description: "Simple Streams document responses, by document and status (200 rendered, 304 not modified).",
  incremental: true
})

/** 200 with the body, or 304 when the client already holds this exact document. */
const respond = (document: "index" | "images", render: Effect.Effect<RenderedDocument>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const rendered = yield* render
    // Incus ignores caching headers; HTTP caches and scripts get a cheap revalidation.
    const headers = { etag: rendered.etag, "cache-control": "no-cache" }
    const notModified = ifNoneMatchMatches(request.headers["if-none-match"], rendered.etag)
    yield* Metric.increment(
      Metric.tagged(Metric.tagged(documentResponses, "document", document), "status", notModified ? "304" : "200")
    )
    return notModified
      ? HttpServerResponse.empty({ status: 304, headers })
      : HttpServerResponse.text(rendered.body, { contentType: "application/json", headers })
  })

export const StreamsHandlersLive = HttpApiBuilder.group(
  apiOf(StreamsGroup),
  "streams",
  (handlers) =>
    Effect.gen(function*() {
      const streams = yield* SimpleStreams
      return handlers
        .handleRaw("getSimpleStreamsIndex", () => respond("index", streams.index))
        .handleRaw("getSimpleStreamsImages", () => respond("images", streams.images))
    })
)
