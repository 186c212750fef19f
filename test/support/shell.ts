import { spawn } from "node:child_process"
import { rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { type ApiClient, apiClient, createBucket, createDatabase, type StoreKind, tempDir } from "./harness.js"
import { freePort, type ImgsrvProcess, spawnImgsrv, waitForStatus } from "./process.js"

/**
 * Real clients against a real server: an imgsrv process (fresh database, its own data dir,
 * the filesystem store or a fresh S3 bucket) and `bash` running scripts with `curl` and
 * `jq`, as a user pastes them. The tutorial, the documentation's shell blocks and the
 * access-log tests all start their server here.
 */

/** The bootstrap token, as the documented `grep -o 'imgsrv_at_[A-Za-z0-9_-]*'` finds it. */
const BOOTSTRAP_TOKEN = /imgsrv_at_[A-Za-z0-9_-]+/

export interface ServedImgsrv {
  /** `http://127.0.0.1:<port>`, what the scripts get as `$API`. */
  readonly baseUrl: string
  /** The token of the one-time bootstrap banner. */
  readonly adminToken: string
  /**
   * A scratch directory for scripts, holding `imgsrv.out`: the server's stdout, as
   * `npm start > imgsrv.out` leaves it in the tutorial.
   */
  readonly workDir: string
  /** The server's database, for tests that seed rows by SQL. */
  readonly databaseUrl: string
  readonly proc: ImgsrvProcess
  /** Requests to the server, for tests that drive it from TypeScript too. */
  readonly client: ApiClient
  /** A new principal holding content-writer, made with the bootstrap token, and its API token. */
  readonly writerToken: () => Promise<string>
  /** SIGTERM, then the database and the directories are removed; returns the exit code. */
  readonly stop: () => Promise<number | string>
}

/**
 * Starts imgsrv as a process and waits until it serves and has printed its bootstrap
 * token. `env` adds or overrides IMGSRV_* settings (e.g. `IMGSRV_LOG_FORMAT=json`).
 */
export const startServedImgsrv = async (
  options: { readonly store?: StoreKind; readonly env?: Record<string, string> } = {}
): Promise<ServedImgsrv> => {
  const db = await createDatabase()
  const dataDir = await tempDir("imgsrv-served-data-")
  const workDir = await tempDir("imgsrv-served-work-")
  const s3 = options.store === "s3" ? await createBucket() : undefined
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const proc = spawnImgsrv({
    env: {
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms",
      IMGSRV_PUBLISH_WORKER_POLL_INTERVAL: "200ms",
      ...(s3 === undefined ? {} : {
        IMGSRV_S3_ENDPOINT: s3.endpoint,
        IMGSRV_S3_BUCKET: s3.bucket,
        IMGSRV_S3_ACCESS_KEY_ID: s3.accessKeyId,
        IMGSRV_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        IMGSRV_S3_PATH_STYLE: "true"
      }),
      ...options.env
    }
  })
  const cleanUp = async () => {
    await db.drop()
    await rm(dataDir, { recursive: true, force: true })
    await rm(workDir, { recursive: true, force: true })
  }
  try {
    await waitForStatus(`${baseUrl}/healthz`, 204, 60_000)
    const adminToken = (await proc.waitFor(BOOTSTRAP_TOKEN))[0]
    await writeFile(path.join(workDir, "imgsrv.out"), proc.stdout())
    const client = apiClient(baseUrl)
    return {
      baseUrl,
      adminToken,
      workDir,
      databaseUrl: db.url,
      proc,
      client,
      writerToken: () => writerToken(client, adminToken),
      stop: async () => {
        const exit = await proc.stop()
        await cleanUp()
        return exit
      }
    }
  } catch (error) {
    await proc.stop("SIGKILL")
    await cleanUp()
    throw error
  }
}

const expectJson = async <T>(response: Response, status: number, what: string): Promise<T> => {
  const text = await response.text()
  if (response.status !== status) throw new Error(`${what}: ${response.status} ${text}`)
  return (text === "" ? undefined : JSON.parse(text)) as T
}

/** The auth steps of the tutorial, from TypeScript: principal, content-writer, API token. */
const writerToken = async (client: ApiClient, adminToken: string): Promise<string> => {
  const principal = await expectJson<{ id: string }>(
    await client.request("POST", "/v1/auth/principals", {
      token: adminToken,
      json: { kind: "service", display_name: "test writer" }
    }),
    201,
    "create principal"
  )
  await expectJson(
    await client.request("PUT", `/v1/auth/principals/${principal.id}/roles/content-writer`, { token: adminToken }),
    204,
    "assign content-writer"
  )
  const issued = await expectJson<{ plaintext: string }>(
    await client.request("POST", `/v1/auth/principals/${principal.id}/api-tokens`, {
      token: adminToken,
      json: { name: "test", expires_at: "2099-01-01T00:00:00Z" }
    }),
    201,
    "issue token"
  )
  return issued.plaintext
}

export interface BashResult {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `script` with `bash` (no profile or rc files) in `cwd`, with a minimal environment:
 * PATH, HOME = `cwd` (so no `~/.curlrc` changes curl), `LC_ALL=C` and `env`. Past
 * `timeoutMs` the script's process group is killed and the result says so.
 */
export const runBash = (
  script: string,
  options: { readonly cwd: string; readonly env?: Record<string, string>; readonly timeoutMs?: number }
): Promise<BashResult> =>
  new Promise((resolve, reject) => {
    const child = spawn("bash", ["--noprofile", "--norc", "-s"], {
      cwd: options.cwd,
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: options.cwd, LC_ALL: "C", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
      // Its own process group, so a timeout also ends what the script started (curl, sleep).
      detached: true
    })
    let stdout = ""
    let stderr = ""
    let timedOut = false
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
    const timer = setTimeout(() => {
      timedOut = true
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL")
    }, options.timeoutMs ?? 120_000)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({
        code: code ?? signal ?? "unknown",
        stdout,
        stderr: timedOut ? `${stderr}\n[killed after ${options.timeoutMs ?? 120_000} ms]` : stderr
      })
    })
    child.stdin.end(script)
  })

/** A failure message with everything the script printed, for assertion messages. */
export const describeRun = (name: string, result: BashResult): string =>
  `${name} exited ${result.code}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`
