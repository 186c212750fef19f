import * as http from "node:http"

/**
 * A stand-in OpenTelemetry collector: an HTTP server on 127.0.0.1 that stores what
 * OTLP/HTTP (JSON) exporters post to `/v1/traces`.
 */
export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string
  readonly name: string
  readonly kind: number
  readonly attributes: Record<string, unknown>
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  readonly serviceName: string
}

/** One request an exporter made: its path and the `service.name` of each resource in it. */
export interface ReceivedPost {
  readonly path: string
  readonly serviceNames: ReadonlyArray<string>
}

export interface OtlpReceiver {
  readonly endpoint: string
  readonly port: number
  readonly requests: () => number
  readonly posts: () => ReadonlyArray<ReceivedPost>
  readonly spans: () => ReadonlyArray<ReceivedSpan>
  readonly close: () => Promise<void>
}

interface AnyValue {
  stringValue?: string
  intValue?: string | number
  boolValue?: boolean
  doubleValue?: number
}
interface KeyValue {
  key: string
  value: AnyValue
}

const valueOf = (v: AnyValue): unknown =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue

const attrs = (list: ReadonlyArray<KeyValue> | undefined) =>
  Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]))

/** Listens on `host`:`port` (default 127.0.0.1 and any free port). */
export const startOtlpReceiver = async (port = 0, host = "127.0.0.1"): Promise<OtlpReceiver> => {
  const spans: Array<ReceivedSpan> = []
  const posts: Array<ReceivedPost> = []
  let requests = 0
  const server = http.createServer((req, res) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => (body += chunk))
    req.on("end", () => {
      requests++
      const serviceNames: Array<string> = []
      posts.push({ path: req.url ?? "", serviceNames })
      if (req.url === "/v1/traces") {
        let parsed: unknown
        try {
          parsed = JSON.parse(body)
        } catch {
          res.writeHead(400).end()
          return
        }
        const payload = parsed as {
          resourceSpans?: Array<{
            resource?: { attributes?: Array<KeyValue> }
            scopeSpans?: Array<{
              spans?: Array<{
                traceId: string
                spanId: string
                parentSpanId?: string
                name: string
                kind: number
                attributes?: Array<KeyValue>
                links?: Array<{ traceId: string; spanId: string }>
              }>
            }>
          }>
        }
        for (const rs of payload.resourceSpans ?? []) {
          const serviceName = String(attrs(rs.resource?.attributes)["service.name"] ?? "")
          serviceNames.push(serviceName)
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId ?? "",
                name: s.name,
                kind: s.kind,
                attributes: attrs(s.attributes),
                links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
                serviceName
              })
            }
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" })
      res.end("{}")
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, host, resolve)
  })
  const address = server.address()
  const bound = typeof address === "object" && address !== null ? address.port : 0
  return {
    endpoint: `http://${host.includes(":") ? `[${host}]` : host}:${bound}`,
    port: bound,
    requests: () => requests,
    posts: () => posts,
    spans: () => spans,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
