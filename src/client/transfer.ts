import { Effect, Redacted } from "effect"
import { type FileHandle, open } from "node:fs/promises"
import * as http from "node:http"
import * as https from "node:https"
import { problemFrom, reasonOf } from "./answers.js"
import { ConnectionError, LocalFileError, type RequestFailure, UnexpectedResponse } from "./errors.js"
import { CHUNK } from "./files.js"

/**
 * Request bodies read from a file, sent with `node:http`/`node:https`.
 *
 * Part bodies are most of what the client moves, and the generic `HttpClient` path costs
 * the most there: every chunk crosses an async generator, an Effect stream and undici's
 * body writer before it reaches the socket. Here chunks are read from the file into one
 * buffer and written to the request, the next read waiting for the socket to take the
 * last chunk (backpressure); a part in flight holds one chunk.
 */

/** Reading the file failed (not the connection). */
class ReadFailure {
  constructor(readonly cause: unknown) {}
}

export interface FileRange {
  readonly file: string
  readonly start: number
  readonly length: number
}

/**
 * `method` of `urlPath` (relative to the server) with `range` of a file as the body; the
 * answer's JSON body. Any status ≥ 400 fails with a `ProblemError`, no answer with a
 * `ConnectionError`, a file that cannot be read (or ends early) with a `LocalFileError`.
 * `onBytes` gets the size of each chunk handed to the connection.
 */
export type FileSender = (
  method: "PUT" | "POST",
  urlPath: string,
  range: FileRange,
  onBytes: (bytes: number) => void
) => Effect.Effect<unknown, RequestFailure | LocalFileError>

/** Without a byte moving for this long (either way), the request is given up (undici's default). */
const IDLE_TIMEOUT_MS = 300_000

export const makeFileSender = (options: {
  readonly server: string
  readonly token: Redacted.Redacted<string> | undefined
  readonly userAgent: string
}): FileSender => {
  // Keep-alive connections, reused by the next part; idle ones do not keep the process alive.
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) }
  return (method, urlPath, range, onBytes) =>
    Effect.async<unknown, RequestFailure | LocalFileError>((resume) => {
      const url = `${options.server}${urlPath}`
      const target = new URL(url)
      const secure = target.protocol === "https:"
      let settled = false
      const settle = (result: Effect.Effect<unknown, RequestFailure | LocalFileError>) => {
        if (settled) return
        settled = true
        resume(result)
      }
      const noAnswer = (cause: unknown) =>
        settle(Effect.fail(new ConnectionError({ method, url, reason: reasonOf(cause) })))
      const unreadable = (reason: string) =>
        settle(Effect.fail(new LocalFileError({ path: range.file, operation: "read", reason })))

      let status: number | undefined
      const request = (secure ? https : http).request(target, {
        method,
        agent: secure ? agents.https : agents.http,
        headers: {
          "content-type": "application/octet-stream",
          // Explicit, also for an empty body.
          "content-length": String(range.length),
          "accept": "application/json",
          "user-agent": options.userAgent,
          ...(options.token === undefined ? {} : { authorization: `Bearer ${Redacted.value(options.token)}` })
        }
      }, (response) => {
        status = response.statusCode ?? 0
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        const answered = () => {
          const text = Buffer.concat(chunks).toString("utf8")
          const requestId = response.headers["x-request-id"]
          if (status! >= 400) {
            return settle(Effect.fail(problemFrom({
              status: status!,
              text,
              requestId: typeof requestId === "string" ? requestId : undefined,
              method,
              url
            })))
          }
          try {
            settle(Effect.succeed(JSON.parse(text)))
          } catch (error) {
            settle(Effect.fail(new UnexpectedResponse({ what: `${method} ${urlPath}`, reason: reasonOf(error) })))
          }
        }
        response.on("end", answered)
        // An error status stays the answer even when the connection breaks after it.
        response.on("error", (cause) => status! >= 400 ? answered() : noAnswer(cause))
      })
      request.setTimeout(
        IDLE_TIMEOUT_MS,
        () => request.destroy(new Error(`no progress for ${IDLE_TIMEOUT_MS / 1000} s`))
      )
      request.on("error", (cause) => {
        if (status === undefined) noAnswer(cause)
      })

      // The body, through one buffer reused for every chunk: a chunk is read when the socket
      // has taken the previous one (the write's callback), so nothing waits for the garbage
      // collector (a read stream allocates a chunk per read, and tens of MiB of them pile up
      // between collections).
      const closed = new Promise<never>((_, reject) =>
        request.once("close", () => reject(new Error("the connection closed")))
      )
      closed.catch(() => {})
      let file: FileHandle | undefined
      const sendBody = async () => {
        if (range.length === 0) return
        const handle = await open(range.file, "r").catch((cause) => Promise.reject(new ReadFailure(cause)))
        file = handle
        const buffer = Buffer.allocUnsafe(Math.min(CHUNK, range.length))
        let sent = 0
        while (sent < range.length && !settled) {
          const want = Math.min(buffer.length, range.length - sent)
          const { bytesRead } = await handle.read(buffer, 0, want, range.start + sent).catch((cause) =>
            Promise.reject(new ReadFailure(cause))
          )
          if (bytesRead === 0) {
            throw new ReadFailure(`it ended after ${range.start + sent} bytes: did it change during the upload?`)
          }
          await Promise.race([
            new Promise<void>((written, failed) =>
              request.write(buffer.subarray(0, bytesRead), (error) => error ? failed(error) : written())
            ),
            closed
          ])
          sent += bytesRead
          onBytes(bytesRead)
        }
      }
      sendBody().then(
        () => {
          void file?.close()
          if (!settled) request.end()
        },
        (error: unknown) => {
          void file?.close()
          // A server that answers before it has read the whole body (an error) breaks the
          // connection: its answer is what counts.
          if (status !== undefined) return
          request.destroy()
          if (error instanceof ReadFailure) unreadable(reasonOf(error.cause))
          else noAnswer(error)
        }
      )
      return Effect.sync(() => {
        settled = true
        request.destroy()
      })
    })
}
