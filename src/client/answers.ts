import { Predicate } from "effect"
import { ProblemError } from "./errors.js"

/** How the client reads answers and failures, whichever way a request went (`HttpClient` or `transfer.ts`). */

export const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " ")

export const reasonOf = (cause: unknown): string => {
  if (cause instanceof Error) {
    // Node reports a refused connection to a dual-stack name as an AggregateError without a message.
    const code = (cause as { code?: unknown }).code
    if (cause.message !== "") return cause.message
    if (typeof code === "string") return code
    if (cause instanceof AggregateError && cause.errors.length > 0) return reasonOf(cause.errors[0])
  }
  return String(cause)
}

const isProblemBody = (body: unknown): body is { title?: unknown; detail?: unknown } => Predicate.isRecord(body)

/** The typed error of an error response: its problem+json `detail` and the request id. */
export const problemFrom = (
  response: {
    readonly status: number
    readonly text: string
    readonly requestId: string | undefined
    readonly method: string
    readonly url: string
  }
): ProblemError => {
  let body: unknown
  try {
    body = JSON.parse(response.text)
  } catch {
    // Not problem+json (a proxy's HTML page): the status line is all there is to say.
    body = undefined
  }
  const title = isProblemBody(body) && typeof body.title === "string" ? body.title : `HTTP ${response.status}`
  const detail = isProblemBody(body) && typeof body.detail === "string" && body.detail !== ""
    ? oneLine(body.detail)
    : undefined
  return new ProblemError({
    status: response.status,
    title,
    detail,
    requestId: response.requestId,
    method: response.method,
    url: response.url
  })
}
