import { Layer } from "effect"
import { PublishHandlersLive } from "./http.js"
import { PublishMetricsLive } from "./metrics.js"
import { PublishWorkerLive } from "./publish-worker.js"
import { PublishRepositoryLive } from "./repository.js"
import { PublishingLive, PublishWakeLive } from "./service.js"

/**
 * How publishing plugs into the app (`src/app.ts`). Both halves need `PublishingSharedLive`
 * — the same `PublishWake`, so a queued job wakes this process's publish loop — plus the
 * catalog's repository (`CatalogSharedLive`), the SqlClient, the BlobStore and AppConfig.
 */

/** The repository and the wake signal both halves share (one instance each). */
export const PublishingSharedLive = Layer.merge(PublishRepositoryLive, PublishWakeLive)

/** The `publish` handler group with its service. */
export const PublishingApiLive = PublishHandlersLive.pipe(Layer.provide(PublishingLive))

/** Background work: the publish loop (when enabled) and the scrape-time gauges. */
export const PublishingBackgroundLive = Layer.merge(PublishWorkerLive, PublishMetricsLive)
