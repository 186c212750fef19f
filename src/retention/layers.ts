import { Layer } from "effect"
import { CatalogSharedLive } from "../catalog/layers.js"
import { RetentionHandlersLive } from "./http.js"
import { RetentionRepositoryLive } from "./repository.js"
import { RetentionLive } from "./service.js"
import { RetentionWorkerLive } from "./worker.js"

/**
 * How retention plugs into the app (`src/app.ts`). `RetentionSharedLive` is one retention
 * service for the handlers and the loop (its repositories are stateless SQL; the catalog
 * repository is the one yank and retire go through). Needs the SqlClient, AppConfig and the
 * published-manifest cache (catalog/manifest-cache.ts), which a run that yanked or retired
 * empties at once; other replicas see the published epoch move.
 */

/** One `Retention` service for the handlers and the loop. */
export const RetentionSharedLive = RetentionLive.pipe(
  Layer.provide(Layer.merge(RetentionRepositoryLive, CatalogSharedLive))
)

/** The `retention` handler group (rules, preview). */
export const RetentionApiLive = RetentionHandlersLive

/** The loop that applies due rules (when `--retention-enabled`). */
export const RetentionBackgroundLive = RetentionWorkerLive
