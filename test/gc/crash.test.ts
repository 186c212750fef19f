import { existsSync } from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Sha256Digest } from "../../src/contract/digest.js"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { query, seedBlob } from "../support/blobs.js"
import { apiClient, createDatabase, startTestApp, tempDir } from "../support/harness.js"
import { freePort, spawnImgsrv, waitForStatus } from "../support/process.js"
import { testBytes } from "../support/uploads.js"
import { type Blob, blobOf, draftCiting, expectDownloads, upload } from "./fixtures.js"

/**
 * kill -9 in the middle of a collection (issue 16): the real server runs as a process whose
 * start-up collection has hundreds of blobs to delete; the test kills it once some are gone
 * and others not, then starts it again. Nothing cited is lost, the collection completes
 * (half-done deletions included: no blob row without its object, no object of a collected
 * blob left behind), and no tombstone remains.
 */

const UNREFERENCED = 120

describe("garbage collection killed with SIGKILL mid-run", () => {
  let db: { url: string; drop: () => Promise<void> }
  let dataDir: string

  beforeAll(async () => {
    db = await createDatabase()
    dataDir = await tempDir()
  })
  afterAll(async () => {
    await db.drop()
  })

  it("loses nothing cited, and the next start completes the collection", async () => {
    // Set up with the in-process app (collector off): cited blobs and many unreferenced ones.
    const setup = await startTestApp({
      databaseUrl: db.url,
      dataDir,
      settings: { "gc-enabled": "false" }
    })
    const cited: Array<Blob> = []
    const unreferenced: Array<Sha256Digest> = []
    try {
      const writer = await setup.tokenFor("content-writer")
      for (let i = 0; i < 4; i++) {
        const blob = blobOf(2048 + i, 300 + i)
        await upload(setup, writer, blob)
        cited.push(blob)
      }
      await draftCiting(setup, writer, "gc-crash", "1.0", cited[0]!, cited[1]!)
      await draftCiting(setup, writer, "gc-crash", "2.0", cited[2]!, cited[3]!)
      for (let i = 0; i < UNREFERENCED; i++) {
        unreferenced.push((await seedBlob(setup, testBytes(512, 1000 + i))).digest)
      }
    } finally {
      await setup.close()
    }
    const root = setup.config.storage._tag === "filesystem" ? setup.config.storage.root : ""
    const objectExists = (digest: Sha256Digest) => existsSync(path.join(root, casKey(digest)))
    const rowCount = async () =>
      (await query<{ n: number }>({ databaseUrl: db.url }, "SELECT count(*)::int AS n FROM cas_blobs"))[0]!.n
    expect(await rowCount()).toBe(cited.length + UNREFERENCED)

    const port = await freePort()
    const env = {
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_LOG_FORMAT: "json",
      IMGSRV_GC_ENABLED: "true",
      IMGSRV_GC_GRACE_PERIOD: "0s",
      IMGSRV_GC_INTERVAL: "1h"
    }
    // The collection starts with the process; kill it once it is under way.
    const first = spawnImgsrv({ env })
    let remaining = await rowCount()
    const deadline = Date.now() + 120_000
    while (remaining > cited.length + UNREFERENCED / 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5))
      remaining = await rowCount()
    }
    first.child.kill("SIGKILL")
    await first.exited
    remaining = await rowCount()
    // Killed in the middle: some collected, some not.
    expect(remaining).toBeLessThan(cited.length + UNREFERENCED)
    expect(remaining).toBeGreaterThan(cited.length)
    const halfDone = await query<{ digest: Sha256Digest }>(
      { databaseUrl: db.url },
      "SELECT digest FROM gc_blob_deletions"
    )

    const second = spawnImgsrv({ env })
    try {
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204, 90_000)
      await second.waitFor(/"msg":"garbage collection run"/, 90_000)
      expect(await rowCount()).toBe(cited.length)
      expect(await query({ databaseUrl: db.url }, "SELECT count(*)::int AS n FROM gc_blob_deletions")).toEqual([
        { n: 0 }
      ])
      for (const digest of unreferenced) expect(objectExists(digest), digest).toBe(false)
      for (const { digest } of halfDone) expect(objectExists(digest), digest).toBe(false)
      const api = apiClient(`http://127.0.0.1:${port}`)
      for (const blob of cited) await expectDownloads(api, blob)
      process.stdout.write(
        `killed with ${remaining - cited.length}/${UNREFERENCED} blobs left, ${halfDone.length} half-done deletions\n`
      )
    } finally {
      await second.stop()
    }
  }, 300_000)
})
