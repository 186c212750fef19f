import { Effect, Layer, Metric } from "effect"

/** Garbage collection metrics (README "Operate"; docs/gc.md). */

export const GC_RUN_OUTCOMES = ["completed", "dry_run", "failed", "skipped"] as const
export type GcRunOutcome = (typeof GC_RUN_OUTCOMES)[number]

export const gcRuns = Metric.counter("imgsrv_gc_runs_total", {
  description:
    "Garbage collection runs by outcome: completed, dry_run, failed, skipped (another replica was collecting).",
  incremental: true
})
export const gcReclaimedBlobs = Metric.counter("imgsrv_gc_reclaimed_blobs_total", {
  description: "CAS blobs deleted by the garbage collector.",
  incremental: true
})
export const gcReclaimedBytes = Metric.counter("imgsrv_gc_reclaimed_bytes_total", {
  description: "Bytes of the CAS blobs deleted by the garbage collector.",
  incremental: true
})
export const gcCandidates = Metric.gauge("imgsrv_gc_candidates", {
  description: "Blobs collectable at the start of the last run (dry runs included)."
})

/** The series exist from the start (at 0), so `increase(...)` alerts see the first change. */
export const GcMetricsLive = Layer.effectDiscard(Effect.gen(function*() {
  for (const outcome of GC_RUN_OUTCOMES) yield* Metric.incrementBy(Metric.tagged(gcRuns, "outcome", outcome), 0)
  yield* Metric.incrementBy(gcReclaimedBlobs, 0)
  yield* Metric.incrementBy(gcReclaimedBytes, 0)
  yield* Metric.set(gcCandidates, 0)
}))
