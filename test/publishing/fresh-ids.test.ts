import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Ref } from "effect"
import { randomUUID } from "node:crypto"
import { CatalogRepositoryLive } from "../../src/catalog/repository.js"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { PublishRepositoryLive } from "../../src/publishing/repository.js"
import { Publishing, PublishingLive, PublishWakeLive } from "../../src/publishing/service.js"
import { TestDatabaseLive } from "../support/harness.js"

/**
 * A publish takes its job and step ids from `FreshIds` (src/platform/fresh-ids.ts), so a
 * test can fix them, and they reach the stored job as given.
 */

const ServiceLive = PublishingLive.pipe(
  Layer.provideMerge(Layer.mergeAll(PublishRepositoryLive, CatalogRepositoryLive, PublishWakeLive)),
  Layer.provideMerge(TestDatabaseLive)
)

/** A publishable draft (one artifact citing a verified blob of its size), set up with plain SQL. */
const publishableDraft = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const imageId = randomUUID()
    const versionId = randomUUID()
    const digest = `sha256:${randomUUID().replace(/-/g, "").repeat(2)}`
    yield* sql`INSERT INTO images (id, name) VALUES (${imageId}, ${name})`
    yield* sql`INSERT INTO image_versions (id, image_id, version) VALUES (${versionId}, ${imageId}, '1')`
    yield* sql`INSERT INTO cas_blobs (digest, size_bytes, storage_key)
               VALUES (${digest}, 1, ${casKey(digest as Parameters<typeof casKey>[0])})`
    yield* sql`INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
                 primary_blob_digest, primary_blob_size_bytes, primary_media_type)
               VALUES (${randomUUID()}, ${versionId}, 'linux', 'x86_64', 'raw', ${digest}, 1, 'x')`
  })

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
