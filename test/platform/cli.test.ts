import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"
import { buildInfo } from "../../src/build-info.js"
import { settings } from "../../src/platform/config/settings.js"
import { spawnImgsrv } from "../support/process.js"

/**
 * The real `imgsrv` binary's command line: `--help` is one plain line per setting when
 * piped, `--version` is one exact line, and the @effect/cli built-ins that do not apply are
 * refused with one line instead of prompting, printing scripts or overriding --verbosity.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Runs imgsrv through a shell pipe, as an operator would (`imgsrv --help | cat`). */
const piped = async (args: string) => {
  const { stdout } = await promisify(execFile)("bash", ["-c", `npx tsx src/main.ts ${args} | cat`], { cwd: root })
  return stdout
}

describe("imgsrv --help", () => {
  it("piped, is plain text with one line per setting: flag, environment variable, default, meaning", async () => {
    const help = await piped("--help")
    expect(help).not.toContain("\x1b[")
    const lines = help.trimEnd().split("\n")
    // One line per option, a title per section, a short preamble (the old help had 328 lines).
    expect(lines.filter((l) => l.startsWith("-"))).toHaveLength(settings.length + 2)
    // Nothing else grows with the settings: at most a blank line and a title per section
    // and a preamble of ten lines on top of the option lines.
    const sections = new Set(settings.map((setting) => setting.section)).size
    expect(lines.length).toBeLessThanOrEqual(settings.length + 2 + 2 * sections + 10)
    for (const setting of settings) {
      const line = lines.find((l) => l.startsWith(`--${setting.flag} `) || l.startsWith(`--${setting.flag}[`))
      expect(line, setting.flag).toBeDefined()
      expect(line).toContain(setting.env)
      expect(line).toContain(setting.default === "" ? " - " : ` ${setting.default} `)
      expect(line).toContain(setting.description.replaceAll("`", "").slice(0, 30))
    }
    for (const section of new Set(settings.map((s) => s.section))) expect(lines).toContain(section)
    expect(help).not.toMatch(/A user-defined piece of text|This option can be set from environment variables/)
    expect(help).not.toMatch(/--wizard|--completions|--log-level/)
  })

  it("-h is the same, and exits 0", async () => {
    const proc = spawnImgsrv({ args: ["-h"] })
    expect(await proc.exited).toBe(0)
    expect(proc.stdout()).toBe(await piped("--help"))
    expect(proc.stderr()).toBe("")
  })
})

describe("imgsrv --version", () => {
  it("prints exactly `imgsrv <version> (commit …, built …)`", async () => {
    const proc = spawnImgsrv({ args: ["--version"] })
    expect(await proc.exited).toBe(0)
    expect(proc.stdout()).toBe(`imgsrv ${buildInfo.version} (commit ${buildInfo.commit}, built ${buildInfo.date})\n`)
    expect(proc.stdout()).toMatch(/^imgsrv \d+\.\d+\.\d+ \(commit \S+, built .+\)\n$/)
  })
})

describe("the @effect/cli built-ins that do not apply", () => {
  it("are refused with one line and a non-zero exit, even with stdin closed (no wizard prompt)", async () => {
    const cases: ReadonlyArray<[ReadonlyArray<string>, string]> = [
      [["--wizard"], "imgsrv: --wizard is not supported; see --help for the options"],
      [["--completions", "bash"], "imgsrv: --completions is not supported; see --help for the options"],
      [["--log-level", "debug"], "imgsrv: --log-level is not supported; use --verbosity (IMGSRV_VERBOSITY) instead"],
      [["--verbosity", "warn", "--log-level=trace"], "imgsrv: --log-level is not supported"]
    ]
    for (const [args, line] of cases) {
      // spawnImgsrv gives the child no stdin: a prompt would wait for ever.
      const proc = spawnImgsrv({ args })
      expect(await proc.exited, args.join(" ")).not.toBe(0)
      expect(proc.stderr().trim().split("\n")).toHaveLength(1)
      expect(proc.stderr()).toContain(line)
      expect(proc.stdout()).toBe("")
    }
  })

  it("an unknown flag is reported once, as one imgsrv line", async () => {
    const proc = spawnImgsrv({ args: ["--bogus-flag"] })
    expect(await proc.exited).not.toBe(0)
    expect(proc.stdout()).toBe("")
    expect(proc.stderr().trim().split("\n")).toEqual(["imgsrv: Received unknown argument: '--bogus-flag'"])
  })

  it("a flag's value that looks like one is still the value", async () => {
    // `--node-name --help` names the node "--help"; the bad --upload-ttl then stops start-up.
    const proc = spawnImgsrv({ args: ["--node-name", "--help", "--upload-ttl", "5parsecs"] })
    expect(await proc.exited).not.toBe(0)
    expect(proc.stdout()).toBe("")
    expect(proc.stderr()).toContain("--upload-ttl (IMGSRV_UPLOAD_TTL)")
  })
})
