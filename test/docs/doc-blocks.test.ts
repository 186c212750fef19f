import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { sessionScript, shellBlocksOf } from "../support/doc-blocks.js"
import { runBash } from "../support/shell.js"

/** How the documentation test reads a page's shell blocks and runs them. */

const page = (...lines: ReadonlyArray<string>) => lines.join("\n")

describe("shellBlocksOf", () => {
  it("takes sh, bash and shell blocks in page order, with their markers' reasons", () => {
    const { blocks, problems } = shellBlocksOf(
      "p.md",
      page(
        "# title",
        "Prose may show the marker, `<!-- doc-test skip: reason -->`, without being one.",
        "```sh",
        "A=1",
        "```",
        "",
        "<!-- doc-test skip: needs docker -->",
        "",
        "```bash",
        "docker run x",
        "```",
        "```yaml",
        "key: value",
        "```",
        "- a list item:",
        "  ```shell",
        "  echo $A",
        "  ```"
      )
    )
    expect(problems).toEqual([])
    expect(blocks).toEqual([
      { location: "p.md:3", code: "A=1", skip: undefined },
      { location: "p.md:9", code: "docker run x", skip: "needs docker" },
      { location: "p.md:16", code: "echo $A", skip: undefined }
    ])
  })

  it("reports an unlabelled fence, a marker without a reason and a marker away from a shell block", () => {
    const { problems } = shellBlocksOf(
      "p.md",
      page(
        "```",
        "output",
        "```",
        "<!-- doc-test skip: -->",
        "```sh",
        "true",
        "```",
        "<!-- doc-test skip: misplaced -->",
        "some text",
        "<!-- doc-test skip: before yaml -->",
        "```yaml",
        "a: b",
        "```",
        "<!-- doc-test skip: at the end -->"
      )
    )
    expect(problems).toEqual([
      "p.md:1: a fenced block must name its language (e.g. sh, text)",
      "p.md:4: write markers as <!-- doc-test skip: <reason> -->",
      "p.md:8: a doc-test skip marker must come right before a shell block",
      "p.md:10: a doc-test skip marker must come right before a shell block",
      "p.md:14: a doc-test skip marker must come right before a shell block"
    ])
  })
})

describe("sessionScript", () => {
  const run = async (markdown: string) => {
    const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-doc-blocks-"))
    try {
      return await runBash(sessionScript(shellBlocksOf("p.md", markdown).blocks), { cwd: dir, timeoutMs: 10_000 })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  it("runs the unmarked blocks in one session: variables carry over, skipped blocks never run", async () => {
    const result = await run(
      page(
        "```sh",
        "GREETING=hello",
        "```",
        "<!-- doc-test skip: would fail -->",
        "```sh",
        "false",
        "```",
        "```sh",
        "echo \"$GREETING\"",
        "```"
      )
    )
    expect(result.code).toBe(0)
    expect(result.stdout).toBe("hello\n")
  })

  it("stops at a failing command, a failing pipe or an unset variable, naming the block", async () => {
    for (const failing of ["false", "false | cat", "echo \"$NEVER_SET\"", "X=$(false; echo after)"]) {
      const result = await run(page("```sh", "true", "```", "", "```sh", failing, "echo not reached", "```"))
      expect(result.code, failing).not.toBe(0)
      expect(result.stdout, failing).not.toContain("not reached")
      expect(result.stderr, failing).toContain("the block at p.md:5 failed")
    }
  })
})
