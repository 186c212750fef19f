import { execFile } from "node:child_process"
import { readFile, stat } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"

/**
 * `npm start` (scripts/start.mjs): runs the compiled JavaScript in one process, transpiling
 * `src/` to `dist/` first only when the sources changed since the last transpile.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))
const run = promisify(execFile)
const stampFile = path.join(root, "dist", ".transpiled-from")

describe("npm start", () => {
  it("is node running scripts/start.mjs, not tsx", async () => {
    const pkg = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as {
      scripts: Record<string, string>
    }
    expect(pkg.scripts["start"]).toMatch(/^node (--\S+ )*scripts\/start\.mjs$/)
  })

  it("answers from dist/ and transpiles again only when a source changed", async () => {
    const first = await run(process.execPath, ["scripts/start.mjs", "--version"], { cwd: root })
    expect(first.stdout).toMatch(/^imgsrv \d+\.\d+\.\d+ /)
    expect(first.stderr).toBe("")
    expect((await readFile(stampFile, "utf8")).trim()).toMatch(/^[0-9a-f]{64}$/)
    const main = await stat(path.join(root, "dist", "main.js"))
    const again = await run(process.execPath, ["scripts/start.mjs", "--version"], { cwd: root })
    expect(again.stdout).toBe(first.stdout)
    // Nothing changed: dist/ was left alone.
    expect((await stat(path.join(root, "dist", "main.js"))).mtimeMs).toBe(main.mtimeMs)
  })
})
