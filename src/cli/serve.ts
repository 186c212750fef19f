import { Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Config, Console, Effect, Either, Record } from "effect"
import { buildInfo } from "../build-info.js"
import { type AppConfigShape, type ConfigError, parseAppConfig } from "../platform/config.js"
import { type RawSettings, type Setting, type SettingKind, settings } from "../platform/settings.js"

/**
 * One @effect/cli option per setting. Precedence is flag > environment > default:
 * the flag is parsed by @effect/cli, and when it is absent `withFallbackConfig`
 * reads the environment (through Effect's ConfigProvider, so tests can substitute
 * a map), falling back to the documented default.
 */
const optionFor = (setting: Setting): Options.Options<string | boolean> => {
  let fromEnv: Config.Config<string> = Config.string(setting.env)
  for (const fallback of setting.fallbackEnv ?? []) {
    fromEnv = fromEnv.pipe(Config.orElse(() => Config.string(fallback)))
  }
  fromEnv = fromEnv.pipe(Config.withDefault(setting.default))
  const base: Options.Options<string | boolean> = setting.kind === "boolean"
    ? Options.boolean(setting.flag)
    : Options.text(setting.flag)
  // The help text is ours (`helpText`), so no description is attached here.
  return base.pipe(Options.withFallbackConfig(fromEnv))
}

const allOptions = Record.fromEntries(settings.map((s) => [s.flag, optionFor(s)] as const))

const toRaw = (values: Record<string, string | boolean>): RawSettings =>
  Record.map(values, (v) => typeof v === "boolean" ? String(v) : v) as RawSettings

/**
 * The `imgsrv` command. `serve` receives the parsed configuration; a bad value
 * stops start-up with one line naming the flag and its environment variable.
 */
export const imgsrvCommand = <E, R>(
  serve: (config: AppConfigShape) => Effect.Effect<void, E, R>
) =>
  Command.make("imgsrv", allOptions, (values) =>
    Either.match(parseAppConfig(toRaw(values)), {
      onLeft: (error): Effect.Effect<void, E | ConfigError, R> => Effect.fail(error),
      onRight: serve
    }))

// ---------------------------------------------------------------------------------
// --help, --version and the @effect/cli built-ins imgsrv does not offer.
// ---------------------------------------------------------------------------------

/** What `--version` prints. */
export const versionText = (): string =>
  `imgsrv ${buildInfo.version} (commit ${buildInfo.commit}, built ${buildInfo.date})`

const SUMMARY = "a registry for disk and VM images: verified CAS uploads, durable publishing, aliases, downloads and " +
  "Incus Simple Streams."

const PLACEHOLDERS: Record<SettingKind, string> = {
  "string": "<text>",
  "secret": "<secret>",
  "boolean": "[=true|false]",
  "duration": "<duration>",
  "count": "<n>",
  "listen": "<host:port>",
  "optional-listen": "<host:port>",
  "path": "<path>",
  "url-path": "<path>",
  "postgres-url": "<url>",
  "log-format": "text|json",
  "verbosity": "<level>",
  "address-list": "<ip|cidr,...>",
  "rate": "<burst/period>"
}

/**
 * `--help`: one line per setting — flag, environment variable(s), default, meaning —
 * grouped by section, from the same table as docs/reference/configuration.md. Section titles are bold only
 * on a terminal that takes colour; piped, the text is plain.
 */
export const helpText = (options: { readonly color: boolean }): string => {
  const all: ReadonlyArray<Setting> = settings
  const rows = all.map((s) => ({
    section: s.section,
    flag: s.kind === "boolean" ? `--${s.flag}${PLACEHOLDERS[s.kind]}` : `--${s.flag} ${PLACEHOLDERS[s.kind]}`,
    // Fallback variables (OTEL_*) are named in the meaning.
    env: s.env,
    default: s.default === "" ? "-" : s.default,
    meaning: s.description.replaceAll("`", "")
  }))
  const other = [
    { section: "Other", flag: "-h, --help", env: "", default: "", meaning: "Print this help and exit." },
    { section: "Other", flag: "--version", env: "", default: "", meaning: "Print version, commit and build date." }
  ]
  const width = (key: "flag" | "env" | "default") => Math.max(...[...rows, ...other].map((r) => r[key].length))
  const [flagWidth, envWidth, defaultWidth] = [width("flag"), width("env"), width("default")]
  const title = (text: string) => options.color ? `\x1b[1m${text}\x1b[0m` : text
  const lines = [
    `imgsrv ${buildInfo.version} — ${SUMMARY}`,
    "",
    "Usage: imgsrv [serve] [options]",
    "Publishers: imgsrv push|pull|images|versions|inspect ... (imgsrv push --help; docs/publishers.md).",
    "Each option is also read from its environment variable; a flag wins over the environment, which",
    "wins over the default. Durations: 500ms, 5s, 1m, 24h. Booleans: --flag, --flag=false.",
    "",
    `${title("Option".padEnd(flagWidth))}  ${title("Environment".padEnd(envWidth))}  ${
      title("Default".padEnd(defaultWidth))
    }  ${title("Meaning")}`
  ]
  for (const section of [...new Set([...rows, ...other].map((r) => r.section))]) {
    lines.push("", title(section))
    for (const row of [...rows, ...other].filter((r) => r.section === section)) {
      lines.push(
        `${row.flag.padEnd(flagWidth)}  ${row.env.padEnd(envWidth)}  ${
          row.default.padEnd(defaultWidth)
        }  ${row.meaning}`
          .trimEnd()
      )
    }
  }
  return `${lines.join("\n")}\n`
}

