import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { sessionScript, shellBlocksOf } from "../support/doc-blocks.js"
import type { StoreKind } from "../support/harness.js"
import { describeRun, runBash, type ServedImgsrv, startServedImgsrv } from "../support/shell.js"

/**
 * The tutorial "Publish your first image" (docs/tutorial.md; the flow of api.md §5) as a reader
 * runs it: the page's shell blocks, exactly as shown, in one bash session against an imgsrv
 * process, on both stores. Only the block that starts the server is marked skipped; this test
 * starts the server the same way, stdout in `imgsrv.out`.
 *
 * The page uses the shell idioms readers copy: values read with `jq -r`, then spliced into JSON
 * bodies with '"$VAR"' quoting (step 4's `"etag": "'"$PART_ETAG"'"` is what broke when part
 * ETags carried S3's double quotes); request bodies sent with `-d`, without a JSON content type.
 * The session stops at the first thing that goes wrong (`set -Eeuo pipefail`, every curl with
 * `--fail-with-body`, polls that are bounded and give up on a `failed` state), so any step
 * that goes wrong fails this test.
 */

const page = "docs/tutorial.md"
const root = fileURLToPath(new URL("../..", import.meta.url))
const { blocks, problems } = shellBlocksOf(page, readFileSync(`${root}${page}`, "utf8"))

describe("the tutorial page", () => {
  it("has its steps as shell blocks, all run but the one that starts the server", () => {
    expect(problems).toEqual([])
    expect(blocks.filter((block) => block.skip !== undefined)).toHaveLength(1)
    expect(blocks.filter((block) => block.skip === undefined).length).toBeGreaterThanOrEqual(8)
  })
})

for (const store of ["filesystem", "s3"] as const satisfies ReadonlyArray<StoreKind>) {
  describe(`the tutorial (${store} store)`, () => {
    let server: ServedImgsrv
    beforeAll(async () => {
      server = await startServedImgsrv({ store })
    })
    afterAll(async () => {
      if (server) expect(await server.stop()).toBe(0)
    })

    it("runs from the bootstrap token to a byte-identical anonymous download", async () => {
      const result = await runBash(sessionScript(blocks), {
        cwd: server.workDir,
        env: { API: server.baseUrl },
        timeoutMs: 90_000
      })
      expect(result.code, describeRun(page, result)).toBe(0)
      expect(result.stdout).toMatch(/^published tutorial 0\.1\.0: artifact \S+, disk sha256:[0-9a-f]{64}$/m)
    })
  })
}
