import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { beginUpload, completeUpload, getUpload, putPart, waitForUploadState } from "../support/uploads.js"
import { storeOf, STORES } from "../uploads/fixtures.js"
import { type Blob, blobOf, deleteDraft, download, draftCiting, expectDownloads, runGc } from "./fixtures.js"

/**
 * The collector racing clients (issue 16: "never delete a blob that something references at
 * the moment it deletes it"). A loop runs collections back to back, grace period 0, while a
 * client, round after round, makes one digest unreferenced (deletes the draft citing it),
 * uploads that same digest again and cites it from a new draft — half the rounds citing
 * before the upload, half after. Whatever the interleaving:
 * - an upload ends `ready` with its object present, or `failed`, and uploading again works;
 * - once a draft cites the digest and an upload of it has ended `ready` after that, the blob
 *   downloads with the right sha256 (a blob collected between `ready` and the citation is
 *   the allowed case: the client uploads again, like publish would ask);
 * - afterwards every digest a draft cites downloads, and every blob row has its object.
 */

const ROUNDS = 30

/** Begin → parts → complete → `ready`|`failed`; begin may answer `ready` at once. */
const uploadOnce = async (app: TestApp, token: string, blob: Blob) => {
  const begun = await beginUpload(app, token, { expected_digest: blob.digest, expected_size_bytes: blob.size })
  if (begun.session.state === "ready") return "ready" as const
  const half = 5 * 1024 * 1024
  const parts = blob.size > half
    ? [
      await putPart(app, token, begun.session.id, 1, blob.bytes.subarray(0, half)),
      await putPart(app, token, begun.session.id, 2, blob.bytes.subarray(half))
    ]
    : [await putPart(app, token, begun.session.id, 1, blob.bytes)]
  await completeUpload(app, token, begun.session.id, parts)
  const done = await waitForUploadState(app, begun.session.id, ["ready", "failed"], 60_000)
  if (done.state === "failed") {
    expect((await getUpload(app, begun.session.id)).failure_reason).toBe("staged_object_missing")
  }
  return done.state as "ready" | "failed"
}

/** Uploads until an upload ends `ready` (a `failed` one is the clean failure the protocol allows). */
const uploadUntilReady = async (app: TestApp, token: string, blob: Blob) => {
  for (let attempt = 1; attempt <= 10; attempt++) {
    if (await uploadOnce(app, token, blob) === "ready") return attempt
  }
  throw new Error(`no upload of ${blob.digest} ended ready in 10 attempts`)
}

for (const store of STORES) {
  describe(`garbage collection racing uploads and citations (${store})`, () => {
    let app: TestApp
    let writer: string
    let manager: string

    beforeAll(async () => {
      app = await startTestApp({
        store,
        settings: {
          "gc-enabled": "false",
          "gc-grace-period": "0s",
          "cas-promotion-error-backoff": "50ms",
          "cas-promotion-error-backoff-max": "200ms",
          "cas-promotion-circuit-breaker-failures": "1000"
        }
      })
      writer = await app.tokenFor("content-writer")
      manager = await app.tokenFor("auth-manager")
    })
    afterAll(() => app.close())

    it(
      `keeps every cited digest downloadable over ${ROUNDS} rounds of collect vs. upload + cite of the same digest`,
      async () => {
        const contested = blobOf(6 * 1024 * 1024 + 123, 41)
        const kept: Array<Blob> = []
        let collecting = true
        let runs = 0
        let collected = 0
        const collector = (async () => {
          while (collecting) {
            const report = await runGc(app, manager, false)
            runs += 1
            collected += report.blobs
          }
        })()
        let reuploads = 0
        try {
          for (let round = 1; round <= ROUNDS; round++) {
            const version = `r${round}`
            if (round % 2 === 0) {
              // Cited first, then uploaded: from `ready` on the blob must stay.
              await draftCiting(app, writer, "gc-race", version, contested)
              reuploads += (await uploadUntilReady(app, writer, contested)) - 1
            } else {
              // Uploaded first, then cited: it may be collected in between (grace 0); upload again.
              reuploads += (await uploadUntilReady(app, writer, contested)) - 1
              await draftCiting(app, writer, "gc-race", version, contested)
              if ((await download(app, contested.digest)).status === 404) {
                reuploads += await uploadUntilReady(app, writer, contested)
              }
            }
            await expectDownloads(app, contested)
            // Every fifth round also keeps a distinct digest cited for good.
            if (round % 5 === 0) {
              const other = blobOf(4096 + round, 100 + round)
              await uploadUntilReady(app, writer, other)
              await draftCiting(app, writer, "gc-race-kept", version, other)
              if ((await download(app, other.digest)).status === 404) await uploadUntilReady(app, writer, other)
              kept.push(other)
            }
            // The contested digest goes unreferenced again for the next round.
            if (round < ROUNDS) await deleteDraft(app, writer, "gc-race", version)
          }
        } finally {
          collecting = false
          await collector
        }
        // The collector really collected the contested digest between rounds.
        expect(runs).toBeGreaterThan(ROUNDS)
        expect(collected).toBeGreaterThan(0)

        await runGc(app, manager, false)
        for (const blob of [contested, ...kept]) await expectDownloads(app, blob)
        // Every blob row has its object, and no collection was left half-done.
        expect(await query(app, "SELECT count(*)::int AS n FROM gc_blob_deletions")).toEqual([{ n: 0 }])
        const rows = await query<{ digest: string; size_bytes: string }>(
          app,
          "SELECT digest, size_bytes FROM cas_blobs"
        )
        const objects = storeOf(app)
        try {
          for (const row of rows) {
            expect(await objects.casSize(row.digest), row.digest).toBe(Number(row.size_bytes))
            expect(casKey(row.digest as Blob["digest"])).toContain(row.digest.slice(7))
          }
        } finally {
          await objects.dispose()
        }
        // For the report: how often the protocol made the client upload again.
        process.stdout.write(
          `${store}: ${runs} collections, ${collected} blobs collected, ${reuploads} uploads repeated\n`
        )
      },
      300_000
    )
  })
}
