import { Layer } from "effect"
import { UploadExpirySweeperLive, UploadExpirySweeperLoopLive } from "./expiry-sweeper.js"
import { UploadsHandlersLive } from "./http.js"
import { UploadMetricsLive } from "./metrics.js"
import { CasPromotionLive, CasPromotionWorkerLive } from "./promotion-worker.js"
import { ReceivedHashesLive } from "./receive-hash.js"
import { UploadRepositoryLive } from "./repository.js"
import { PromotionWakeLive, UploadsLive } from "./service.js"

/**
 * How the uploads concern plugs into the app (`src/app.ts`). Both halves need
 * `PromotionWake` — the same instance, so a completed upload wakes this process's
 * promotion loop — plus the BlobStore, the SqlClient and AppConfig.
 */

/** The `uploads` and `blobs` handler groups with their service. */
export const UploadsApiLive = UploadsHandlersLive.pipe(
  Layer.provide(UploadsLive),
  Layer.provide(Layer.merge(UploadRepositoryLive, ReceivedHashesLive))
)

/** Background work: the promotion loop (when enabled), the expiry sweeper, scrape-time gauges. */
export const UploadsBackgroundLive = Layer.mergeAll(
  CasPromotionWorkerLive.pipe(Layer.provide(CasPromotionLive)),
  UploadExpirySweeperLoopLive.pipe(Layer.provide(UploadExpirySweeperLive)),
  UploadMetricsLive
).pipe(Layer.provide(UploadRepositoryLive))

/** The wake signal both halves share (one instance). */
export const UploadsSharedLive = PromotionWakeLive

export { PromotionWakeLive }
