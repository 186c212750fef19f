import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option, Schema } from "effect"

/**
 * Paginated lists (issue 15): `?limit=` (default 100, at most 1000) and an opaque
 * `?cursor=`; a list answers at most `limit` items, and when more follow, `next_cursor` in
 * the body and `Link: <…>; rel="next"` (RFC 8288) name the next page. Keyset pagination:
 * the cursor carries the sort key of the last item served, and the next page starts
 * strictly after it, so rows inserted or deleted meanwhile never make a page repeat or skip
 * a row that existed throughout. A client that ignores paging gets the first page, which
 * is the whole list while it has at most 100 items.
 *
 * A list endpoint (one small change each):
 * 1. adds `next_cursor: nextCursorField` to its success schema and `InvalidPageRequest`
 *    to its errors;
 * 2. reads `pageRequest(KeySchema)` in its handler and asks its repository for `limit + 1`
 *    rows after `after` (`WHERE (k1, k2) > (…) ORDER BY k1, k2 LIMIT …`);
 * 3. returns `yield* pageOf(rows, request, keyOf)` — the items, and the `next_cursor`
 *    field (also set as the `Link` header).
 */

export const DEFAULT_PAGE_LIMIT = 100
export const MAX_PAGE_LIMIT = 1000

// The wire half (error and body field) lives in the contract, which the typed client imports.
import { InvalidPageRequest } from "../../contract/pagination.js"
export {
  InvalidPageRequest,
  nextCursorField,
  pageParamFields,
  PageParams,
  PgTimestampText
} from "../../contract/pagination.js"

export interface PageRequest<K> {
  readonly limit: number
  /** The sort key of the last item already served (None: the first page). */
  readonly after: Option.Option<K>
}

const encodeCursor = <K, I>(key: Schema.Schema<K, I>, value: K): string =>
  Buffer.from(JSON.stringify(Schema.encodeSync(key)(value)), "utf8").toString("base64url")

/** The first page of the default size: what a request without a query asks for. */
const FIRST_PAGE: PageRequest<never> = { limit: DEFAULT_PAGE_LIMIT, after: Option.none() }

/** `limit` and `cursor` of the request's query, checked; a bad value is a 400 naming it. */
export const pageRequest = <K, I>(
  key: Schema.Schema<K, I>
): Effect.Effect<PageRequest<K>, InvalidPageRequest, HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    // Lists sit on hot read paths (issue 15 item 5): no query, no parsing.
    const q = request.url.indexOf("?")
    return q === -1 ? Effect.succeed(FIRST_PAGE) : parsePageQuery(key, request.url.slice(q + 1))
  })

const parsePageQuery = <K, I>(
  key: Schema.Schema<K, I>,
  queryText: string
): Effect.Effect<PageRequest<K>, InvalidPageRequest> =>
  Effect.gen(function*() {
    const query = new URLSearchParams(queryText)
    const limitText = query.get("limit")
    let limit = DEFAULT_PAGE_LIMIT
    if (limitText !== null) {
      if (!/^\d{1,7}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > MAX_PAGE_LIMIT) {
        return yield* new InvalidPageRequest({ reason: `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}` })
      }
      limit = Number(limitText)
    }
    const cursor = query.get("cursor")
    if (cursor === null || cursor === "") return { limit, after: Option.none() }
    const decoded = Option.liftThrowable(() =>
      JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown
    )().pipe(Option.flatMap(Schema.decodeUnknownOption(key)))
    if (Option.isNone(decoded)) {
      return yield* new InvalidPageRequest({ reason: "cursor is not one this list handed out" })
    }
    return { limit, after: decoded }
  })

/**
 * The page of `rows` (fetched with `limit + 1`, so one extra row says a next page exists):
 * the first `limit` items and the next cursor, which is also set as the `Link` header.
 */
export const pageOf = <Row, K, I>(
  rows: ReadonlyArray<Row>,
  page: PageRequest<K>,
  key: Schema.Schema<K, I>,
  keyOf: (row: Row) => K
): Effect.Effect<
  { readonly items: ReadonlyArray<Row>; readonly next_cursor?: string },
  never,
  HttpServerRequest.HttpServerRequest
> =>
  rows.length <= page.limit ? Effect.succeed({ items: rows }) : Effect.gen(function*() {
    const items = rows.slice(0, page.limit)
    const next = encodeCursor(key, keyOf(items[items.length - 1]!))
    yield* linkNext({ limit: String(page.limit), cursor: next })
    return { items, next_cursor: next }
  })

/**
 * Sets `Link: <…>; rel="next"` to this request's path and query with `params` replaced (the
 * event feed uses it with its own `after` parameter).
 */
export const linkNext = (
  params: Readonly<Record<string, string>>
): Effect.Effect<void, never, HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const q = request.url.indexOf("?")
    const query = new URLSearchParams(q === -1 ? "" : request.url.slice(q + 1))
    for (const [name, value] of Object.entries(params)) query.set(name, value)
    const target = `${q === -1 ? request.url : request.url.slice(0, q)}?${query.toString()}`
    yield* HttpApp.appendPreResponseHandler((_request, response) =>
      Effect.succeed(HttpServerResponse.setHeader(response, "link", `<${target}>; rel="next"`))
    )
  })

/**
 * One page of a list, the whole recipe: the request's `limit`/`cursor` (400 when bad),
 * `fetch(after, limit + 1)` from the repository, then `pageOf`. The handler maps the items
 * to the wire and spreads `cursorField(next_cursor)` into its body.
 */
export const paginate = <Row, K, I, E, R>(
  key: Schema.Schema<K, I>,
  keyOf: (row: Row) => K,
  fetch: (after: Option.Option<K>, limit: number) => Effect.Effect<ReadonlyArray<Row>, E, R>
): Effect.Effect<
  { readonly items: ReadonlyArray<Row>; readonly next_cursor?: string },
  E | InvalidPageRequest,
  R | HttpServerRequest.HttpServerRequest
> =>
  Effect.gen(function*() {
    const page = yield* pageRequest(key)
    const rows = yield* fetch(page.after, page.limit + 1)
    return yield* pageOf(rows, page, key, keyOf)
  })

/** `{ next_cursor }` when there is one, `{}` on the last page (the field is optional on the wire). */
export const cursorField = (next_cursor: string | undefined): { readonly next_cursor?: string } =>
  next_cursor === undefined ? {} : { next_cursor }
