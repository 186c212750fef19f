import { Effect, Layer } from "effect"
import { registerCollector, type Sample } from "../platform/observability/metrics.js"
import { databaseFailure } from "../platform/storage/sql-errors.js"
import { PublishRepository } from "./repository.js"

/**
 * Durable publishing state as gauges computed at scrape time (domain.md §7.2): only
 * states that have rows are emitted, age gauges only when a step qualifies.
 */
export const PublishMetricsLive = Layer.effectDiscard(Effect.gen(function*() {
  const repo = yield* PublishRepository
  yield* registerCollector(
    "publish",
    Effect.gen(function*() {
      const [jobs, steps, ages, publishing, projection] = yield* Effect.all(
        [repo.jobCounts, repo.stepCounts, repo.oldestStepAges, repo.versionsPublishing, repo.projectionRows],
        { concurrency: 2 }
      ).pipe(databaseFailure)
      const samples: Array<Sample> = [
        ...jobs.map((r): Sample => ({
          name: "imgsrv_publish_jobs",
          help: "Publish jobs by state.",
          type: "gauge",
          labels: { state: r.state },
          value: r.value
        })),
        ...steps.map((r): Sample => ({
          name: "imgsrv_publish_steps",
          help: "Publish job steps by step name and state.",
          type: "gauge",
          labels: { step: r.label, state: r.state },
          value: r.value
        })),
        ...ages.map((r): Sample => ({
          name: r.state === "queued"
            ? "imgsrv_publish_step_oldest_queued_age_seconds"
            : "imgsrv_publish_step_oldest_running_age_seconds",
          help: r.state === "queued"
            ? "Age of the oldest due queued publish step, by step."
            : "Age of the oldest running publish step's claim, by step.",
          type: "gauge",
          labels: { step: r.label },
          value: r.value
        })),
        {
          name: "imgsrv_publish_versions_publishing",
          help: "Image versions currently in the publishing state.",
          type: "gauge",
          value: publishing
        },
        {
          name: "imgsrv_incus_projection_rows",
          help: "Rows of the Simple Streams projection (published or not yet).",
          type: "gauge",
          value: projection
        }
      ]
      return samples
    })
  )
}))
