import { HelpDoc, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { AppLive } from "./app.js"
import { runCommand } from "./cli.js"

/**
 * `imgsrv`: parse flags and environment, then run the service until SIGTERM/SIGINT.
 * Start-up problems end the process with one line on stderr and a non-zero code.
 */
const describe = (error: unknown): string => {
  if (ValidationError.isValidationError(error)) {
    return HelpDoc.toAnsiText(error.error).trim().replace(/\s*\n\s*/g, " ")
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

const program = runCommand((config) => Layer.launch(AppLive(config)))(process.argv).pipe(
  Effect.tapError((error) =>
    Effect.sync(() => {
      // Help and --version are not failures of ours; @effect/cli already printed them.
      if (ValidationError.isValidationError(error) && ValidationError.isHelpRequested(error)) return
      process.stderr.write(`imgsrv: ${describe(error)}\n`)
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
  }
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)
