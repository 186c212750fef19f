import { Layer } from "effect"
import type { RouteTable } from "../platform/http/routes.js"
import { CatalogHandlersLive } from "./http.js"
import { PublishedManifestsLive } from "./manifest-cache.js"
import { CatalogRepositoryLive } from "./repository.js"
import { CatalogLive } from "./service.js"

/**
 * How the catalog plugs into the app (`src/app.ts`), with the same faces as every domain.
 * `CatalogSharedLive` — the repository — is provided once by the app: publishing's service
 * and worker read and change the catalog through it too; so is `CatalogCacheLive`, the
 * published-manifest cache the listener answers from too. Needs the SqlClient, the
 * BlobStore and AppConfig.
 */

/** The repository other domains share (one instance). */
export const CatalogSharedLive = CatalogRepositoryLive

/**
 * The one cache of encoded published manifests (manifest-cache.ts): `PublishedManifests` for
 * the catalog and `ImmutableResponses` for the listener's fast path.
 */
export const CatalogCacheLive = (routes: RouteTable) =>
  PublishedManifestsLive(routes).pipe(Layer.provide(CatalogSharedLive))

/** The `catalog` handler group with its service (it reads and clears `CatalogCacheLive`). */
export const CatalogApiLive = CatalogHandlersLive.pipe(Layer.provide(CatalogLive))

/** Nothing: the catalog has no loop of its own (publishing moves versions to `published`). */
export const CatalogBackgroundLive = Layer.empty
