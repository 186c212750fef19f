import { Data, Duration, Either } from "effect"

/**
 * Command lines of the publisher commands (`imgsrv push`, `pull`, …). A small table-driven
 * parser rather than @effect/cli: these commands promise exit code 2 with one line for any
 * usage error, refuse a misplaced option instead of ignoring it, and take options before and
 * after their operands; the server's own flags (`serve.ts`) keep @effect/cli.
 */

export class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

export interface OptionSpec {
  readonly name: string
  /** `flag`: no value; `value`: the last one wins; `repeated`: every occurrence, in order. */
  readonly kind: "flag" | "value" | "repeated"
  /** Placeholder of the value in --help (`FILE`, `N`). */
  readonly value?: string
  readonly help: string
}

export interface CommandSpec {
  readonly name: string
  readonly operands: ReadonlyArray<{ readonly name: string; readonly optional?: boolean }>
  readonly summary: string
  readonly options: ReadonlyArray<OptionSpec>
}

export interface Parsed {
  readonly operands: ReadonlyArray<string>
  readonly flags: ReadonlySet<string>
  readonly values: ReadonlyMap<string, string>
  readonly repeated: ReadonlyMap<string, ReadonlyArray<string>>
  readonly help: boolean
}

/** What every publisher command takes. */
export const CONNECTION_OPTIONS: ReadonlyArray<OptionSpec> = [
  {
    name: "server",
    kind: "value",
    value: "URL",
    help: "imgsrv's base URL (IMGSRV_URL; default http://localhost:8080)"
  },
  { name: "token", kind: "value", value: "TOKEN", help: "API token for writes (IMGSRV_TOKEN); never printed" },
  { name: "json", kind: "flag", help: "machine-readable output on stdout (JSON; push/pull: one event per line)" }
]

export const parseArgs = (spec: CommandSpec, args: ReadonlyArray<string>): Either.Either<Parsed, UsageError> => {
  const options = new Map([...spec.options, ...CONNECTION_OPTIONS].map((o) => [o.name, o] as const))
  const operands: Array<string> = []
  const flags = new Set<string>()
  const values = new Map<string, string>()
  const repeated = new Map<string, Array<string>>()
  let help = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      operands.push(...args.slice(i + 1))
      break
    }
    if (arg === "-h" || arg === "--help") {
      help = true
      continue
    }
    if (!arg.startsWith("-") || arg === "-") {
      operands.push(arg)
      continue
    }
    const [name, inline] = arg.startsWith("--") ? splitOnce(arg.slice(2), "=") : [arg, undefined]
    const option = options.get(name)
    if (option === undefined) return Either.left(new UsageError({ reason: `unknown option ${arg.split("=")[0]}` }))
    if (option.kind === "flag") {
      if (inline !== undefined) return Either.left(new UsageError({ reason: `--${name} takes no value` }))
      flags.add(name)
      continue
    }
    let value = inline
    if (value === undefined) {
      if (i + 1 >= args.length) return Either.left(new UsageError({ reason: `--${name} needs a value` }))
      value = args[++i]!
    }
    if (option.kind === "value") values.set(name, value)
    else repeated.set(name, [...(repeated.get(name) ?? []), value])
  }
  if (!help) {
    const required = spec.operands.filter((o) => o.optional !== true).length
    if (operands.length < required) {
      return Either.left(new UsageError({ reason: `missing ${spec.operands[operands.length]!.name}` }))
    }
    if (operands.length > spec.operands.length) {
      return Either.left(new UsageError({ reason: `unexpected argument ${operands[spec.operands.length]}` }))
    }
  }
  return Either.right({ operands, flags, values, repeated, help })
}

const splitOnce = (text: string, separator: string): [string, string | undefined] => {
  const at = text.indexOf(separator)
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)]
}

export const helpOf = (spec: CommandSpec): string => {
  const usage = spec.operands.map((o) => o.optional === true ? `[${o.name}]` : o.name).join(" ")
  const rows = [...spec.options, ...CONNECTION_OPTIONS, { name: "help", kind: "flag", help: "this help" } as const]
    .map((
      o
    ) => [
      `--${o.name}${o.kind === "flag" ? "" : ` ${o.value ?? "VALUE"}`}`,
      o.kind === "repeated" ? `${o.help} (repeatable)` : o.help
    ])
  const width = Math.max(...rows.map(([flag]) => flag!.length))
  return [
    `Usage: imgsrv ${spec.name} ${usage} [options]`,
    "",
    spec.summary,
    "",
    ...rows.map(([flag, text]) => `  ${flag!.padEnd(width)}  ${text}`),
    ""
  ].join("\n")
}

// ---------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------

const UNITS: Record<string, number> = {
  "": 1,
  "b": 1,
  "k": 1024,
  "kb": 1000,
  "kib": 1024,
  "m": 1024 ** 2,
  "mb": 1000 ** 2,
  "mib": 1024 ** 2,
  "g": 1024 ** 3,
  "gb": 1000 ** 3,
  "gib": 1024 ** 3
}

/** `67108864`, `64M`, `64MiB`, `64MB`, `1.5GiB` → bytes. */
export const parseSize = (option: string, text: string): Either.Either<number, UsageError> => {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = match === null ? undefined : UNITS[match[2]!.toLowerCase()]
  if (match === null || unit === undefined) {
    return Either.left(
      new UsageError({ reason: `--${option} must be a size such as 64MiB, got ${JSON.stringify(text)}` })
    )
  }
  return Either.right(Math.round(Number(match[1]) * unit))
}

export const parsePositiveInt = (option: string, text: string): Either.Either<number, UsageError> =>
  /^\d+$/.test(text) && Number(text) > 0 && Number.isSafeInteger(Number(text))
    ? Either.right(Number(text))
    : Either.left(new UsageError({ reason: `--${option} must be a positive integer, got ${JSON.stringify(text)}` }))

/** `90s`, `30m`, `2h`, `500ms`. */
export const parseDuration = (option: string, text: string): Either.Either<Duration.Duration, UsageError> => {
  const match = /^(\d+)(ms|s|m|h)$/.exec(text.trim())
  if (match === null) {
    return Either.left(
      new UsageError({ reason: `--${option} must be a duration such as 30m, got ${JSON.stringify(text)}` })
    )
  }
  const n = Number(match[1])
  const unit = match[2]!
  return Either.right(
    unit === "ms"
      ? Duration.millis(n)
      : unit === "s"
      ? Duration.seconds(n)
      : unit === "m"
      ? Duration.minutes(n)
      : Duration.hours(n)
  )
}

const IEC = ["B", "KiB", "MiB", "GiB", "TiB"]

export const formatBytes = (bytes: number): string => {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < IEC.length - 1) {
    value /= 1024
    unit += 1
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${IEC[unit]}`
}

/** Rows as aligned columns (the last column is not padded). */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)))
  return all.map((row) => row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  "))
    .join("\n") + "\n"
}
