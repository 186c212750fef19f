import { Cache, Context, Data, Duration, Effect, Exit, Fiber, FiberRef, Layer, Option, Schedule, Tracer } from "effect"
import { ImmutableResponses } from "../platform/http/fast-path.js"
import type { RouteTable } from "../platform/http/routes.js"
import { untracedPoll } from "../platform/observability/tracing.js"
import { CatalogGroup } from "./api.js"
import { CatalogRepository } from "./repository.js"
import { type ManifestRows, manifestToWire } from "./schema.js"

/**
 * The one cache of published manifests, kept encoded. Published manifests change only by a
 * yank, an unyank or a retirement — the database refuses anything else — so a hot manifest
 * (CI pipelines resolving `latest`, Incus hosts) costs no database round trip and no
 * encoding, and the listener answers `GET`/`HEAD` of its paths before the Effect app runs
 * (platform/http/fast-path.ts `answerImmutable`). Drafts and publishing versions are never
 * cached. Those three changes empty the cache: at once on the replica that made them
 * (`Catalog.forgetPublishedManifests`), on every other replica when it sees the published
 * epoch move (`PUBLISHED_EPOCH_POLL_INTERVAL`).
 *
 * Built on effect's `Cache` (key: image name and version). Its bound is a number of entries,
 * not of bytes, and none is added: the listener's former byte bounds (32 MiB, 1 MiB per
 * body) never bounded what the process held, because the rows cache beside it kept 1 024
 * manifests of any size alive together with their encodings. One entry now holds the rows
 * and their encoding once, so the worst case is what the rows cache alone held before:
 * `PUBLISHED_MANIFEST_CACHE_SIZE` manifests (about 1 KiB of JSON per artifact).
 */

/** How many published manifests the cache keeps (effect's Cache evicts the least recently used). */
export const PUBLISHED_MANIFEST_CACHE_SIZE = 1024

/** How often a replica reads the published epoch (migration 0008) to drop stale manifests. */
export const PUBLISHED_EPOCH_POLL_INTERVAL = Duration.seconds(1)

/** A published manifest with its JSON: the body of its `GET` on the API and on the fast path. */
export interface EncodedManifest {
  readonly rows: ManifestRows
  readonly body: Uint8Array
}

export class PublishedManifests extends Context.Tag("imgsrv/PublishedManifests")<PublishedManifests, {
  /** The cached manifest of published `version` of image `name`, without loading it. */
  readonly peek: (name: string, version: string) => EncodedManifest | undefined
  /**
   * The manifest of `version` of `name` through the cache: loaded and encoded once while it
   * is published; None (and nothing cached) when it is not published.
   */
  readonly get: (name: string, version: string) => Effect.Effect<Option.Option<EncodedManifest>>
  /** The JSON of `rows`: the cached encoding when `rows` came from the cache. */
  readonly bodyOf: (rows: ManifestRows) => Uint8Array
  /** Forgets every manifest (a published version was yanked, unyanked or retired). */
  readonly clear: Effect.Effect<void>
}>() {}

const encoder = new TextEncoder()
/** What the schema encoder would produce: `manifestToWire` builds the wire shape exactly. */
const encode = (rows: ManifestRows) => encoder.encode(JSON.stringify(manifestToWire(rows)))

/** A lookup that found no published version: not cached (forgotten as soon as it is answered). */
class NotPublished extends Data.TaggedError("NotPublished") {}

/**
 * The span of the request whose load fills an entry. effect's Cache runs a lookup in the
 * context the Cache was made in, not the caller's: without it the load's queries would
 * leave the request's trace and become traces of their own.
 */
const loadingFor = FiberRef.unsafeMake<Option.Option<Tracer.AnySpan>>(Option.none())

// Names and versions never contain NUL (their patterns refuse it).
const keyOf = (name: string, version: string) => `${name}\u0000${version}`

/** The manifest routes and where their image name and version (or ref) sit in the path. */
const manifestRoutes = (routes: RouteTable) => {
  const params = new Map<string, { readonly name: number; readonly version: number }>()
  for (const endpoint of [CatalogGroup.endpoints.getManifest, CatalogGroup.endpoints.resolveRef]) {
    const route = routes.routes.find((r) => r.method === "GET" && r.path === endpoint?.path)
    // Only an anonymous route's answer can be replayed to anyone asking.
    if (route === undefined || route.protected) continue
    // `segments` start after the leading slash; a split pathname starts with "".
    params.set(route.label, {
      name: route.segments.indexOf(":name") + 1,
      version: route.segments.findIndex((s) => s === ":version" || s === ":ref") + 1
    })
  }
  return params
}

/**
 * The cache over `loadPublished` (the manifest of a version as stored now, when it is
 * published), with its view for the listener. The layer below gives it the repository.
 */
