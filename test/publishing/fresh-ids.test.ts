import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Ref } from "effect"
import { CatalogRepositoryLive } from "../../src/catalog/repository.js"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { PublishRepositoryLive } from "../../src/publishing/repository.js"
import { Publishing, PublishingLive, PublishWakeLive } from "../../src/publishing/service.js"
import { TestDatabaseLive } from "../support/harness.js"
import { publishableDraft } from "./drafts.js"

/**
 * A publish takes its job and step ids from `FreshIds` (src/platform/fresh-ids.ts), so a
 * test can fix them, and they reach the stored job as given.
 */

const ServiceLive = PublishingLive.pipe(
  Layer.provideMerge(Layer.mergeAll(PublishRepositoryLive, CatalogRepositoryLive, PublishWakeLive)),
  Layer.provideMerge(TestDatabaseLive)
)

layer(ServiceLive)("publish ids", (it) => {
  it.effect("come from FreshIds, in order: the job's, then its three steps'", () =>
    Effect.gen(function*() {
      yield* publishableDraft("fixed-ids")
      const fixed = [1, 2, 3, 4].map((n) => `00000000-0000-4000-8000-00000000000${n}`)
      const next = yield* Ref.make(0)
      const ids = { uuid: Ref.getAndUpdate(next, (n) => n + 1).pipe(Effect.map((n) => fixed[n]!)) }
      const publishing = yield* Publishing
      const { job, steps } = yield* publishing.publish("fixed-ids", "1").pipe(Effect.provideService(FreshIds, ids))
      expect(job.id).toBe(fixed[0])
      expect(steps.map((s) => [s.sequence, s.id, s.job_id])).toEqual([
        [10, fixed[1], fixed[0]],
        [20, fixed[2], fixed[0]],
        [30, fixed[3], fixed[0]]
      ])
      expect(yield* Ref.get(next)).toBe(4)
    }))
})
