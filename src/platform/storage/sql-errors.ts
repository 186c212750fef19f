import { SqlError } from "@effect/sql"
import { Cause, Data, Effect, Option, ParseResult, Predicate } from "effect"
import { isConnectionFailure } from "./connection-errors.js"

/**
 * What a PostgreSQL error means to the caller, by SQLSTATE: constraint failures the
 * repositories expect as outcomes, text PostgreSQL cannot store (a client's fault), and a
 * server that cannot be reached or cannot serve right now (retry later).
 */

/** A statement hit a unique index (SQLSTATE 23505); `constraint` names it. */
export class UniqueViolation extends Data.TaggedError("UniqueViolation")<{ readonly constraint: string }> {}
/** A CHECK or guard trigger refused the statement (SQLSTATE 23514). */
export class CheckViolation extends Data.TaggedError("CheckViolation")<{ readonly detail: string }> {}
/** A foreign key (or the attachment guard) found no parent row (SQLSTATE 23503). */
export class ForeignKeyViolation extends Data.TaggedError("ForeignKeyViolation")<{ readonly detail: string }> {}

export type ConstraintViolation = UniqueViolation | CheckViolation | ForeignKeyViolation

interface PgErrorFields {
  readonly code?: unknown
  readonly constraint?: unknown
  readonly message?: unknown
}

/** The PostgreSQL error fields behind a SqlError, if the driver reported any. */
export const pgErrorOf = (error: SqlError.SqlError): PgErrorFields =>
  typeof error.cause === "object" && error.cause !== null ? (error.cause as PgErrorFields) : {}

/**
 * Turns constraint failures into typed values and leaves every other SQL error as is.
 * Used around single statements whose constraint failures are expected outcomes.
 */
export const classifyConstraint = <A, R>(
  effect: Effect.Effect<A, SqlError.SqlError, R>
): Effect.Effect<A, SqlError.SqlError | ConstraintViolation, R> =>
  Effect.catchAll(effect, (error): Effect.Effect<never, SqlError.SqlError | ConstraintViolation> => {
    const pg = pgErrorOf(error)
    const text = typeof pg.message === "string" ? pg.message : error.message
    switch (pg.code) {
      case "23505":
        return Effect.fail(new UniqueViolation({ constraint: typeof pg.constraint === "string" ? pg.constraint : "" }))
      case "23514":
        return Effect.fail(new CheckViolation({ detail: text }))
      case "23503":
        return Effect.fail(new ForeignKeyViolation({ detail: text }))
      default:
        return Effect.fail(error)
    }
  })

/**
 * Whether `cause` holds a SqlError for text PostgreSQL cannot store: a NUL character
 * (`\u0000`, SQLSTATE 22021) or one the database encoding lacks (22P05). Any free-text
 * field or path parameter can carry one, so the renderer answers it once, as a 400.
 */
export const isUnstorableText = (cause: Cause.Cause<unknown>): boolean =>
  [...Cause.failures(cause), ...Cause.defects(cause)].some((error) => {
    if (!Predicate.isTagged(error, "SqlError")) return false
    const code = pgErrorOf(error as SqlError.SqlError).code
    return code === "22021" || code === "22P05"
  })

/**
 * SQLSTATEs of a server that cannot serve right now: a lost or refused connection (class
 * 08), a server shutting down, crashed or starting up (57P01-57P03), no connection slot
 * left (53300), a statement cancelled by `statement_timeout` (57014).
 */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "57014"])

/** What node-postgres and pg-pool say (no SQLSTATE, no code) about a connection that timed out or was lost. */
const LOST_CONNECTION_MESSAGES = [
  "timeout expired",
  "timeout exceeded when trying to connect",
  "Connection terminated",
  "Query read timeout",
  "is not queryable",
  "Cannot use a pool after calling end on the pool"
]

/**
 * Whether a SqlError says PostgreSQL is unreachable, frozen or overloaded (the request may
 * succeed later) rather than that it refused the statement.
 */
export const isDatabaseUnavailable = (error: SqlError.SqlError): boolean => {
  const { code, message } = pgErrorOf(error)
  if (typeof code === "string" && (code.startsWith("08") || UNAVAILABLE_SQLSTATES.has(code))) return true
  if (isConnectionFailure(error.cause)) return true
  return typeof message === "string" && LOST_CONNECTION_MESSAGES.some((text) => message.includes(text))
}

/** What a repository turns into a defect: the database failing, or a row its schema refuses. */
export type Infrastructure = SqlError.SqlError | ParseResult.ParseError

/**
 * The repositories' boundary: a failing database (any SqlError left) is a defect, and so is
 * a row that does not match its schema (the code and the database disagree); the domain
 * errors a repository translated its expected constraints into pass through.
 */
export const dieOnSqlError = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, Infrastructure>, R> =>
  Effect.catchAll(
    effect,
    (error) =>
      error instanceof SqlError.SqlError || ParseResult.isParseError(error)
        ? Effect.die(error)
        : Effect.fail(error as Exclude<E, Infrastructure>)
  )

/**
 * For the few callers that tolerate a failing database (a lease heartbeat keeps beating, a
 * scrape drops the series): a repository's SqlError defect back as a failure.
 */
export const databaseFailure = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError.SqlError, R> =>
  Effect.catchSomeDefect(
    effect,
    (defect) => defect instanceof SqlError.SqlError ? Option.some(Effect.fail(defect)) : Option.none()
  )
