import { Context, Duration, Effect, Fiber, Layer, Metric, MetricLabel, Runtime, Schedule } from "effect"
import pg from "pg"
import { CachedDocuments } from "../platform/http/cached-documents.js"
import { untracedPoll } from "../platform/observability/tracing.js"
import { PgPool } from "../platform/storage/database.js"
import { StreamsRepository } from "./repository.js"
import { renderDocuments, type RenderedDocument, type RenderedDocuments } from "./service.js"

/**
 * The Simple Streams documents, kept rendered (issue 15). Incus hosts poll `images.json`,
 * so it is the hottest read of a deployment; rendering it per request is what made it slow.
 *
 * The documents are rendered from one REPEATABLE READ snapshot that also reads the catalog
 * generation (migrations/0006_catalog_generation.sql), so a rendering is known to show
 * exactly one generation. This process learns of newer generations three ways:
 * - `NOTIFY imgsrv_catalog_generation` from the trigger, on a connection of its own
 *   (milliseconds after any replica's commit);
 * - a poll of the generation row every `POLL_INTERVAL`, the safety net while that
 *   connection is down or a notification is lost;
 * - a request of this process that may have written (`CachedDocuments.localWrite`):
 *   the next request then checks the row first, so a client reads its own writes here.
 *
 * A newer generation starts a render in the background (off the request path). While
 * the copy is behind, or unchecked after a local write, the fast path declines and the
 * app's handler waits for the render; concurrent requests share that one render.
 */

/** The documents of one catalog generation. */
export interface StreamsSnapshot extends RenderedDocuments {
  readonly generation: number
}

export class StreamsCache extends Context.Tag("imgsrv/StreamsCache")<StreamsCache, {
  /** The documents of the newest generation this process knows of (rendering or waiting when behind). */
  readonly current: Effect.Effect<StreamsSnapshot>
}>() {}

/** NOTIFY channel of the generation trigger. */
export const GENERATION_CHANNEL = "imgsrv_catalog_generation"
/** How often the generation row is read in case a notification was missed. */
export const POLL_INTERVAL = Duration.seconds(1)
/** Wait before re-opening the notification connection after it failed. */
const LISTEN_RETRY = Duration.seconds(1)

export const INDEX_PATH = "/streams/v1/index.json"
export const IMAGES_PATH = "/streams/v1/images.json"

/** Incus ignores caching headers; HTTP caches and scripts get a cheap revalidation. */
export const DOCUMENT_HEADERS: Readonly<Record<string, string>> = { "cache-control": "no-cache" }

const documentResponses = Metric.counter("imgsrv_streams_document_responses_total", {
  description: "Simple Streams document responses, by document and status (200 rendered, 304 not modified).",
  incremental: true
})

const responseLabels = (document: "index" | "images", status: 200 | 304) => [
  MetricLabel.make("document", document),
  MetricLabel.make("status", String(status))
]
const LABELS = {
  index: { 200: responseLabels("index", 200), 304: responseLabels("index", 304) },
  images: { 200: responseLabels("images", 200), 304: responseLabels("images", 304) }
}

/** Counts one response of `document` (both request paths). */
export const countDocumentResponse = (document: "index" | "images", status: 200 | 304) =>
  documentResponses.unsafeUpdate(1, LABELS[document][status])

/**
 * Runs at most one instance of `effect` at a time: a caller arriving while one runs gets
 * that run's result (the callers of a render share it).
 */
const singleFlight = <A, E>(effect: Effect.Effect<A, E>, runtime: Runtime.Runtime<never>) => {
  let running: Fiber.RuntimeFiber<A, E> | undefined
  return Effect.suspend(() => {
    if (running === undefined || running.unsafePoll() !== null) {
      running = Runtime.runFork(runtime)(effect)
    }
    return Fiber.join(running)
  })
}

