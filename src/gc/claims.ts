import type { SqlClient, SqlError } from "@effect/sql"
import { Effect } from "effect"
import type { Sha256Digest } from "../contract/digest.js"
import { pgErrorOf } from "../platform/storage/sql-errors.js"

/**
 * What other concerns need of the collector's protocol (service.ts, migrations/0009_gc.sql).
 * The triggers take the digest locks for ordinary writes; these are for the few writers
 * that must check something outside the database under the lock (the promotion worker).
 */

/** A collection of the digest is unfinished (tombstone): retry later. */
export const BLOB_BEING_COLLECTED_SQLSTATE = "55IM1"
/** A session was to become `ready` for a digest that has no blob row (collected meanwhile). */
export const BLOB_NOT_TRUSTED_SQLSTATE = "55IM2"

export const isSqlState = (code: string) => (error: SqlError.SqlError): boolean => pgErrorOf(error).code === code

/**
 * Inside the caller's transaction: takes the digest's lock shared (held until commit) and
 * fails with SQLSTATE 55IM1 while a collection of the digest is unfinished. Until the
 * commit no collection of the digest can start, so a check of the store made after this
 * stays true for a blob row written in the same transaction.
 */
export const claimDigestForBlob = (
  sql: SqlClient.SqlClient,
  digest: Sha256Digest
): Effect.Effect<void, SqlError.SqlError> =>
  sql`SELECT gc_claim_digest(${digest}), gc_require_no_tombstone(${digest})`.pipe(Effect.asVoid)
