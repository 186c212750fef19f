import { type SqlClient, SqlError } from "@effect/sql"
import { Data, Effect } from "effect"
import type { Sha256Digest } from "../contract/digest.js"
import { pgErrorOf } from "../platform/storage/sql-errors.js"

/**
 * What other concerns need of the collector's protocol (service.ts, migrations/0009_gc.sql).
 * The triggers take the digest locks for ordinary writes; these are for the few writers
 * that must check something outside the database under the lock (the promotion worker),
 * and the two refusals of the protocol as the domain errors their repositories declare.
 */

/** A collection of the digest is unfinished (tombstone, SQLSTATE 55IM1): retry later. */
export class BlobBeingCollected extends Data.TaggedError("BlobBeingCollected")<{ readonly detail: string }> {
  // The log line of a retried promotion shows it: say what the database said.
  override get message() {
    return this.detail
  }
}

/**
 * A session was to become `ready` for a digest that has no blob row (SQLSTATE 55IM2): the
 * blob was collected meanwhile.
 */
export class BlobNotTrusted extends Data.TaggedError("BlobNotTrusted")<{ readonly detail: string }> {
  override get message() {
    return this.detail
  }
}

const refusal =
  <T>(code: string, make: (detail: string) => T) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | T, R> =>
    Effect.catchIf(
      effect,
      (error) => error instanceof SqlError.SqlError && pgErrorOf(error).code === code,
      (error) => Effect.fail(make((error as SqlError.SqlError).message))
    )

/** The statement's 55IM1 (a collection of the digest is unfinished) as `BlobBeingCollected`. */
export const refusedWhileCollected = refusal("55IM1", (detail) => new BlobBeingCollected({ detail }))

/** The statement's 55IM2 (a `ready` session for a digest with no blob row) as `BlobNotTrusted`. */
export const refusedUntrusted = refusal("55IM2", (detail) => new BlobNotTrusted({ detail }))

/**
 * Inside the caller's transaction: takes the digest's lock shared (held until commit) and
 * fails with `BlobBeingCollected` while a collection of the digest is unfinished. Until the
 * commit no collection of the digest can start, so a check of the store made after this
 * stays true for a blob row written in the same transaction.
 */
export const claimDigestForBlob = (
  sql: SqlClient.SqlClient,
  digest: Sha256Digest
): Effect.Effect<void, BlobBeingCollected | SqlError.SqlError> =>
  sql`SELECT gc_claim_digest(${digest}), gc_require_no_tombstone(${digest})`.pipe(
    Effect.asVoid,
    refusedWhileCollected
  )
