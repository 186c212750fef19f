import {
  Cause,
  Context,
  Effect,
  FiberRef,
  FiberRefs,
  HashMap,
  Inspectable,
  Layer,
  List,
  Logger,
  LogLevel,
  Option,
  Runtime,
  Tracer
} from "effect"

/**
 * Structured logs on stderr (stdout is reserved for the one-time bootstrap banner),
 * as logfmt-style text or one JSON object per line. Values under secret-looking keys
 * are masked, so a careless `Effect.annotateLogs("token", ...)` cannot leak a secret.
 */

const EXACT_SECRET_KEYS = new Set([
  "accesskey",
  "accesskeyid",
  "apikey",
  "apitoken",
  "bearertoken",
  "bootstraptoken",
  "dsn",
  "plaintext",
  "plaintexttoken",
  "postgresurl",
  "sessiontoken",
  "token",
  "tokenhash",
  "tokensha256",
  "urlpassword",
  "secretaccesskey"
])
const SECRET_KEY_PARTS = ["authorization", "bearer", "credential", "password", "privatekey", "secret"]

export const isSecretKey = (key: string): boolean => {
  const normalised = key.toLowerCase().replace(/[_\-. ]/g, "")
  return EXACT_SECRET_KEYS.has(normalised) || SECRET_KEY_PARTS.some((part) => normalised.includes(part))
}

const REDACTED = "[REDACTED]"

const LEVEL_NAMES: Record<string, string> = {
  All: "all",
  Trace: "trace",
  Debug: "debug",
  Info: "info",
  Warning: "warn",
  Error: "error",
  Fatal: "fatal",
  None: "none"
}

interface Record_ {
  time: string
  level: string
  msg: string
  [key: string]: unknown
}

/** Causes and errors become readable text; a JSON dump of their internals helps nobody. */
const renderValue = (value: unknown): unknown =>
  Cause.isCause(value)
    ? Cause.pretty(value, { renderErrorCause: true })
    : value instanceof Error
    ? (value.stack ?? `${value.name}: ${value.message}`)
    : value

const TRACE_ID = /^[0-9a-f]{32}$/

const toRecord = (options: Logger.Logger.Options<unknown>): Record_ => {
  const message = Array.isArray(options.message) ? options.message : [options.message]
  const record: Record_ = {
    time: options.date.toISOString(),
    level: LEVEL_NAMES[options.logLevel._tag] ?? options.logLevel.label.toLowerCase(),
    msg: message.map((m) => typeof m === "string" ? m : Inspectable.toStringUnknown(m)).join(" ")
  }
  for (const [key, value] of HashMap.toEntries(options.annotations)) {
    record[key] = isSecretKey(key) ? REDACTED : renderValue(value)
  }
  const span = Context.getOption(
    FiberRefs.getOrDefault(options.context, FiberRef.currentContext),
    Tracer.ParentSpan
  )
  // With tracing off, spans are no-ops whose ids read "noop": no trace to point at.
  if (Option.isSome(span) && TRACE_ID.test(span.value.traceId)) {
    record["trace_id"] = span.value.traceId
    record["span_id"] = span.value.spanId
  }
  for (const logSpan of List.toArray(options.spans)) {
    record[`${logSpan.label}_ms`] = options.date.getTime() - logSpan.startTime
  }
  if (!Cause.isEmpty(options.cause)) {
    record["cause"] = Cause.pretty(options.cause, { renderErrorCause: true })
  }
  return record
}

const logfmtValue = (value: unknown): string => {
  const text = typeof value === "string" ? value : Inspectable.toStringUnknown(value, 0)
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)
}

export const jsonLogger = Logger.make<unknown, string>((options) => JSON.stringify(toRecord(options)))

export const textLogger = Logger.make<unknown, string>((options) => {
  const { time, level, msg, ...rest } = toRecord(options)
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${logfmtValue(v)}`)
  return [`time=${time}`, `level=${level}`, `msg=${logfmtValue(msg)}`, ...fields].join(" ")
})

const toStderr = (logger: Logger.Logger<unknown, string>) =>
  Logger.map(logger, (line) => {
    process.stderr.write(`${line}\n`)
  })

export const logLevelOf = (verbosity: "debug" | "info" | "warn" | "error"): LogLevel.LogLevel =>
  verbosity === "debug"
    ? LogLevel.Debug
    : verbosity === "info"
    ? LogLevel.Info
    : verbosity === "warn"
    ? LogLevel.Warning
    : LogLevel.Error

/**
 * Node's process warnings (`process.emitWarning`: a deprecation, the AWS SDK's notice about
 * the Node version) become log records instead of Node's own plain-text lines, so every
 * line on stderr has the configured format. Node's printer is put back when the scope closes.
 */
const ProcessWarningsLive = Layer.scopedDiscard(Effect.gen(function*() {
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const onWarning = (warning: Error & { readonly code?: unknown }) => {
    runFork(
      Effect.logWarning("node warning").pipe(Effect.annotateLogs({
        warning: warning.name,
        detail: warning.message,
        ...(typeof warning.code === "string" ? { code: warning.code } : {})
      }))
    )
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const printers = process.listeners("warning")
      process.removeAllListeners("warning")
      process.on("warning", onWarning)
      return printers
    }),
    (printers) =>
      Effect.sync(() => {
        process.off("warning", onWarning)
        for (const printer of printers) process.on("warning", printer)
      })
  )
}))

/** Replaces Effect's default logger with ours, at the configured level; Node's warnings go through it. */
export const LoggingLive = (format: "text" | "json", verbosity: "debug" | "info" | "warn" | "error") => {
  const logger = Layer.merge(
    Logger.replace(Logger.defaultLogger, toStderr(format === "json" ? jsonLogger : textLogger)),
    Logger.minimumLogLevel(logLevelOf(verbosity))
  )
  return Layer.merge(logger, ProcessWarningsLive.pipe(Layer.provide(logger)))
}
