import {
  Context,
  Effect,
  Layer,
  Metric,
  MetricBoundaries,
  MetricKeyType,
  MetricState,
  Option,
  Ref,
  Runtime
} from "effect"
import type { MetricLabel, MetricPair } from "effect"
import * as http from "node:http"
import type { ListenAddress } from "../config/config.js"
import { ListenFailed } from "../http/listen.js"

/**
 * Prometheus exposition of Effect's metric registry plus samples computed at
 * scrape time (queue depths read from PostgreSQL, process figures). Served on a
 * separate listener, never on the API port (api.md §1.1).
 *
 * Label values must stay bounded: states, operations, route templates, outcomes —
 * never ids, digests, names or raw paths.
 */

/** One sample produced at scrape time (`info`: always 1, its labels are the data; a gauge in Prometheus text). */
export interface Sample {
  readonly name: string
  readonly help: string
  readonly type: "gauge" | "counter" | "info"
  readonly labels?: Readonly<Record<string, string>>
  readonly value: number
}

/** Something that computes samples when `/metrics` is scraped. A failing collector only drops its own series. */
export type Collector = Effect.Effect<ReadonlyArray<Sample>, unknown>

/** Where features register their scrape-time collectors. */
export class ScrapeCollectors extends Context.Tag("imgsrv/ScrapeCollectors")<ScrapeCollectors, {
  readonly register: (name: string, collector: Collector) => Effect.Effect<void>
  readonly collect: Effect.Effect<ReadonlyArray<Sample>>
}>() {}

export const ScrapeCollectorsLive = Layer.effect(
  ScrapeCollectors,
  Effect.gen(function*() {
    const collectors = yield* Ref.make(new Map<string, Collector>())
    return {
      register: (name, collector) => Ref.update(collectors, (m) => new Map(m).set(name, collector)),
      collect: Effect.gen(function*() {
        const all = yield* Ref.get(collectors)
        const results = yield* Effect.forEach(
          all.entries(),
          ([name, collector]) =>
            collector.pipe(
              Effect.timeout("5 seconds"),
              Effect.tapErrorCause((cause) =>
                Effect.logWarning("metrics collector failed").pipe(Effect.annotateLogs({ collector: name, cause }))
              ),
              Effect.orElseSucceed(() => [] as ReadonlyArray<Sample>)
            ),
          { concurrency: "unbounded" }
        )
        return results.flat()
      })
    }
  })
)

/** Registers a scrape-time collector for the lifetime of the layer that calls it. */
export const registerCollector = (name: string, collector: Collector) =>
  Effect.flatMap(ScrapeCollectors, (c) => c.register(name, collector))

/** Buckets for latencies from 1 ms to ~65 s. */
export const latencyBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 17 })

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const renderLabels = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`

const formatNumber = (n: number) =>
  n === Number.POSITIVE_INFINITY
    ? "+Inf"
    : n === Number.NEGATIVE_INFINITY
    ? "-Inf"
    : Number.isNaN(n)
    ? "NaN"
    : String(n)

/**
 * The two exposition formats served: Prometheus text 0.0.4, and OpenMetrics 1.0.0 for a
 * scraper that asks for it (`Accept: application/openmetrics-text`), as the reference's
 * Go exporter does.
 */
export type ExpositionFormat = "prometheus" | "openmetrics"

export const EXPOSITION_CONTENT_TYPES: Record<ExpositionFormat, string> = {
  prometheus: "text/plain; version=0.0.4; charset=utf-8",
  openmetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
}

/** OpenMetrics when the `Accept` header lists it with a non-zero quality, else Prometheus text. */
export const negotiateExposition = (accept: string | undefined): ExpositionFormat =>
  (accept ?? "").split(",").some((range) => {
      const [type, ...parameters] = range.split(";").map((part) => part.trim().toLowerCase())
      const q = parameters.find((p) => p.startsWith("q="))
      return type === "application/openmetrics-text" && (q === undefined || Number(q.slice(2)) > 0)
    })
    ? "openmetrics"
    : "prometheus"

interface Family {
  type: string
  help: string
  lines: Array<string>
}

/**
 * An Effect counter not declared `incremental` may go down (`effect_fiber_active` counts
 * fibers alive): it is exported as the gauge it is, since Prometheus reads every decrease
 * of a counter as a reset.
 */
const counterType = (pair: MetricPair.MetricPair.Untyped): "counter" | "gauge" =>
  MetricKeyType.isCounterKey(pair.metricKey.keyType) && pair.metricKey.keyType.incremental ? "counter" : "gauge"

/**
 * Renders registry metrics and scrape-time samples in `format`. In OpenMetrics a counter
 * family is named without `_total` and its samples with it (`effect_fiber_started` becomes
 * family `effect_fiber_started`, sample `effect_fiber_started_total`), an info family
 * (`target_info`) is typed `info`, and the text ends with `# EOF`.
 */
