/**
 * Failures that say a dependency (PostgreSQL, the object store) cannot be reached right
 * now — the connection was refused, reset or went silent — as opposed to a dependency
 * that answered and refused the request. Callers answer the first kind with `503`.
 */

/** Node's codes for a connection that could not be opened or was lost. */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN"
])

/**
 * Whether `error` (or an error it wraps: `cause`, or the attempts of an `AggregateError`
 * from connecting to several addresses) is a connection failure or a timeout.
 */
export const isConnectionFailure = (error: unknown, depth = 0): boolean => {
  if (typeof error !== "object" || error === null || depth > 5) return false
  const { code, name, cause, errors } = error as {
    readonly code?: unknown
    readonly name?: unknown
    readonly cause?: unknown
    readonly errors?: unknown
  }
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true
  if (name === "TimeoutError") return true
  if (Array.isArray(errors) && errors.some((inner) => isConnectionFailure(inner, depth + 1))) return true
  return isConnectionFailure(cause, depth + 1)
}
