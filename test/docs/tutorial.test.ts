import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { StoreKind } from "../support/harness.js"
import { describeRun, runBash, type ServedImgsrv, startServedImgsrv } from "../support/shell.js"

/**
 * The tutorial "Publish your first image" as a reader runs it: `tutorial.sh` (bash, curl,
 * jq, the tutorial's string splicing) against an imgsrv process, on both stores. Any step
 * that goes wrong fails the script, and with it this test.
 */

const script = fileURLToPath(new URL("tutorial.sh", import.meta.url))

for (const store of ["filesystem", "s3"] as const satisfies ReadonlyArray<StoreKind>) {
  describe(`the tutorial script (${store} store)`, () => {
    let server: ServedImgsrv
    beforeAll(async () => {
      server = await startServedImgsrv({ store })
    })
    afterAll(async () => {
      if (server) expect(await server.stop()).toBe(0)
    })

    it("runs from the bootstrap token to a byte-identical anonymous download", async () => {
      const result = await runBash(await readFile(script, "utf8"), {
        cwd: server.workDir,
        env: { API: server.baseUrl },
        timeoutMs: 90_000
      })
      expect(result.code, describeRun("tutorial.sh", result)).toBe(0)
      expect(result.stdout).toMatch(/^published tutorial 0\.1\.0: artifact \S+, disk sha256:[0-9a-f]{64}$/m)
    })
  })
}
