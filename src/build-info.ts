import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

/**
 * Version, commit and build date for `--version` and logs. A container build writes
 * `build-info.json` next to `package.json`; a source checkout falls back to git.
 */
export interface BuildInfo {
  readonly version: string
  readonly commit: string
  readonly date: string
}

const root = fileURLToPath(new URL("..", import.meta.url))

const readJson = (file: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(readFileSync(`${root}/${file}`, "utf8")) as Record<string, unknown>
  } catch {
    return undefined
  }
}

const gitCommit = (): string => {
  try {
    return execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
      .toString().trim()
  } catch {
    return "unknown"
  }
}

const pkg = readJson("package.json")
const stamped = readJson("build-info.json")

export const buildInfo: BuildInfo = {
  version: typeof pkg?.["version"] === "string" ? pkg["version"] : "0.0.0",
  commit: typeof stamped?.["commit"] === "string" ? stamped["commit"] : gitCommit(),
  date: typeof stamped?.["date"] === "string" ? stamped["date"] : "unknown (source checkout)"
}
