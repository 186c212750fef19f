import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { sessionScript, shellBlocksOf } from "../support/doc-blocks.js"
import { describeRun, runBash, type ServedImgsrv, startServedImgsrv } from "../support/shell.js"

/**
 * Every shell example of the pages in PAGES runs, copied as it is, against a real imgsrv:
 * each page's `sh`/`bash` blocks in order in one bash session (`$API` is the server, the
 * server's stdout is `imgsrv.out`), except the blocks marked `<!-- doc-test skip: reason -->`
 * (test/support/doc-blocks.ts). The test names say how many blocks ran and were skipped.
 */

/**
 * The documentation pages whose examples run, relative to the repository root; each is its own
 * session against a fresh server. The tutorial runs in tutorial.test.ts, on both stores.
 */
const PAGES = ["README.md", "docs/publishers.md"]

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Every page for readers (the README and docs/*.md), run or not, has well-formed fences and markers. */
const READER_PAGES = [
  "README.md",
  ...readdirSync(`${root}docs`).filter((name) => name.endsWith(".md")).map((name) => `docs/${name}`)
]

describe("the documentation pages", () => {
  it("name the language of every fence and put skip markers right before shell blocks", () => {
    expect(READER_PAGES).toEqual(expect.arrayContaining([...PAGES, "docs/tutorial.md", "docs/operators.md"]))
    const problems = READER_PAGES.flatMap((page) =>
      shellBlocksOf(page, readFileSync(`${root}${page}`, "utf8")).problems
    )
    expect(problems).toEqual([])
  })
})

for (const page of PAGES) {
  const { blocks, problems } = shellBlocksOf(page, readFileSync(`${root}${page}`, "utf8"))
  const run = blocks.filter((block) => block.skip === undefined)
  const skipped = blocks.length - run.length

  describe(`the shell examples of ${page}`, () => {
    it("are all either run or marked with a reason, and every fence names its language", () => {
      expect(problems).toEqual([])
      expect(blocks.filter((block) => block.skip !== undefined).map((block) => block.skip)).not.toContain("")
    })

    describe("against an imgsrv process", () => {
      let server: ServedImgsrv
      beforeAll(async () => {
        server = await startServedImgsrv()
      })
      afterAll(async () => {
        if (server) expect(await server.stop()).toBe(0)
      })

      it(
        `${run.length} shell blocks run in order in one bash session (${skipped} skipped, marked with reasons)`,
        async () => {
          expect(run.length).toBeGreaterThan(0)
          const result = await runBash(sessionScript(blocks), {
            cwd: server.workDir,
            env: { API: server.baseUrl },
            timeoutMs: 150_000
          })
          expect(result.code, describeRun(`the shell blocks of ${page}`, result)).toBe(0)
        },
        180_000
      )
    })
  })
}
