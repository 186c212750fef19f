import { createHmac, timingSafeEqual } from "node:crypto"
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

/**
 * A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every
 * request and answers what the test scripts. Signatures are checked here with the
 * Standard Webhooks algorithm written out independently of src/webhooks/signing.ts.
 */

export interface Received {
  readonly id: string
  readonly timestamp: string
  readonly signature: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly event: {
    readonly id: string
    readonly type: string
    readonly timestamp: string
    readonly data: Record<string, unknown>
  }
  readonly path: string
  /** What this request was answered with. */
  readonly status: number
}

/** How to answer the n-th request (0-based): a status, a redirect, or never (hang). */
export type Answer = number | { readonly redirect: string } | "hang"

export interface Receiver {
  readonly url: string
  readonly port: number
  readonly received: () => ReadonlyArray<Received>
  /** Resolves once `predicate` holds for the received requests (polling; rejects after `timeoutMs`). */
  readonly waitFor: (
    predicate: (received: ReadonlyArray<Received>) => boolean,
    timeoutMs?: number,
    what?: string
  ) => Promise<ReadonlyArray<Received>>
  /** Sets how the next requests are answered (then `fallback`, default 200). */
  readonly script: (answers: ReadonlyArray<Answer>, fallback?: Answer) => void
  readonly close: () => Promise<void>
}

export const startReceiver = async (): Promise<Receiver> => {
  const received: Array<Received> = []
  let answers: Array<Answer> = []
  let fallback: Answer = 200
  const hanging = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const answer = answers.length > 0 ? answers.shift()! : fallback
      const body = Buffer.concat(chunks).toString("utf8")
      const status = answer === "hang" ? 0 : typeof answer === "number" ? answer : 302
      received.push({
        id: String(req.headers["webhook-id"] ?? ""),
        timestamp: String(req.headers["webhook-timestamp"] ?? ""),
        signature: String(req.headers["webhook-signature"] ?? ""),
        headers: req.headers,
        body,
        event: JSON.parse(body === "" ? "{}" : body) as Received["event"],
        path: req.url ?? "",
        status
      })
      if (answer === "hang") {
        hanging.add(res)
        return
      }
      if (typeof answer === "number") {
        res.writeHead(answer, { "content-type": "text/plain" }).end(answer >= 300 ? "no" : "ok")
      } else {
        res.writeHead(302, { location: answer.redirect }).end()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received: () => [...received],
    waitFor: async (predicate, timeoutMs = 15_000, what = "the expected webhooks") => {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        if (predicate(received)) return [...received]
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      throw new Error(
        `timed out waiting for ${what}; received: ${
          JSON.stringify(received.map((r) => [r.event.type, r.id, r.status]))
        }`
      )
    },
    script: (next, otherwise = 200) => {
      answers = [...next]
      fallback = otherwise
    },
    close: async () => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/**
 * Standard Webhooks verification (https://www.standardwebhooks.com/): the key is the
 * base64 after `whsec_`; the signed content is `${id}.${timestamp}.${body}`; the header
 * holds space-separated `v1,<base64 HMAC-SHA256>` entries, any of which may match; the
 * timestamp must be within 5 minutes of now.
 */
export const verifySignature = (secret: string, request: Received, nowSeconds = Date.now() / 1000): boolean => {
  if (!secret.startsWith("whsec_")) return false
  const timestamp = Number(request.timestamp)
  if (!Number.isInteger(timestamp) || Math.abs(nowSeconds - timestamp) > 300) return false
  const key = Buffer.from(secret.substring("whsec_".length), "base64")
  const expected = createHmac("sha256", key).update(`${request.id}.${request.timestamp}.${request.body}`).digest()
  return request.signature.split(" ").some((entry) => {
    const [version, value] = entry.split(",", 2)
    if (version !== "v1" || value === undefined) return false
    const given = Buffer.from(value, "base64")
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
}

/** The signatures of a request, each checked against `secret` (for rotation). */
export const signaturesMatching = (secret: string, request: Received): number =>
  request.signature.split(" ").filter((entry) => verifySignature(secret, { ...request, signature: entry })).length