/**
 * @effect/cli parses its built-in options before the command's own and cannot leave any
 * out: `--wizard` (interactive prompts, which hang on a closed stdin), `--completions`
 * (scripts for options this help lists anyway) and `--log-level` (a second log level beside
 * `--verbosity`, which it would silently override). They are refused with one line instead.
 */
const REFUSED_BUILT_INS: Record<string, string> = {
  "--wizard": "--wizard is not supported; see --help for the options",
  "--completions": "--completions is not supported; see --help for the options",
  "--log-level": "--log-level is not supported; use --verbosity (IMGSRV_VERBOSITY) instead"
}

type BuiltIn = { readonly _tag: "Help" } | { readonly _tag: "Version" } | {
  readonly _tag: "Refused"
  readonly reason: string
}

/** Text settings take the next argument as their value (`--node-name x`), which is then no flag. */
const TAKES_VALUE = new Set(settings.filter((s) => s.kind !== "boolean").map((s) => `--${s.flag}`))

/** The first built-in option among `args` (what follows the node and script paths), if any. */
export const builtInOf = (args: ReadonlyArray<string>): BuiltIn | undefined => {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const name = arg.split("=", 1)[0]!
    if (name === "--help" || name === "-h") return { _tag: "Help" }
    if (name === "--version") return { _tag: "Version" }
    const refused = REFUSED_BUILT_INS[name]
    if (refused !== undefined) return { _tag: "Refused", reason: refused }
    if (TAKES_VALUE.has(arg)) i += 1
  }
  return undefined
}

/** Resolves the raw settings from an argv (without the node + script prefix) — for tests. */
export const resolveRawSettings = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    let captured: RawSettings | undefined
    const command = Command.make("imgsrv", allOptions, (values) =>
      Effect.sync(() => {
        captured = toRaw(values)
      }))
    yield* Command.run(command, { name: "imgsrv", version: buildInfo.version })(["node", "imgsrv", ...args])
    return captured!
  })

/** Parses argv into an AppConfig without starting anything — for tests. */
export const resolveConfig = (args: ReadonlyArray<string>) =>
  Effect.flatMap(resolveRawSettings(args), (raw) =>
    Either.match(parseAppConfig(raw), {
      onLeft: Effect.fail,
      onRight: Effect.succeed
    }))

/**
 * @effect/cli prints a ValidationError (an unknown flag, say) with `Console.error` and then
 * fails with it; main reports every start-up failure as one `imgsrv: …` line, so the
 * library's copy is dropped here rather than the error being printed twice. The failure
 * itself still propagates.
 */
const validationReportedByMain = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Console.consoleWith((console) => Effect.withConsole(effect, { ...console, error: () => Effect.void }))

/**
 * Runs `imgsrv` with `argv` (node and script paths first). `--help` and `--version` are
 * answered here, the built-ins that do not apply are refused (a ValidationError, reported
 * by main as one line), and everything else goes to @effect/cli.
 */
export const runCommand =
  <E, R>(serve: (config: AppConfigShape) => Effect.Effect<void, E, R>) => (argv: ReadonlyArray<string>) => {
    const builtIn = builtInOf(argv.slice(2))
    switch (builtIn?._tag) {
      case "Help":
        return Effect.sync(() => {
          const color = process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined
          process.stdout.write(helpText({ color }))
        })
      case "Version":
        return Effect.sync(() => process.stdout.write(`${versionText()}\n`))
      case "Refused":
        return Effect.fail(ValidationError.invalidArgument(HelpDoc.p(builtIn.reason)))
      case undefined:
        return Command.run(imgsrvCommand(serve), { name: "imgsrv", version: versionText() })(argv).pipe(
          validationReportedByMain
        )
    }
  }
