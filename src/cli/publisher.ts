import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Either, Exit } from "effect"
import type { ImgsrvClient } from "../client/client.js"
import { layerNode } from "../client/client.js"
import type { ClientError } from "../client/errors.js"
import { type CommandSpec, helpOf, parseArgs, type Parsed, UsageError } from "./args.js"
import { images, imagesSpec, inspect, inspectSpec, versions, versionsSpec } from "./catalog.js"
import { type CommandContext, contextOf } from "./context.js"
import { pull, pullSpec } from "./pull.js"
import { push, pushSpec } from "./push.js"

/**
 * The publisher commands of the `imgsrv` binary. Exit codes: 0 success, 1 failure (one
 * line on stderr: the server's problem detail and request id, or what failed locally),
 * 2 usage error (one line), 130 interrupted (Ctrl-C; a rerun continues where it stopped).
 */

type Run = (parsed: Parsed, context: CommandContext) => Effect.Effect<void, ClientError | UsageError, ImgsrvClient>

export const COMMANDS: Readonly<Record<string, { readonly spec: CommandSpec; readonly run: Run }>> = {
  push: { spec: pushSpec, run: push },
  pull: { spec: pullSpec, run: pull },
  images: { spec: imagesSpec, run: images },
  versions: { spec: versionsSpec, run: versions },
  inspect: { spec: inspectSpec, run: inspect }
}

const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " ")

/** Runs `imgsrv <command> ...args` and resolves with the exit code. */
export const publisherProgram = (
  name: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv
): Effect.Effect<number> => {
  const command = COMMANDS[name]!
  const usage = (reason: string) =>
    Effect.sync(() => {
      process.stderr.write(`imgsrv ${name}: ${oneLine(reason)} (see imgsrv ${name} --help)\n`)
      return 2
    })
  const parsed = parseArgs(command.spec, args)
  if (Either.isLeft(parsed)) return usage(parsed.left.reason)
  if (parsed.right.help) return Effect.sync(() => (process.stdout.write(helpOf(command.spec)), 0))
  const context = contextOf(parsed.right, env)
  if (Either.isLeft(context)) return usage(context.left.reason)
  const { server, token, reporter } = context.right
  return command.run(parsed.right, context.right).pipe(
    Effect.provide(layerNode({ server, token, userAgent: "imgsrv-cli" })),
    Effect.as(0),
    Effect.catchAll((error) =>
      Effect.suspend(() => {
        reporter.close()
        if (error instanceof UsageError) return usage(error.reason)
        return Effect.sync(() => {
          process.stderr.write(`imgsrv: ${oneLine(error.message)}\n`)
          return 1
        })
      })
    ),
    Effect.catchAllDefect((defect) =>
      Effect.sync(() => {
        reporter.close()
        process.stderr.write(
          `imgsrv: unexpected failure: ${oneLine(defect instanceof Error ? defect.message : String(defect))}\n`
        )
        return 1
      })
    )
  )
}

export const runPublisher = (name: string, args: ReadonlyArray<string>) =>
  NodeRuntime.runMain(publisherProgram(name, args, process.env), {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) && typeof exit.value === "number" ? exit.value : 130)
  })
