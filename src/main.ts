import { HelpDoc, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Duration, Effect, Layer } from "effect"
import { AppLive } from "./app.js"
import { runCommand } from "./cli/serve.js"

/**
 * `imgsrv`: parse flags and environment, then run the service until SIGTERM/SIGINT.
 * Start-up problems end the process with one line on stderr and a non-zero code.
 */
const describe = (error: unknown): string => {
  if (ValidationError.isValidationError(error)) {
    return HelpDoc.toAnsiText(error.error).trim()
  }
  if (error instanceof Error) {
    // SqlError and friends keep the driver's reason in `cause` (never credentials).
    const cause = (error as { cause?: unknown }).cause
    return cause instanceof Error && !error.message.includes(cause.message)
      ? `${error.message}: ${cause.message}`
      : error.message
  }
  return String(error)
}

/** One line, whatever the cause carries (PostgreSQL's log lines, a multi-line help doc). */
const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " ")

/**
 * After the drain (`--shutdown-timeout`), the rest of the shutdown — background loops, the
 * pool, the embedded PostgreSQL server — is bounded step by step; this is the backstop if
 * anything still holds the process.
 */
const CLEANUP_ALLOWANCE = Duration.seconds(10)
let shutdownDeadline: Duration.Duration | undefined

/** `imgsrv serve [options]` is the explicit form of `imgsrv [options]` (src/cli/main.ts). */
const argv = process.argv[2] === "serve" ? [...process.argv.slice(0, 2), ...process.argv.slice(3)] : process.argv

const program = runCommand((config) =>
  Effect.sync(() => {
    shutdownDeadline = Duration.sum(config.shutdownTimeout, CLEANUP_ALLOWANCE)
  }).pipe(Effect.zipRight(Layer.launch(AppLive(config))))
)(argv).pipe(
  // Failures and defects alike (a listener that cannot bind, a driver throwing at start-up).
  Effect.tapErrorCause((cause) =>
    Effect.sync(() => {
      if (Cause.isInterruptedOnly(cause)) return
      const error = Cause.squash(cause)
      // Help and --version are not failures of ours; @effect/cli already printed them.
      if (ValidationError.isValidationError(error) && ValidationError.isHelpRequested(error)) return
      process.stderr.write(`imgsrv: ${oneLine(describe(error))}\n`)
    })
  ),
  Effect.provide(NodeContext.layer)
)

// No pretty logger: stdout carries only the one-time bootstrap banner; logs go to stderr (logging.ts).
NodeRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })

// runMain turns the first SIGINT/SIGTERM into a graceful shutdown and then stops listening,
// so a second one would kill the process on the spot, before the embedded PostgreSQL
// server it owns is stopped. Shutdown is bounded (--shutdown-timeout); let it finish and
// say how to force it.
let signals = 0
const onSignal = (signal: NodeJS.Signals) => {
  signals += 1
  if (signals > 1) {
    process.stderr.write(`imgsrv: ${signal} received while shutting down; finishing the shutdown (SIGKILL forces it)\n`)
    return
  }
  if (shutdownDeadline === undefined) return
  const deadline = shutdownDeadline
  setTimeout(() => {
    process.stderr.write(
      `imgsrv: shutdown still running ${Duration.format(deadline)} after ${signal}; exiting (status 1)\n`
    )
    // The `exit` hooks still run: the embedded PostgreSQL server gets its stop signal.
    process.exit(1)
  }, Duration.toMillis(deadline)).unref()
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)
