import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { strictBody } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"

/**
 * Retention rules of an image (docs/lifecycle.md): the wire shapes, the rows, the plan of a
 * run, and the errors.
 */

/** `90d`: a whole number (at most 6 digits) of s, m, h, d or w. */
export const RETENTION_DURATION = /^[0-9]{1,6}[smhdw]$/

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }

/** The milliseconds of a duration matching `RETENTION_DURATION`. */
export const durationMillis = (text: string): number => Number(text.slice(0, -1)) * UNIT_SECONDS[text.slice(-1)]! * 1000

const retentionDuration = (field: string) =>
  Schema.String.pipe(
    Schema.pattern(RETENTION_DURATION, {
      message: () => `${field} must be a duration like 90d: a whole number of s, m, h, d or w`
    })
  )

export const MAX_KEEP_LAST = 100_000

export const RetentionRulesRequest = Schema.Struct({
  keep_last: Schema.optional(
    Schema.Number.pipe(
      Schema.filter((n) => Number.isSafeInteger(n) && n >= 0 && n <= MAX_KEEP_LAST, {
        message: () => `keep_last must be an integer from 0 to ${MAX_KEEP_LAST}`
      })
    )
  ),
  yank_older_than: Schema.optional(retentionDuration("yank_older_than")),
  retire_yanked_after: Schema.optional(retentionDuration("retire_yanked_after"))
}).annotations({ ...strictBody, identifier: "RetentionRulesRequest" })
export type RetentionRulesRequest = typeof RetentionRulesRequest.Type

export const RetentionRules = Schema.Struct({
  image: Schema.String,
  keep_last: Schema.optional(Schema.Number),
  yank_older_than: Schema.optional(Schema.String),
  retire_yanked_after: Schema.optional(Schema.String),
  /** When the worker next applies them. */
  next_run_at: TimestampString,
  last_run_at: Schema.optional(TimestampString),
  updated_at: TimestampString
}).annotations({ identifier: "RetentionRules" })
export type RetentionRules = typeof RetentionRules.Type

export const RetentionYank = Schema.Struct({
  version: Schema.String,
  published_at: TimestampString,
  reason: Schema.String
}).annotations({ identifier: "RetentionYank" })

export const RetentionRetire = Schema.Struct({
  version: Schema.String,
  yanked_at: TimestampString
}).annotations({ identifier: "RetentionRetire" })

export const RetentionPreview = Schema.Struct({
  image: Schema.String,
  /** Published versions the next run yanks, newest first. */
  yank: Schema.Array(RetentionYank),
  /** Yanked versions the next run retires, newest first. */
  retire: Schema.Array(RetentionRetire)
}).annotations({ identifier: "RetentionPreview" })
export type RetentionPreview = typeof RetentionPreview.Type

// ---------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------

export interface RetentionRulesRow {
  readonly image_id: string
  readonly keep_last: number | null
  readonly yank_older_than: string | null
  readonly retire_yanked_after: string | null
  readonly next_run_at: Date
  readonly last_run_at: Date | null
  readonly created_at: Date
  readonly updated_at: Date
}

export const rulesToWire = (imageName: string, row: RetentionRulesRow): RetentionRules => ({
  image: imageName,
  ...(row.keep_last !== null ? { keep_last: row.keep_last } : {}),
  ...(row.yank_older_than !== null ? { yank_older_than: row.yank_older_than } : {}),
  ...(row.retire_yanked_after !== null ? { retire_yanked_after: row.retire_yanked_after } : {}),
  next_run_at: formatTimestamp(row.next_run_at),
  ...(row.last_run_at !== null ? { last_run_at: formatTimestamp(row.last_run_at) } : {}),
  updated_at: formatTimestamp(row.updated_at)
})

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

/** The image exists but has no retention rules (GET …/retention and its preview). */
export class RetentionRulesNotFound extends Schema.TaggedError<RetentionRulesNotFound>()(
  "RetentionRulesNotFound",
  { name: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `retention not found: image ${this.name} has no retention rules`
  }
}
