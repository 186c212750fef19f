/**
 * Shared pieces of the benchmarks: a `wrk` run (an external C load generator, installed
 * with `apt-get install wrk`; the only way to load a fast Node server to its limit from the
 * same machine) and a bare Node server answering fixed bytes, the baseline of every req/s
 * ratio.
 */
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import * as http from "node:http"

export const out = (line: string) => process.stdout.write(`${line}\n`)

export const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

export const findWrk = (): string | undefined =>
  ["/usr/bin/wrk", "/usr/local/bin/wrk"].find((candidate) => existsSync(candidate))

export interface Load {
  readonly ok: number
  readonly failed: number
  readonly ms: number
}

export const rps = (load: Load) => load.ok / (load.ms / 1000)

/** `wrk -t1 -c<connections>` for one second of warm-up, then `seconds` measured. */
export const wrkRun = (
  wrk: string,
  url: string,
  options: {
    readonly connections: number
    readonly seconds: number
    readonly headers?: Record<string, string>
    /** Called after the warm-up, right before the measured run (e.g. to read CPU counters). */
    readonly onMeasuredRun?: () => void
  }
): Promise<Load> => {
  const headerArgs = Object.entries(options.headers ?? {}).flatMap(([k, v]) => ["-H", `${k}: ${v}`])
  const run = (seconds: number) =>
    new Promise<string>((resolve, reject) => {
      execFile(
        wrk,
        ["-t1", `-c${options.connections}`, `-d${seconds}s`, "--timeout", "10s", ...headerArgs, url],
        { maxBuffer: 1 << 20 },
        (error, stdout) => error ? reject(error) : resolve(stdout)
      )
    })
  return run(1).then(() => {
    options.onMeasuredRun?.()
    return run(options.seconds)
  }).then((output) => {
    const number = (pattern: RegExp) => Number(pattern.exec(output)?.[1] ?? "0")
    const requests = number(/(\d+) requests in/)
    const seconds = number(/requests in ([\d.]+)(?:s)/)
    const non2xx = number(/Non-2xx or 3xx responses: (\d+)/)
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
    const socketErrors = errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0
    return { ok: requests - non2xx, failed: non2xx + socketErrors, ms: seconds * 1000 }
  })
}

export const listen = (server: http.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : 0)
    })
  )

/** A bare Node `http` server sending `body` with `headers` to every request. */
export const bareServer = async (body: Uint8Array, headers: Record<string, string>) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { ...headers, "content-length": String(body.byteLength) })
    res.end(body)
  })
  const port = await listen(server)
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise<void>((r) => server.close(() => r())) }
}
