import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Context, Duration, Effect, Layer, ParseResult, Redacted, Schedule } from "effect"
import { ImgsrvApi } from "../api.js"
import { oneLine, problemFrom, reasonOf } from "./answers.js"
import { ConnectionError, ProblemError, type RequestFailure, UnexpectedResponse, WaitTimedOut } from "./errors.js"
import { type FileSender, makeFileSender } from "./transfer.js"

/**
 * The typed client: every endpoint of `ImgsrvApi` as a method (`api.catalog.getManifest`,
 * `api.uploads.begin`, …), derived from the same declarations the server is built from,
 * so it cannot drift from it. Downloads go through `http` and part bodies through
 * `sendFile`, whose URLs are built from the same declarations (`endpointPath`).
 */

export interface ClientOptions {
  /** Base URL of the server, e.g. `https://images.example.org` (a path prefix is kept). */
  readonly server: string
  /** An API token (or a JWT) for the calls that need `content.write`; anonymous without. */
  readonly token?: string | Redacted.Redacted<string> | undefined
  readonly userAgent?: string | undefined
}

const makeApi = (httpClient: HttpClient.HttpClient.With<RequestFailure>) =>
  HttpApiClient.makeWith(ImgsrvApi, { httpClient })

/** Every endpoint of the API as a method; failures are `RequestFailure`s (see `request`). */
export type ImgsrvApiClient = Effect.Effect.Success<ReturnType<typeof makeApi>>

export interface ImgsrvClientService {
  /** The server's base URL, without a trailing slash. */
  readonly server: string
  readonly api: ImgsrvApiClient
  /**
   * The same connection for raw requests (relative URLs): authenticated, and any status
   * ≥ 400 fails with a `ProblemError`.
   */
  readonly http: HttpClient.HttpClient.With<RequestFailure>
  /**
   * A request whose body is a range of a local file (part uploads), with the same URL,
   * token and errors, sent with `node:http`/`node:https` straight from a file read stream
   * rather than through `http` (src/client/transfer.ts says why).
   */
  readonly sendFile: FileSender
}

export class ImgsrvClient extends Context.Tag("imgsrv/client/ImgsrvClient")<ImgsrvClient, ImgsrvClientService>() {}

const connectionError = (error: HttpClientError.HttpClientError): ConnectionError =>
  new ConnectionError({
    method: error.request.method,
    url: error.request.url,
    reason: error._tag === "ResponseError" && error.reason === "StatusCode"
      ? `unexpected status ${error.response.status}`
      : reasonOf(error.cause ?? error.description ?? error.message)
  })

const problemOf = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<never, RequestFailure> =>
  response.text.pipe(
    Effect.orElseSucceed(() => ""),
    Effect.flatMap((text) =>
      Effect.fail(problemFrom({
        status: response.status,
        text,
        requestId: response.headers["x-request-id"],
        method: response.request.method,
        url: response.request.url
      }))
    )
  )

/** A client for `options.server` on top of any `HttpClient`. */
export const makeClient = (options: ClientOptions): Effect.Effect<ImgsrvClientService, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const server = options.server.replace(/\/+$/, "")
    const token = options.token === undefined
      ? undefined
      : Redacted.isRedacted(options.token)
      ? options.token
      : Redacted.make(options.token)
    const base = yield* HttpClient.HttpClient
    const http = base.pipe(
      HttpClient.mapRequest((request) => {
        const withUrl = HttpClientRequest.prependUrl(request, server).pipe(
          HttpClientRequest.setHeader("user-agent", options.userAgent ?? "imgsrv-client")
        )
        return token === undefined ? withUrl : HttpClientRequest.bearerToken(withUrl, token)
      }),
      HttpClient.transformResponse((response) =>
        response.pipe(
          Effect.mapError(connectionError),
          Effect.flatMap((r) => r.status >= 400 ? problemOf(r) : Effect.succeed(r))
        )
      )
    )
    const api = yield* makeApi(http)
    const sendFile = makeFileSender({ server, token, userAgent: options.userAgent ?? "imgsrv-client" })
    return { server, api, http, sendFile }
  })

export const layer = (options: ClientOptions): Layer.Layer<ImgsrvClient, never, HttpClient.HttpClient> =>
  Layer.effect(ImgsrvClient, makeClient(options))

/**
 * The client over `node:http`/`node:https` (keep-alive connections) for the API calls and
 * downloads; part bodies go over `sendFile` whatever the `HttpClient`. undici (the other
 * Node client) compiles its HTTP parser to WebAssembly on the first request, which alone
 * raised a command's peak memory by about 25 MiB.
 */