export const makePublishedManifests = (options: {
  readonly routes: RouteTable
  readonly capacity: number
  readonly loadPublished: (name: string, version: string) => Effect.Effect<Option.Option<ManifestRows>>
}) =>
  Effect.gen(function*() {
    const fresh = Cache.makeWith({
      capacity: options.capacity,
      lookup: (key: string) => {
        const [name = "", version = ""] = key.split("\u0000")
        const load = options.loadPublished(name, version).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new NotPublished()),
            onSome: (rows) => Effect.succeed<EncodedManifest>({ rows, body: encode(rows) })
          }))
        )
        return Effect.flatMap(
          FiberRef.get(loadingFor),
          Option.match({ onNone: () => load, onSome: (span) => Effect.withParentSpan(load, span) })
        )
      },
      timeToLive: (exit) => Exit.isSuccess(exit) ? Duration.infinity : Duration.zero
    }).pipe(
      // Holds no request's services (a clear runs in the yank's request).
      Effect.locally(FiberRef.currentContext, Context.empty())
    )
    // Clearing makes a new Cache rather than `invalidateAll`: a load in flight when a yank
    // clears the cache completes into the old one, never into the one requests read next,
    // and effect's Cache keeps its recency list across `invalidateAll` (until it evicts).
    let cache = yield* fresh

    // The listener asks synchronously, before any fiber runs, so a read of the Cache there is
    // an Effect run per request: that halved the fast path's throughput (scripts/bench/reads.ts
    // (b): 0.37 of a bare handler against 0.64). Entries the Cache has completed are therefore
    // also kept in `completed`: the same objects, a view of the Cache and not a second LRU (a
    // miss asks the Cache again). It is emptied with the Cache on a clear, and all at once when
    // it outgrows the Cache's capacity (entries the Cache evicted are still valid meanwhile:
    // published manifests change only by what clears).
    let completed = new Map<string, EncodedManifest>()

    const peek = (name: string, version: string): EncodedManifest | undefined => {
      const key = keyOf(name, version)
      const known = completed.get(key)
      if (known !== undefined) return known
      const current = cache
      // The Cache needs nothing but the Clock, so the default runtime (cheaper to start than
      // the app's). `contains` first: a miss of `getOptionComplete` records an access that the
      // Cache forgets only when it next evicts, and the listener asks for every manifest path.
      // A load in flight, or one that found no published version, is not a cached manifest.
      const exit = Effect.runSyncExit(
        Effect.flatMap(current.contains(key), (cached) => cached ? current.getOptionComplete(key) : Effect.succeedNone)
      )
      const found = Exit.isSuccess(exit) ? Option.getOrUndefined(exit.value) : undefined
      if (found !== undefined) {
        if (completed.size >= options.capacity) completed = new Map()
        completed.set(key, found)
      }
      return found
    }

    const service = PublishedManifests.of({
      peek,
      get: (name, version) =>
        Effect.suspend(() => {
          const key = keyOf(name, version)
          const current = cache
          return Effect.serviceOption(Tracer.ParentSpan).pipe(
            Effect.flatMap((span) => Effect.locally(current.get(key), loadingFor, span)),
            // Concurrent requests for a manifest share one load, so it runs in a fiber of its
            // own: a client going away interrupts its wait, not the load the others wait for
            // (which ends with its queries).
            Effect.forkDaemon,
            Effect.flatMap(Fiber.join),
            Effect.map(Option.some),
            // A zero time to live still keeps the miss until the clock's millisecond turns
            // (effect's Cache expires an entry once `now > expiry`): a version published in
            // that millisecond would read as missing. Forget the miss instead.
            Effect.catchTag("NotPublished", () => Effect.as(current.invalidate(key), Option.none()))
          )
        }),
      bodyOf: (rows) => {
        const cached = rows.version.state === "published" ? peek(rows.image.name, rows.version.version) : undefined
        return cached !== undefined && cached.rows === rows ? cached.body : encode(rows)
      },
      clear: Effect.map(fresh, (empty) => {
        cache = empty
        completed = new Map()
      })
    })

    const routes = manifestRoutes(options.routes)
    const responses = ImmutableResponses.of({
      lookup: (pathname) => {
        const route = options.routes.match("GET", pathname)
        const at = route === undefined ? undefined : routes.get(route.label)
        if (route === undefined || at === undefined) return undefined
        const segments = pathname.split("/")
        const name = segments[at.name] ?? ""
        const version = segments[at.version] ?? ""
        // The router percent-decodes path parameters; such a spelling is left to the app.
        // A ref that is a cached version means that version: an exact version wins over
        // an alias, and published versions do not change (a ref through an alias is never
        // a key: aliases are not versions).
        if (name.includes("%") || version.includes("%")) return undefined
        const hit = peek(name, version)
        return hit === undefined ? undefined : { body: hit.body, contentType: "application/json", route: route.label }
      }
    })
    return { manifests: service, responses }
  })

/**
 * The cache for the catalog's service and handlers (`PublishedManifests`) and for the
 * listener (`ImmutableResponses`), and the loop that empties it when another replica
 * yanks, unyanks or retires. Needs the CatalogRepository.
 */
export const PublishedManifestsLive = (routes: RouteTable) =>
  Layer.scopedContext(Effect.gen(function*() {
    const repo = yield* CatalogRepository
    const { manifests, responses } = yield* makePublishedManifests({
      routes,
      capacity: PUBLISHED_MANIFEST_CACHE_SIZE,
      loadPublished: (name, version) =>
        repo.findVersion(name, version).pipe(
          Effect.flatMap((found) =>
            Option.isSome(found) && found.value.version.state === "published"
              ? Effect.map(repo.loadManifest(found.value), Option.some)
              : Effect.succeedNone
          )
        )
    })

    // Another replica's yank, unyank or retirement moves the published epoch: drop what
    // this one remembers. Reading it is a poll (untraced); a failed read is retried.
    const readEpoch = repo.publishedEpoch
    let epoch = yield* untracedPoll(readEpoch).pipe(Effect.catchAllCause(() => Effect.succeed("")))
    yield* untracedPoll(readEpoch).pipe(
      Effect.flatMap((seen) => {
        if (seen === epoch) return Effect.void
        epoch = seen
        return manifests.clear
      }),
      Effect.catchAllCause((cause) => Effect.logDebug("reading the published epoch failed", cause)),
      Effect.repeat(Schedule.spaced(PUBLISHED_EPOCH_POLL_INTERVAL)),
      Effect.forkScoped
    )
    return Context.make(PublishedManifests, manifests).pipe(Context.add(ImmutableResponses, responses))
  }))
