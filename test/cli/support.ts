import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdir, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import type { ServedImgsrv } from "../support/shell.js"

/**
 * The publisher CLI as a user runs it: `bin/imgsrv.mjs` (the package's `bin`) as a process,
 * against an imgsrv process, with its own state directory.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))

export interface CliRun {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Exit code, or the signal's name. */
  readonly exited: Promise<number | string>
}

export const startCli = (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  onStdout?: (chunk: string) => void
): CliRun => {
  const child = spawn(process.execPath, [path.join(root, "bin", "imgsrv.mjs"), ...args], {
    cwd: env["CWD"] ?? root,
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: process.env["HOME"] ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk
    onStdout?.(chunk)
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk
  })
  const exited = new Promise<number | string>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown"))
  )
  return { child, stdout: () => out, stderr: () => err, exited }
}

export interface CliResult {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
}

export const runCli = async (args: ReadonlyArray<string>, env: Record<string, string>): Promise<CliResult> => {
  const run = startCli(args, env)
  const code = await run.exited
  return { code, stdout: run.stdout(), stderr: run.stderr() }
}

export const describeCli = (result: CliResult) =>
  `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`

/** Successful part PUTs in the server's access log (JSON lines on stderr) so far. */
export const partPuts = (server: ServedImgsrv): number =>
  server.proc.stderr().split("\n")
    .filter((line) => line.includes("\"msg\":\"http request\""))
    .map((line) => JSON.parse(line) as { method?: string; route?: string; status?: number })
    .filter((line) => line.method === "PUT" && (line.route ?? "").includes("/parts/") && line.status === 200)
    .length

/** Waits until the access log has settled (the log line trails the response). */
export const settledPartPuts = async (server: ServedImgsrv): Promise<number> => {
  let last = -1
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 300))
    const now = partPuts(server)
    if (now === last) return now
    last = now
  }
}

/** `size` random bytes that start with qcow2's magic, so the CLI detects the format. */
export const fakeQcow2 = async (file: string, size: number) => {
  const bytes = randomBytes(size)
  bytes.write("QFI\xfb", 0, "latin1")
  await writeFile(file, bytes)
  return bytes
}

const run = promisify(execFile)

/** An Incus metadata tarball whose metadata.yaml names `architecture`. */
export const incusMetadata = async (dir: string, file: string, architecture: string) => {
  const src = path.join(dir, `${path.basename(file)}-src`)
  await mkdir(src, { recursive: true })
  await writeFile(
    path.join(src, "metadata.yaml"),
    `architecture: ${architecture}\ncreation_date: 1700000000\nproperties:\n  os: demo\n  release: "1"\n`
  )
  await run("tar", ["-cJf", file, "-C", src, "metadata.yaml"])
}

/** A squashfs root filesystem made by mksquashfs. */
export const squashfs = async (dir: string, file: string) => {
  const src = path.join(dir, `${path.basename(file)}-src`)
  await mkdir(path.join(src, "etc"), { recursive: true })
  await writeFile(path.join(src, "etc", "os-release"), "NAME=demo\n")
  await writeFile(path.join(src, "payload.bin"), randomBytes(7 * 1024 * 1024))
  await run("mksquashfs", [src, file, "-noappend", "-quiet", "-all-root"])
}
