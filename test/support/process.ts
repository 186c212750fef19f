import { type ChildProcess, spawn } from "node:child_process"
import { readdir, readFile } from "node:fs/promises"
import { createServer } from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/**
 * Runs imgsrv as a real process (`node --import tsx src/main.ts`), for tests of
 * start-up, signals, stdout and multi-process behaviour.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))

export interface ImgsrvProcess {
  readonly child: ChildProcess
  /** Everything written so far. */
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves with the first stderr/stdout text matching `pattern` (rejects after `timeoutMs`). */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | string>
}

/** A TCP port that was free a moment ago. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export const spawnImgsrv = (options: {
  readonly args?: ReadonlyArray<string>
  /** Added to a minimal environment (PATH, HOME); IMGSRV_* from the test runner are not inherited. */
  readonly env?: Record<string, string>
}): ImgsrvProcess => {
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    HOME: process.env["HOME"] ?? "/tmp",
    ...options.env
  }
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...(options.args ?? [])], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  const listeners = new Set<() => void>()
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk
    listeners.forEach((l) => l())
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk
    listeners.forEach((l) => l())
  })
  const exited = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => {
      listeners.forEach((l) => l())
      resolve(code ?? signal ?? "unknown")
    })
  })
  const waitFor = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = (out + "\n" + err).match(pattern)
        if (match) {
          done()
          resolve(match)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`imgsrv exited (${child.exitCode ?? child.signalCode}) before ${pattern}\n${err}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out waiting for ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        listeners.delete(check)
      }
      listeners.add(check)
      check()
    })
  const stop = (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    return exited
  }
  return { child, stdout: () => out, stderr: () => err, waitFor, exited, stop }
}

/** Waits until `url` answers with `status` (polling), or throws after `timeoutMs`. */
export const waitForStatus = async (url: string, status: number, timeoutMs = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  let last = "no answer"
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url)
      await response.arrayBuffer()
      if (response.status === status) return
      last = String(response.status)
    } catch (error) {
      last = error instanceof Error ? error.message : String(error)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})`)
}

/** The pid `postmaster.pid` names in an embedded-mode data directory (`<data-dir>/postgres`). */
export const postmasterPid = async (dataDir: string): Promise<number> =>
  Number((await readFile(path.join(dataDir, "postgres", "postmaster.pid"), "utf8")).split("\n")[0])

/** `pid` and every live descendant of it, parents first (from /proc). */
export const processTree = async (pid: number): Promise<Array<number>> => {
  const parents = new Map<number, number>()
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "")
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
    if (Number.isInteger(ppid)) parents.set(Number(entry), ppid)
  }
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child)
  }
  return tree
}

/**
 * A token of a new `content-writer` principal, issued over the API of the imgsrv at
 * `baseUrl` with the auth-manager token from its bootstrap banner.
 */
export const writerToken = async (baseUrl: string, bootstrapStdout: string): Promise<string> => {
  const admin = bootstrapStdout.match(/imgsrv_at_[A-Za-z0-9_-]+/)?.[0]
  if (admin === undefined) throw new Error("no bootstrap token on stdout")
  const call = async (method: string, pathname: string, status: number, body?: unknown) => {
    const response = await fetch(`${baseUrl}${pathname}`, {
      method,
      headers: { authorization: `Bearer ${admin}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    if (response.status !== status) {
      throw new Error(`${method} ${pathname}: ${response.status} ${await response.text()}`)
    }
    return response.status === 204 ? {} : (await response.json()) as Record<string, unknown>
  }
  const principal = await call("POST", "/v1/auth/principals", 201, { kind: "service", display_name: "writer" })
  await call("PUT", `/v1/auth/principals/${String(principal["id"])}/roles/content-writer`, 204)
  const issued = await call("POST", `/v1/auth/principals/${String(principal["id"])}/api-tokens`, 201, {
    expires_at: new Date(Date.now() + 3_600_000).toISOString()
  })
  return String(issued["plaintext"])
}