export const StreamsCacheLive = Layer.scoped(
  StreamsCache,
  Effect.gen(function*() {
    const repo = yield* StreamsRepository
    const pool = yield* PgPool
    const documents = yield* CachedDocuments
    const runtime = yield* Effect.runtime<never>()

    let snapshot: StreamsSnapshot | undefined
    /** The newest generation known to be committed. */
    let latest = 0
    /** Local writes handled so far, and how many of them a generation check has covered. */
    let writes = 0
    let checkedWrites = 0

    const isCurrent = (s: StreamsSnapshot | undefined): s is StreamsSnapshot =>
      s !== undefined && s.generation >= latest && checkedWrites === writes

    const render = singleFlight(
      Effect.gen(function*() {
        const rows = yield* repo.snapshot
        const documents = yield* renderDocuments(rows.rows, rows.aliases)
        const next: StreamsSnapshot = { generation: rows.generation, ...documents }
        if (snapshot === undefined || next.generation >= snapshot.generation) snapshot = next
        if (next.generation > latest) latest = next.generation
        return next
      }).pipe(
        // A unit of work of its own (renders run in the background, shared by requests).
        Effect.withSpan("streams.refresh", { root: true })
      ),
      runtime
    )

    /** Renders in the background when the copy is behind; a failure is logged, the poll retries. */
    const renderInBackground = () => {
      if (snapshot !== undefined && snapshot.generation >= latest) return
      Runtime.runFork(runtime)(
        render.pipe(
          Effect.catchAllCause((cause) =>
            Effect.logWarning("simple streams: rendering the documents failed; retrying at the next poll").pipe(
              Effect.annotateLogs({ cause })
            )
          )
        )
      )
    }

    const observe = (generation: number) => {
      if (generation > latest) latest = generation
      renderInBackground()
    }

    // Reads of the generation row are polls: untraced, or they would bury the traces that matter.
    const check = singleFlight(
      untracedPoll(Effect.gen(function*() {
        const covered = writes
        observe(yield* repo.generation)
        if (covered > checkedWrites) checkedWrites = covered
      })),
      runtime
    )

    const current: Effect.Effect<StreamsSnapshot> = Effect.gen(function*() {
      // A write handled here before this request: check the row (a joined check that
      // started before that write does not count, hence the loop).
      const wanted = writes
      while (checkedWrites < wanted) yield* check
      const target = latest
      let found = snapshot
      // A joined render may have started before `target` was committed; the next one did not.
      while (found === undefined || found.generation < target) found = yield* render
      return found
    })

    // Notifications: a connection of our own that stays in LISTEN; re-opened after a failure.
    const listenOnce = Effect.async<Error | undefined>((resume) => {
      const client = new pg.Client({
        connectionString: pool.options.connectionString,
        application_name: "imgsrv-listen",
        connectionTimeoutMillis: 10_000
      })
      let done = false
      const finish = (error: Error | undefined) => {
        if (done) return
        done = true
        client.removeAllListeners("notification")
        client.end().catch(() => {
          // Already closed: nothing left to release.
        })
        resume(Effect.succeed(error))
      }
      client.on("notification", (message) => {
        if (message.channel === GENERATION_CHANNEL && message.payload !== undefined) {
          const generation = Number(message.payload)
          if (Number.isSafeInteger(generation)) observe(generation)
        }
      })
      client.on("error", (error) => finish(error))
      client.on("end", () => finish(new Error("connection closed")))
      client.connect()
        .then(() => client.query(`LISTEN ${GENERATION_CHANNEL}`))
        // Anything committed before LISTEN took effect is found by this check.
        .then(() => Runtime.runFork(runtime)(check.pipe(Effect.ignoreLogged)))
        .catch((error: unknown) => finish(error instanceof Error ? error : new Error(String(error))))
      return Effect.sync(() => finish(undefined))
    })
    yield* listenOnce.pipe(
      Effect.flatMap((error) =>
        Effect.logWarning("simple streams: catalog notifications interrupted; polling meanwhile").pipe(
          Effect.annotateLogs({ error: error?.message ?? "closed" })
        )
      ),
      Effect.zipRight(Effect.sleep(LISTEN_RETRY)),
      Effect.forever,
      Effect.forkScoped
    )

    // The safety net: read the row every POLL_INTERVAL; report an outage once, not per poll.
    let pollFailing = false
    yield* untracedPoll(repo.generation).pipe(
      Effect.tap((generation) =>
        Effect.sync(() => {
          pollFailing = false
          observe(generation)
        })
      ),
      Effect.catchAllCause((cause) =>
        pollFailing ? Effect.void : Effect.sync(() => {
          pollFailing = true
        }).pipe(
          Effect.zipRight(
            Effect.logWarning("simple streams: reading the catalog generation failed").pipe(
              Effect.annotateLogs({ cause })
            )
          )
        )
      ),
      Effect.repeat(Schedule.spaced(POLL_INTERVAL)),
      Effect.forkScoped
    )

    documents.onLocalWrite(() => {
      writes++
    })
    const source = (document: "index" | "images") => ({
      current: () => {
        const s = snapshot
        if (!isCurrent(s)) return undefined
        const rendered: RenderedDocument = s[document]
        return {
          body: rendered.body,
          etag: rendered.etag,
          contentType: "application/json",
          headers: DOCUMENT_HEADERS
        }
      },
      served: (status: 200 | 304) => countDocumentResponse(document, status)
    })
    documents.register(INDEX_PATH, source("index"))
    documents.register(IMAGES_PATH, source("images"))

    // The first render, in the background: start-up does not wait for it.
    renderInBackground()
    return StreamsCache.of({ current })
  })
)
