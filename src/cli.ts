import { Command, HelpDoc, Options } from "@effect/cli"
import { Config, Effect, Either, Record } from "effect"
import { buildInfo } from "./build-info.js"
import { type AppConfigShape, type ConfigError, parseAppConfig } from "./platform/config.js"
import { type RawSettings, type Setting, settings } from "./platform/settings.js"

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
  const envNames = [setting.env, ...(setting.fallbackEnv ?? [])].join(", ")
  const description = `${setting.description} Env: ${envNames}. Default: ${
    setting.default === "" ? "(empty)" : setting.default
  }.`
  const base: Options.Options<string | boolean> = setting.kind === "boolean"
    ? Options.boolean(setting.flag)
    : Options.text(setting.flag)
  return base.pipe(Options.withFallbackConfig(fromEnv), Options.withDescription(description))
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
    })).pipe(
      Command.withDescription(
        HelpDoc.p(
          "imgsrv — a registry for disk and VM images: verified CAS uploads, durable publishing, " +
            "aliases, downloads and Incus Simple Streams."
        )
      )
    )

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

export const runCommand = <E, R>(serve: (config: AppConfigShape) => Effect.Effect<void, E, R>) =>
  Command.run(imgsrvCommand(serve), {
    name: "imgsrv",
    version: `${buildInfo.version} (commit ${buildInfo.commit}, built ${buildInfo.date})`
  })
