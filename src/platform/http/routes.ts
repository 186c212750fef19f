import { HttpApi, HttpApiMiddleware } from "@effect/platform"
import type { HttpApiGroup, HttpServerRequest } from "@effect/platform"
import { API_ID } from "../../contract/http.js"

export { API_ID }

/**
 * A one-group HttpApi with the application's id. Handler layers are built against
 * it (`HttpApiBuilder.group(apiOf(UploadsGroup), "uploads", ...)`) so that a
 * domain's `http.ts` never imports the root `api.ts` — which imports every group —
 * and module cycles stay impossible. The resulting layer satisfies the root API,
 * because groups are found by API id and group name.
 */
export const apiOf = <G extends HttpApiGroup.HttpApiGroup.Any>(group: G) => HttpApi.make(API_ID).add(group)

/**
 * The router's settings. find-my-way refuses to match a path parameter longer than
 * `maxParamLength` (100 by default), which made names and versions of 101–128 characters
 * creatable but unreachable (405). Every handler validates its own parameters and answers
 * a 400 naming the field (params.ts), and Node's header size limit already bounds the
 * request line, so the router does not limit them.
 */
export const ROUTER_CONFIG = { maxParamLength: Number.POSITIVE_INFINITY } as const

/** JSON control bodies are capped at 1 MiB; a larger body is a 413 (json-body.ts). */
export const JSON_BODY_LIMIT = 1024 * 1024

// Route table: the API's endpoints as data, for 405s, ops-only 503s and metric labels.

export interface RouteEntry {
  readonly method: string
  /** e.g. `/v1/uploads/:upload_id/parts/:part_number` */
  readonly path: string
  /** The path as an OpenTelemetry route template, e.g. `/v1/uploads/{upload_id}/parts/{part_number}`. */
  readonly template: string
  /** Metric / log label, e.g. `PUT /v1/uploads/{upload_id}/parts/{part_number}`. */
  readonly label: string
  readonly group: string
  /** Whether a bearer principal is required (the route carries a security middleware). */
  readonly protected: boolean
  /** Whether the endpoint declares a JSON payload (raw part uploads do not). */
  readonly jsonBody: boolean
  readonly segments: ReadonlyArray<string>
}

export interface RouteTable {
  readonly routes: ReadonlyArray<RouteEntry>
  /** The route serving `method` + `pathname` (HEAD falls back to GET), if any. */
  readonly match: (method: string, pathname: string) => RouteEntry | undefined
  /** Methods that would serve `pathname` (for 405 `Allow`). */
  readonly allowed: (pathname: string) => ReadonlyArray<string>
}

const splitPath = (pathname: string) => pathname.split("/").slice(1)

const segmentsMatch = (pattern: ReadonlyArray<string>, actual: ReadonlyArray<string>) =>
  pattern.length === actual.length &&
  pattern.every((p, i) => p.startsWith(":") ? actual[i] !== "" : p === actual[i])

export const makeRouteTable = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<Id, Groups, E, R>,
  extra: ReadonlyArray<{ readonly method: string; readonly path: string; readonly group: string }> = []
): RouteTable => {
  const routes: Array<RouteEntry> = []
  HttpApi.reflect(api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, group, middleware, payloads }) => {
      const isProtected = [...middleware].some((tag) => HttpApiMiddleware.SecurityTypeId in tag)
      const template = endpoint.path.replace(/:(\w+)/g, "{$1}")
      routes.push({
        method: endpoint.method,
        path: endpoint.path,
        template,
        label: `${endpoint.method} ${template}`,
        group: group.identifier,
        protected: isProtected,
        jsonBody: payloads.size > 0 && endpoint.method !== "GET",
        segments: splitPath(endpoint.path)
      })
    }
  })
  for (const route of extra) {
    routes.push({
      ...route,
      template: route.path,
      label: `${route.method} ${route.path}`,
      protected: false,
      jsonBody: false,
      segments: splitPath(route.path)
    })
  }
  // Routes by method and segment count: a request is compared with the few routes that
  // can match it, not the whole table (this runs twice per request).
  const byShape = new Map<string, Array<RouteEntry>>()
  for (const route of routes) {
    const shape = `${route.method} ${route.segments.length}`
    const list = byShape.get(shape)
    if (list) list.push(route)
    else byShape.set(shape, [route])
  }
  const find = (method: string, actual: ReadonlyArray<string>) =>
    byShape.get(`${method} ${actual.length}`)?.find((r) => segmentsMatch(r.segments, actual))
  return {
    routes,
    match: (method, pathname) => {
      const actual = splitPath(pathname)
      return find(method, actual) ?? (method === "HEAD" ? find("GET", actual) : undefined)
    },
    allowed: (pathname) => {
      const actual = splitPath(pathname)
      const methods = new Set(routes.filter((r) => segmentsMatch(r.segments, actual)).map((r) => r.method))
      if (methods.has("GET")) methods.add("HEAD")
      return [...methods].sort()
    }
  }
}

/** Span name of a request: `<METHOD> <route template>` (OpenTelemetry HTTP conventions). */
export const spanNameOf = (routes: RouteTable) => (request: HttpServerRequest.HttpServerRequest): string => {
  const route = routes.match(request.method, pathnameOf(request.url))
  return `${request.method} ${route ? route.template : "unmatched"}`
}

export const pathnameOf = (url: string) => {
  const q = url.indexOf("?")
  return q === -1 ? url : url.slice(0, q)
}
