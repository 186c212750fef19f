import { Layer } from "effect"
import { GcHandlersLive } from "./http.js"
import { GcMetricsLive } from "./metrics.js"
import { GcRepositoryLive } from "./repository.js"
import { GarbageCollectorLive } from "./service.js"
import { GcWorkerLive } from "./worker.js"

/**
 * How garbage collection plugs into the app (`src/app.ts`): the `gc` handler group and the
 * background loop, each with the collector (it needs the BlobStore, the SqlClient and
 * AppConfig). The run lock lives in PostgreSQL, so two instances of the collector in one
 * process are as safe as two replicas.
 */

const CollectorLive = GarbageCollectorLive.pipe(Layer.provide(GcRepositoryLive))

/** The `gc` handler group with its collector. */
export const GcApiLive = GcHandlersLive.pipe(Layer.provide(CollectorLive))

/** Background work: the collection loop (when `--gc-enabled`) and the metric series. */
export const GcBackgroundLive = Layer.merge(GcWorkerLive, GcMetricsLive).pipe(Layer.provide(CollectorLive))
