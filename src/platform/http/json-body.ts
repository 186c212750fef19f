import { HttpServerError, type HttpServerRequest } from "@effect/platform"
import { Effect, Either } from "effect"
import type { IncomingMessage } from "node:http"
import { InvalidRequest } from "./problem.js"

/**
 * JSON control bodies are read here, before the HttpApi decodes them, so that what the
 * platform reader cannot answer well is answered as problem+json:
 * - a body over the limit, however it is sent (a chunked body has no Content-Length to
 *   refuse it by), is a 413 while the connection is still there to carry it — the
 *   platform reader destroys the socket instead, and the client sees a reset;
 * - bytes that are not UTF-8, and `\ud800`-style escapes of unpaired UTF-16 surrogates,
 *   are a 400 — decoded as they are, both would be stored as U+FFFD, silently;
 * - nesting deeper than `MAX_JSON_DEPTH` is a 400 — a deeply nested value overflows the
 *   stack while a schema error about it is formatted.
 */

/** No control body nests deeper than a few levels; free-form `attributes` get ample room. */
export const MAX_JSON_DEPTH = 32

const BACKSLASH = 0x5c
const QUOTE = 0x22
const HEX4 = /^[0-9A-Fa-f]{4}$/

/** The UTF-16 code unit of the `\uXXXX` escape at `i` (the backslash), if there is a well-formed one. */
const escapedUnit = (text: string, i: number): number | undefined => {
  if (text.charCodeAt(i) !== BACKSLASH || text.charCodeAt(i + 1) !== 0x75) return undefined
  const hex = text.slice(i + 2, i + 6)
  return HEX4.test(hex) ? Number.parseInt(hex, 16) : undefined
}

const isHighSurrogate = (unit: number) => unit >= 0xd800 && unit <= 0xdbff
const isLowSurrogate = (unit: number) => unit >= 0xdc00 && unit <= 0xdfff

/**
 * What is wrong with a JSON text that `JSON.parse` would accept: nesting deeper than
 * `maxDepth`, or an escape of an unpaired surrogate. One linear pass without recursion;
 * syntax errors are left to the parser.
 */
export const jsonTextProblem = (text: string, maxDepth: number = MAX_JSON_DEPTH): string | undefined => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === QUOTE) {
        inString = false
      } else if (c === BACKSLASH) {
        const unit = escapedUnit(text, i)
        if (unit === undefined) {
          i += 1 // a one-character escape (or a malformed one, for the parser to refuse)
        } else if (isHighSurrogate(unit)) {
          const low = escapedUnit(text, i + 6)
          if (low === undefined || !isLowSurrogate(low)) return unpaired(unit)
          i += 11
        } else if (isLowSurrogate(unit)) {
          return unpaired(unit)
        } else {
          i += 5
        }
      }
    } else if (c === QUOTE) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      depth += 1
      if (depth > maxDepth) return `nesting deeper than ${maxDepth} levels`
    } else if (c === 0x5d || c === 0x7d) {
      depth -= 1
    }
  }
  return undefined
}

const unpaired = (unit: number) =>
  `string contains an unpaired UTF-16 surrogate (\\u${unit.toString(16).padStart(4, "0")}), which is not Unicode text`

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** A body read whole, or the news that it is longer than the limit. */
export type BodyRead =
  | { readonly _tag: "Read"; readonly bytes: Buffer }
  | { readonly _tag: "TooLarge" }

/**
 * Reads the request body, keeping at most `limit` bytes: at the first byte beyond, it
 * stops collecting and answers `TooLarge`. The rest is left flowing (and discarded) so the
 * socket stays open for the response.
 */
export const readBody = (message: IncomingMessage, limit: number): Effect.Effect<BodyRead, InvalidRequest> =>
  Effect.async<BodyRead, InvalidRequest>((resume) => {
    if (message.readableEnded) {
      resume(Effect.succeed({ _tag: "Read", bytes: Buffer.alloc(0) }))
      return
    }
    const chunks: Array<Buffer> = []
    let size = 0
    const detach = () => {
      message.off("data", onData)
      message.off("end", onEnd)
      message.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength
      if (size <= limit) {
        chunks.push(chunk)
        return
      }
      detach()
      // No listener from now on; flowing mode discards what still arrives.
      message.resume()
      resume(Effect.succeed({ _tag: "TooLarge" }))
    }
    const onEnd = () => {
      detach()
      resume(Effect.succeed({ _tag: "Read", bytes: Buffer.concat(chunks, size) }))
    }
    const onError = (cause: Error) => {
      detach()
      resume(Effect.fail(new InvalidRequest({ detail: `invalid JSON request body: ${cause.message}` })))
    }
    message.on("data", onData)
    message.once("end", onEnd)
    message.once("error", onError)
    return Effect.sync(detach)
  })

/** The text of a JSON body, or why it is not acceptable JSON text (the end of a 400 detail). */
export const jsonBodyText = (bytes: Uint8Array): Either.Either<string, string> => {
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return Either.left("not valid UTF-8")
  }
  const problem = jsonTextProblem(text)
  return problem === undefined ? Either.right(text) : Either.left(problem)
}

/**
 * `request` with its body already read as `bytes`: the platform's body readers (`text`,
 * and `json`, which reads `text`) answer from them instead of reading the socket again.
 * The text is checked only when the endpoint decodes its payload — after authentication,
 * so that an anonymous client still gets its 401 first — and a refusal is the same
 * decode failure a malformed body is (400 `invalid JSON request body: …`).
 */
export const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  bytes: Uint8Array
): HttpServerRequest.HttpServerRequest => {
  const text = Effect.suspend(() =>
    Either.match(jsonBodyText(bytes), {
      onLeft: (problem) =>
        Effect.fail(new HttpServerError.RequestError({ request, reason: "Decode", cause: new Error(problem) })),
      onRight: Effect.succeed
    })
  )
  return Object.create(request, { text: { value: text } }) as HttpServerRequest.HttpServerRequest
}
