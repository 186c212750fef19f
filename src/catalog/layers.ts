import { Layer } from "effect"
import { CatalogHandlersLive } from "./http.js"
import { CatalogRepositoryLive } from "./repository.js"
import { CatalogLive } from "./service.js"

/**
 * How the catalog plugs into the app (`src/app.ts`), with the same faces as every domain.
 * `CatalogSharedLive` — the repository — is provided once by the app: publishing's service
 * and worker read and change the catalog through it too. Needs the SqlClient, the
 * BlobStore, AppConfig and `ImmutableResponses`.
 */

/** The repository other domains share (one instance). */
export const CatalogSharedLive = CatalogRepositoryLive

/** The `catalog` handler group with its service (and its published-manifest cache). */
export const CatalogApiLive = CatalogHandlersLive.pipe(Layer.provide(CatalogLive))

/** Nothing: the catalog has no loop of its own (publishing moves versions to `published`). */
export const CatalogBackgroundLive = Layer.empty