export const layerNode = (options: ClientOptions): Layer.Layer<ImgsrvClient> =>
  layer(options).pipe(Layer.provide(NodeHttpClient.layer))

/**
 * Narrows a call of the derived client to `RequestFailure`. Error responses are
 * `ProblemError`s before the derived client decodes anything, so the endpoint's declared
 * errors never occur; a body that does not decode is an `UnexpectedResponse`.
 */
export const request = <A, E, R>(what: string, self: Effect.Effect<A, E, R>): Effect.Effect<A, RequestFailure, R> =>
  Effect.catchAll(self, (error): Effect.Effect<never, RequestFailure> => {
    if (error instanceof ProblemError || error instanceof ConnectionError || error instanceof UnexpectedResponse) {
      return Effect.fail(error)
    }
    if (HttpClientError.isHttpClientError(error)) return Effect.fail(connectionError(error))
    const reason = ParseResult.isParseError(error)
      ? oneLine(ParseResult.TreeFormatter.formatErrorSync(error))
      : oneLine(String(error))
    return Effect.fail(new UnexpectedResponse({ what, reason }))
  })

/**
 * Polls `check` until `done` holds for its value — every 100 ms at first, then less often,
 * at least every 2 s — and fails with `WaitTimedOut` after `timeout`. Transient failures
 * of a check are retried; nothing waits forever.
 */
export const pollUntil = <A, E, R>(
  check: Effect.Effect<A, E, R>,
  done: (value: A) => boolean,
  what: string,
  timeout: Duration.DurationInput
): Effect.Effect<A, E | WaitTimedOut, R> => {
  const loop = (delay: Duration.Duration): Effect.Effect<A, E, R> =>
    retryTransient(check).pipe(Effect.flatMap((value) =>
      done(value)
        ? Effect.succeed(value)
        : Effect.sleep(delay).pipe(
          Effect.zipRight(loop(Duration.min(Duration.times(delay, 1.5), Duration.seconds(2))))
        )
    ))
  return loop(Duration.millis(100)).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new WaitTimedOut({ what, after: Duration.decode(timeout) })
    })
  )
}

/** Worth another try: no answer, a server error, or rate limiting. Other 4xx are final. */
export const isTransient = (error: unknown): boolean =>
  error instanceof ConnectionError ||
  (error instanceof ProblemError && (error.status >= 500 || error.status === 429))

/** At most 5 more attempts, 0.5 s, 1 s, 2 s, 4 s, 8 s apart (jittered). */
export const transientRetries = Schedule.exponential("500 millis", 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(5))
)

export const retryTransient = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.retry(self, { schedule: transientRetries, while: isTransient })

/**
 * The URL path of an endpoint, from its declaration: `/v1/uploads/:upload_id/parts/:part_number`
 * with `{ upload_id, part_number }`. Values are percent-encoded.
 */
export const endpointPath = (template: string, params: Record<string, string | number>): string =>
  template.replace(/:(\w+)/g, (_, name: string) => {
    const value = params[name]
    if (value === undefined) throw new Error(`no value for :${name} of ${template}`)
    return encodeURIComponent(String(value))
  })

/** The endpoint declaration `name` of `group` (its path template and method). */
export const endpointOf = (group: keyof typeof ImgsrvApi.groups, name: string): { readonly path: string } => {
  const endpoint = ImgsrvApi.groups[group]?.endpoints[name]
  if (endpoint === undefined) throw new Error(`ImgsrvApi has no endpoint ${group}.${name}`)
  return endpoint
}

/** The page size `allPages` asks for: the most a list answers (fewest round trips). */
export const ALL_PAGES_LIMIT = 1000

/**
 * Every page of a paginated list (issue 15), following `next_cursor` until a page has
 * none. `page` sends one request with the given query, e.g.
 * `(urlParams) => client.api.catalog.listImages({ urlParams })`. Each cursor names the last
 * item served, so items inserted meanwhile never make a page repeat or skip an item that
 * existed throughout.
 */
export const allPages = <P extends { readonly next_cursor?: string | undefined }, E, R>(
  page: (urlParams: { readonly limit: string; readonly cursor?: string }) => Effect.Effect<P, E, R>
): Effect.Effect<ReadonlyArray<P>, E, R> =>
  Effect.gen(function*() {
    const pages: Array<P> = []
    let cursor: string | undefined
    do {
      const next = yield* page({ limit: String(ALL_PAGES_LIMIT), ...(cursor === undefined ? {} : { cursor }) })
      pages.push(next)
      cursor = next.next_cursor
    } while (cursor !== undefined)
    return pages
  })
