import { Layer } from "effect"
import { StreamsCacheLive } from "./cache.js"
import { StreamsHandlersLive } from "./http.js"
import { StreamsRepositoryLive } from "./repository.js"

/**
 * How the Simple Streams documents plug into the app (`src/app.ts`). Needs the PgPool (the
 * cache listens for catalog generations), the SqlClient and `CachedDocuments`.
 */

/**
 * The `streams` handler group with the documents' cache, which keeps them rendered: its
 * refresh runs for as long as the handlers are served (streams/cache.ts).
 */
export const StreamsApiLive = StreamsHandlersLive.pipe(
  Layer.provide(StreamsCacheLive),
  Layer.provide(StreamsRepositoryLive)
)

/** Nothing beyond the cache's refresh, which belongs to `StreamsApiLive`. */
export const StreamsBackgroundLive = Layer.empty
