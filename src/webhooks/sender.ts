import type { Duration } from "effect"
import { Effect } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import { guardedLookup, literalHostRefusal, RefusedAddress } from "./address-guard.js"
import { SendFailed } from "./errors.js"

/**
 * One webhook POST, with the safety rules of issue 14 §5: the address check at connect
 * time (unless private networks are allowed), no redirects (node's client never follows
 * them; a 3xx is a failed attempt), a bounded read of the response (the body is not used;
 * reading a little lets a well-behaved server finish, and more than that is cut off), a
 * fresh connection per attempt (no pooled socket outlives an address check), and one
 * deadline over connect, answer and read.
 */

/** Bytes of a response body read before the connection is closed. */
export const RESPONSE_READ_LIMIT = 64 * 1024

export interface WebhookRequest {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  readonly timeout: Duration.Duration
  readonly allowPrivateNetworks: boolean
}

const describeError = (error: NodeJS.ErrnoException): string => {
  switch (error.code) {
    case "ECONNREFUSED":
      return "connection refused"
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "host does not resolve"
    case "ECONNRESET":
      return "connection reset"
    default:
      return error.code !== undefined ? `network error (${error.code})` : "network error"
  }
}

/** The response status of a 2xx; anything else fails with why. */
export const postWebhook = (request: WebhookRequest): Effect.Effect<number, SendFailed> =>
  Effect.suspend(() => {
    const url = new URL(request.url)
    if (!request.allowPrivateNetworks) {
      const refusal = literalHostRefusal(url)
      if (refusal !== undefined) return Effect.fail(new SendFailed({ kind: "refused", detail: `refused: ${refusal}` }))
    }
    const client = url.protocol === "https:" ? https : http
    const body = Buffer.from(request.body, "utf8")
    const send = Effect.async<number, SendFailed>((resume) => {
      let settled = false
      const settle = (effect: Effect.Effect<number, SendFailed>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      const req = client.request(url, {
        method: "POST",
        agent: false,
        headers: { ...request.headers, "content-length": String(body.byteLength) },
        ...(request.allowPrivateNetworks ? {} : { lookup: guardedLookup })
      }, (res) => {
        const status = res.statusCode ?? 0
        let read = 0
        const finish = () => {
          if (status >= 200 && status < 300) settle(Effect.succeed(status))
          else {
            const redirect = status >= 300 && status < 400 ? " (redirects are not followed)" : ""
            settle(Effect.fail(new SendFailed({ kind: "http", status, detail: `HTTP ${status}${redirect}` })))
          }
        }
        res.on("data", (chunk: Buffer) => {
          read += chunk.byteLength
          if (read > RESPONSE_READ_LIMIT) {
            // The status is all imgsrv needs; it stops reading a response that goes on.
            finish()
            res.destroy()
          }
        })
        res.on("end", finish)
        res.on("error", finish)
        res.on("close", finish)
      })
      req.on("error", (error: NodeJS.ErrnoException) => {
        if (error instanceof RefusedAddress) {
          settle(Effect.fail(new SendFailed({ kind: "refused", detail: `refused: ${error.message}` })))
        } else {
          settle(Effect.fail(new SendFailed({ kind: "network", detail: describeError(error) })))
        }
      })
      req.end(body)
      return Effect.sync(() => {
        settled = true
        req.destroy()
      })
    })
    return send.pipe(
      Effect.timeoutFail({
        duration: request.timeout,
        onTimeout: () => new SendFailed({ kind: "timeout", detail: "timed out" })
      })
    )
  })
