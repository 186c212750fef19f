import { FetchHttpClient } from "@effect/platform"
import { Effect, FiberRef, Layer, Option, Tracer } from "effect"

/**
 * Work begun by a request and finished by a background worker (complete → promotion,
 * publish → steps) is tied back to the request's trace: the request stores its W3C
 * `traceparent` with the queued work, and the worker's span links to it.
 */

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The current span as a W3C `traceparent` value, if there is a span. */
export const currentTraceParent: Effect.Effect<string | undefined> = Effect.map(
  Effect.currentSpan.pipe(Effect.option),
  Option.match({
    onNone: () => undefined,
    onSome: (span) => {
      const value = `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`
      // With tracing off, spans are no-ops without real ids: nothing worth storing.
      return TRACEPARENT.test(value) ? value : undefined
    }
  })
)

/** Parses a stored `traceparent` into an external span usable as a link or parent. */
export const spanFromTraceParent = (traceParent: string | null | undefined): Option.Option<Tracer.ExternalSpan> => {
  const match = traceParent ? TRACEPARENT.exec(traceParent) : null
  if (!match) return Option.none()
  return Option.some(Tracer.externalSpan({
    traceId: match[1]!,
    spanId: match[2]!,
    sampled: match[3] === "01"
  }))
}

/**
 * Whether tracing was enabled where a background loop began an untraced poll (see
 * `untracedPoll`); None outside polls.
 */
const tracingOutsidePoll = FiberRef.unsafeMake<Option.Option<boolean>>(Option.none())

/**
 * Runs one poll of a background loop with tracing switched off. Most polls find an
 * empty queue; traced, each would export a root trace of its claim query — several a
 * second per replica, burying the traces that matter. The unit of work a poll does
 * find is traced again by `withLinkedSpan`.
 */
export const untracedPoll = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(FiberRef.get(FiberRef.currentTracerEnabled), (enabled) =>
    effect.pipe(
      Effect.withTracerEnabled(false),
      Effect.locally(tracingOutsidePoll, Option.some(enabled))
    ))

/**
 * Runs `effect` in a new root span named `name` that links to the span recorded
 * in `traceParent` (when present): the worker's trace stays its own, and tracing
 * backends show the originating request next to it. Inside an `untracedPoll`, tracing
 * is restored to what it was outside the poll.
 */
export const withLinkedSpan = (
  name: string,
  traceParent: string | null | undefined,
  attributes: Record<string, unknown> = {}
) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const spanned = Option.match(spanFromTraceParent(traceParent), {
    onNone: () => Effect.withSpan(effect, name, { attributes, root: true }),
    onSome: (origin) =>
      Effect.withSpan(effect, name, {
        attributes,
        root: true,
        links: [{ _tag: "SpanLink", span: origin, attributes: { "imgsrv.link": "originating-request" } }]
      })
  })
  return Effect.flatMap(FiberRef.get(tracingOutsidePoll), (outside) =>
    Option.match(outside, {
      onNone: () => spanned,
      onSome: (enabled) => Effect.withTracerEnabled(spanned, enabled)
    }))
}

/**
 * Trace export: OTLP/HTTP (JSON) to `<endpoint>/v1/traces` when an endpoint is
 * configured; otherwise the tracer is switched off entirely, so spans cost nothing —
 * and the exporter's modules are not even loaded (they cost memory in every process).
 */
export const TracingLive = (
  otel: Option.Option<{ readonly endpoint: string; readonly serviceName: string }>,
  serviceVersion: string
): Layer.Layer<never> =>
  Option.match(otel, {
    onNone: () => Layer.setTracerEnabled(false),
    onSome: ({ endpoint, serviceName }) =>
      Layer.unwrapEffect(
        Effect.promise(() =>
          Promise.all([import("@effect/opentelemetry/OtlpTracer"), import("@effect/opentelemetry/OtlpSerialization")])
        ).pipe(Effect.map(([OtlpTracer, OtlpSerialization]) =>
          OtlpTracer.layer({
            url: `${endpoint}/v1/traces`,
            resource: { serviceName, serviceVersion },
            exportInterval: "2 seconds",
            shutdownTimeout: "5 seconds"
          }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
        ))
      )
  })