export const renderExposition = (
  pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>,
  samples: ReadonlyArray<Sample>,
  format: ExpositionFormat = "prometheus"
): string => {
  const open = format === "openmetrics"
  const families = new Map<string, Family>()
  const family = (name: string, type: string, help: string) => {
    let f = families.get(name)
    if (!f) {
      f = { type, help, lines: [] }
      families.set(name, f)
    }
    return f
  }
  /** The family a sample of `name` belongs to, and the name of that sample, for a counter or info series. */
  const named = (name: string, type: string): { readonly family: string; readonly sample: string } => {
    if (!open) return { family: name, sample: name }
    if (type === "counter") {
      const base = name.endsWith("_total") ? name.slice(0, -"_total".length) : name
      return { family: base, sample: `${base}_total` }
    }
    if (type === "info") return { family: name.replace(/_info$/, ""), sample: name }
    return { family: name, sample: name }
  }
  const add = (
    name: string,
    type: string,
    help: string,
    labels: ReadonlyArray<readonly [string, string]>,
    v: number
  ) => {
    const { family: f, sample } = named(name, type)
    family(f, open || type !== "info" ? type : "gauge", help).lines.push(
      `${sample}${renderLabels(labels)} ${formatNumber(v)}`
    )
  }
  for (const pair of pairs) {
    const key = pair.metricKey
    const name = key.name
    const labels = key.tags.map((t) => [t.key, t.value] as const).sort(([a], [b]) => a.localeCompare(b))
    const help = Option.getOrElse(key.description, () => name)
    const state = pair.metricState
    if (MetricState.isCounterState(state)) {
      add(name, counterType(pair), help, labels, Number(state.count))
    } else if (MetricState.isGaugeState(state)) {
      add(name, "gauge", help, labels, Number(state.value))
    } else if (MetricState.isHistogramState(state)) {
      const f = family(name, "histogram", help)
      let sawInf = false
      for (const [le, count] of state.buckets) {
        if (le === Number.POSITIVE_INFINITY) sawInf = true
        f.lines.push(`${name}_bucket${renderLabels([...labels, ["le", formatNumber(le)]])} ${count}`)
      }
      if (!sawInf) f.lines.push(`${name}_bucket${renderLabels([...labels, ["le", "+Inf"]])} ${state.count}`)
      f.lines.push(`${name}_sum${renderLabels(labels)} ${formatNumber(state.sum)}`)
      f.lines.push(`${name}_count${renderLabels(labels)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      for (const [value, count] of state.occurrences) add(name, "counter", help, [...labels, ["value", value]], count)
    } else if (MetricState.isSummaryState(state)) {
      const f = family(name, "summary", help)
      for (const [q, v] of state.quantiles) {
        if (Option.isSome(v)) {
          f.lines.push(`${name}${renderLabels([...labels, ["quantile", String(q)]])} ${formatNumber(v.value)}`)
        }
      }
      f.lines.push(`${name}_sum${renderLabels(labels)} ${formatNumber(state.sum)}`)
      f.lines.push(`${name}_count${renderLabels(labels)} ${state.count}`)
    }
  }
  for (const sample of samples) {
    const labels = Object.entries(sample.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))
    add(sample.name, sample.type, sample.help, labels, sample.value)
  }
  const out: Array<string> = []
  for (const [name, f] of [...families.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const help = f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
    out.push(`# HELP ${name} ${open ? help.replace(/"/g, "\\\"") : help}`)
    out.push(`# TYPE ${name} ${f.type}`)
    out.push(...f.lines)
  }
  if (open) out.push("# EOF")
  return `${out.join("\n")}\n`
}

const processStart = Date.now() / 1000 - process.uptime()

/** Process figures every Prometheus job expects. */
export const processSamples = (): ReadonlyArray<Sample> => {
  const mem = process.memoryUsage()
  const cpu = process.cpuUsage()
  return [
    { name: "process_resident_memory_bytes", help: "Resident set size in bytes.", type: "gauge", value: mem.rss },
    {
      name: "process_cpu_seconds_total",
      help: "User and system CPU time in seconds.",
      type: "counter",
      value: (cpu.user + cpu.system) / 1e6
    },
    {
      name: "process_start_time_seconds",
      help: "Start time of the process since the epoch, in seconds.",
      type: "gauge",
      value: processStart
    },
    { name: "nodejs_heap_used_bytes", help: "V8 heap in use, in bytes.", type: "gauge", value: mem.heapUsed },
    {
      name: "nodejs_external_memory_bytes",
      help: "Memory of C++ objects bound to JS objects, in bytes.",
      type: "gauge",
      value: mem.external
    }
  ]
}

/** What `target_info` says about this process (the OpenTelemetry resource, as the reference exports it). */
export interface MetricsTarget {
  readonly serviceName: string
  readonly serviceVersion: string
}

/** `target_info{service_name, service_version} 1`: lets dashboards tell replicas' versions apart. */
export const targetSample = (target: MetricsTarget): Sample => ({
  name: "target_info",
  help: "Target metadata.",
  type: "info",
  labels: { service_name: target.serviceName, service_version: target.serviceVersion },
  value: 1
})

/**
 * Metric label arrays by key, one stable array each, for labels with bounded values. Effect
 * finds a metric's series for an update by the identity of the label array it is given (a
 * WeakMap), while `Metric.tagged` builds a new array — a new metric key, a hash and a
 * registry lookup — on every update, which costs more than the work being counted.
 */
export const makeLabelCache = () => {
  const cache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  return (key: string, make: () => ReadonlyArray<MetricLabel.MetricLabel>): ReadonlyArray<MetricLabel.MetricLabel> => {
    let labels = cache.get(key)
    if (labels === undefined) {
      labels = make()
      cache.set(key, labels)
    }
    return labels
  }
}

/** The complete exposition: registry + collectors + process. */
export const scrape = (target?: MetricsTarget, format: ExpositionFormat = "prometheus") =>
  Effect.gen(function*() {
    const collectors = yield* ScrapeCollectors
    const samples = yield* collectors.collect
    const pairs = yield* Metric.snapshot
    return renderExposition(
      pairs,
      [...samples, ...processSamples(), ...(target ? [targetSample(target)] : [])],
      format
    )
  })

/**
 * The metrics listener: a plain node:http server answering `GET|HEAD <path>` with
 * the exposition (Prometheus text, or OpenMetrics when asked for) and 404 for anything
 * else. Closed with its Scope.
 */
export const MetricsServerLive = (options: {
  readonly listen: ListenAddress
  readonly path: string
  readonly target?: MetricsTarget
}) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    // Run in this layer's runtime, so a failure is logged by the app's logger (stderr, JSON).
    const run = Runtime.runPromise(yield* Effect.runtime<ScrapeCollectors>())
    const render = (format: ExpositionFormat) =>
      scrape(options.target, format).pipe(
        Effect.tapErrorCause((cause) => Effect.logError("metrics rendering failed", cause))
      )
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://metrics")
      if ((req.method === "GET" || req.method === "HEAD") && url.pathname === options.path) {
        const format = negotiateExposition(req.headers.accept)
        run(render(format)).then(
          (body) => {
            res.writeHead(200, { "content-type": EXPOSITION_CONTENT_TYPES[format] })
            res.end(req.method === "HEAD" ? undefined : body)
          },
          () => {
            res.writeHead(500, { "content-type": "text/plain; charset=utf-8" })
            res.end("metrics rendering failed\n")
          }
        )
        return
      }
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" })
      res.end("404 page not found\n")
    })
    yield* Effect.acquireRelease(
      Effect.async<void, ListenFailed>((resume) => {
        server.once("error", (error) => resume(Effect.fail(new ListenFailed({ address: options.listen, error }))))
        server.listen(options.listen.port, options.listen.host, () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    const address = server.address()
    yield* Effect.logInfo("http server listening").pipe(
      Effect.annotateLogs({
        name: "metrics",
        addr: typeof address === "object" && address !== null ? `${address.address}:${address.port}` : String(address),
        path: options.path
      })
    )
  }))
