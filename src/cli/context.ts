import { Either } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { ALIAS, IMAGE_NAME, TOKEN, VERSION } from "../catalog/schema.js"
import { type ClientState, directoryState } from "../client/state.js"
import { type Parsed, UsageError } from "./args.js"
import { jsonReporter, lineReporter, type Reporter, ttyReporter } from "./progress.js"

/** What every publisher command runs with: where the server is, how to report, where state lives. */
export interface CommandContext {
  readonly server: string
  readonly token: string | undefined
  readonly json: boolean
  readonly reporter: Reporter
  readonly state: ClientState
  /** stdout: results (tables, the final line) or, under --json, JSON only. */
  readonly out: (text: string) => void
}

export const DEFAULT_SERVER = "http://localhost:8080"

/**
 * Resume state (digests, upload sessions, publish jobs): `IMGSRV_STATE_DIR`, else
 * `$XDG_STATE_HOME/imgsrv`, else `~/.local/state/imgsrv`.
 */
export const stateDir = (env: NodeJS.ProcessEnv): string =>
  env["IMGSRV_STATE_DIR"] ??
    path.join(env["XDG_STATE_HOME"] ?? path.join(env["HOME"] ?? os.homedir(), ".local", "state"), "imgsrv")

export const contextOf = (parsed: Parsed, env: NodeJS.ProcessEnv): Either.Either<CommandContext, UsageError> => {
  const server = parsed.values.get("server") ?? env["IMGSRV_URL"] ?? DEFAULT_SERVER
  let url: URL
  try {
    url = new URL(server)
  } catch {
    return Either.left(new UsageError({ reason: `--server must be an http(s) URL, got ${JSON.stringify(server)}` }))
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return Either.left(new UsageError({ reason: `--server must be an http(s) URL, got ${JSON.stringify(server)}` }))
  }
  const token = parsed.values.get("token") ?? env["IMGSRV_TOKEN"]
  const json = parsed.flags.has("json")
  const stdout = (text: string) => void process.stdout.write(text)
  const stderr = (text: string) => void process.stderr.write(text)
  const reporter = json
    ? jsonReporter(stdout)
    : process.stderr.isTTY === true
    ? ttyReporter(process.stderr)
    : lineReporter(stderr)
  return Either.right({
    server,
    token: token === "" ? undefined : token,
    json,
    reporter,
    state: directoryState(stateDir(env)),
    out: stdout
  })
}

const check = (what: string, pattern: RegExp, value: string): Either.Either<string, UsageError> =>
  pattern.test(value)
    ? Either.right(value)
    : Either.left(new UsageError({ reason: `${what} ${JSON.stringify(value)} must match ${pattern.source}` }))

export const checkImage = (value: string) => check("image name", IMAGE_NAME, value)
export const checkVersion = (value: string) => check("version", VERSION, value)
export const checkAlias = (value: string) => check("alias", ALIAS, value)
export const checkToken = (what: string, value: string) => check(what, TOKEN, value)

/** `IMAGE:REF` (the version may hold `:` too; the image name never does). */
export const splitRef = (
  text: string,
  required: boolean
): Either.Either<{ readonly image: string; readonly ref: string | undefined }, UsageError> => {
  const at = text.indexOf(":")
  const image = at < 0 ? text : text.slice(0, at)
  const ref = at < 0 ? undefined : text.slice(at + 1)
  if (required && (ref === undefined || ref === "")) {
    return Either.left(new UsageError({ reason: `expected IMAGE:VERSION, got ${JSON.stringify(text)}` }))
  }
  return Either.flatMap(
    checkImage(image),
    (): Either.Either<{ readonly image: string; readonly ref: string | undefined }, UsageError> =>
      ref === undefined ? Either.right({ image, ref }) : Either.map(checkVersion(ref), () => ({ image, ref }))
  )
}
