import { Context, Effect, Layer, Metric, MetricBoundaries, MetricState, Option, Ref, Runtime } from "effect"
import type { MetricLabel, MetricPair } from "effect"
import * as http from "node:http"
import type { ListenAddress } from "./config.js"
import { ListenFailed } from "./listen.js"

/**
 * Prometheus exposition of Effect's metric registry plus samples computed at
 * scrape time (queue depths read from PostgreSQL, process figures). Served on a
 * separate listener, never on the API port (api.md §1.1).
 *
 * Label values must stay bounded: states, operations, route templates, outcomes —
 * never ids, digests, names or raw paths.
 */

/** One sample produced at scrape time. */
export interface Sample {
  readonly name: string
  readonly help: string
  readonly type: "gauge" | "counter"
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

interface Family {
  type: string
  help: string
  lines: Array<string>
}

/** Renders registry metrics and scrape-time samples as Prometheus text format 0.0.4. */
export const renderPrometheus = (
  pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>,
  samples: ReadonlyArray<Sample>
): string => {
  const families = new Map<string, Family>()
  const family = (name: string, type: string, help: string) => {
    let f = families.get(name)
    if (!f) {
      f = { type, help, lines: [] }
      families.set(name, f)
    }
    return f
  }
  for (const pair of pairs) {
    const key = pair.metricKey
    const name = key.name
    const labels = key.tags.map((t) => [t.key, t.value] as const).sort(([a], [b]) => a.localeCompare(b))
    const help = Option.getOrElse(key.description, () => name)
    const state = pair.metricState
    if (MetricState.isCounterState(state)) {
      family(name, "counter", help).lines.push(`${name}${renderLabels(labels)} ${formatNumber(Number(state.count))}`)
    } else if (MetricState.isGaugeState(state)) {
      family(name, "gauge", help).lines.push(`${name}${renderLabels(labels)} ${formatNumber(Number(state.value))}`)
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
      const f = family(name, "counter", help)
      for (const [value, count] of state.occurrences) {
        f.lines.push(`${name}${renderLabels([...labels, ["value", value]])} ${count}`)
      }
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
    family(sample.name, sample.type, sample.help).lines.push(
      `${sample.name}${renderLabels(labels)} ${formatNumber(sample.value)}`
    )
  }
  const out: Array<string> = []
  for (const [name, f] of [...families.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`# HELP ${name} ${f.help.replace(/\n/g, " ")}`)
    out.push(`# TYPE ${name} ${f.type}`)
    out.push(...f.lines)
  }
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
  type: "gauge",
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
export const scrape = (target?: MetricsTarget) =>
  Effect.gen(function*() {
    const collectors = yield* ScrapeCollectors
    const samples = yield* collectors.collect
    const pairs = yield* Metric.snapshot
    return renderPrometheus(pairs, [...samples, ...processSamples(), ...(target ? [targetSample(target)] : [])])
  })

/**
 * The metrics listener: a plain node:http server answering `GET|HEAD <path>` with
 * the exposition and 404 for anything else. Closed with its Scope.
 */
export const MetricsServerLive = (options: {
  readonly listen: ListenAddress
  readonly path: string
  readonly target?: MetricsTarget
}) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    // Run in this layer's runtime, so a failure is logged by the app's logger (stderr, JSON).
    const run = Runtime.runPromise(yield* Effect.runtime<ScrapeCollectors>())
    const render = scrape(options.target).pipe(
      Effect.tapErrorCause((cause) => Effect.logError("metrics rendering failed", cause))
    )
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://metrics")
      if ((req.method === "GET" || req.method === "HEAD") && url.pathname === options.path) {
        run(render).then(
          (body) => {
            res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
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
