import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { ImageId } from "../catalog/schema.js"
import { optionalTimestamp, parsedTimestamp, present } from "../contract/optional-members.js"
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

// Rows as the repository decodes them (`SqlSchema`); a row that does not match its schema
// is a defect (code and database disagree).

/** An image's retention rules (`image_retention_rules`). */
export const RetentionRulesRow = Schema.Struct({
  image_id: ImageId,
  keep_last: Schema.NullOr(Schema.Number),
  yank_older_than: Schema.NullOr(Schema.String),
  retire_yanked_after: Schema.NullOr(Schema.String),
  next_run_at: Schema.DateFromSelf,
  last_run_at: Schema.NullOr(Schema.DateFromSelf),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})
export type RetentionRulesRow = typeof RetentionRulesRow.Type

/** Due rules a run has claimed, with the image's name. */
export const DueRetentionRules = Schema.Struct({ ...RetentionRulesRow.fields, image_name: Schema.String })
export type DueRetentionRules = typeof DueRetentionRules.Type

// ---------------------------------------------------------------------------------
// Encoding: the wire shapes declared as transformations of the domain types.
// ---------------------------------------------------------------------------------

/** What the wire shows of a rules row (not the image id, not its creation time). */
const ShownRules = RetentionRulesRow.pick(
  "keep_last",
  "yank_older_than",
  "retire_yanked_after",
  "next_run_at",
  "last_run_at",
  "updated_at"
)

/** The wire rules of an image's rules row (unset rules and a never-run `last_run_at` absent). */
export const RetentionRulesFromRow = Schema.transform(
  Schema.Struct({ image: Schema.String, rules: ShownRules }),
  RetentionRules,
  {
    strict: true,
    decode: ({ image, rules }) => ({
      image,
      ...present("keep_last", rules.keep_last),
      ...present("yank_older_than", rules.yank_older_than),
      ...present("retire_yanked_after", rules.retire_yanked_after),
      next_run_at: formatTimestamp(rules.next_run_at),
      ...optionalTimestamp("last_run_at", rules.last_run_at),
      updated_at: formatTimestamp(rules.updated_at)
    }),
    encode: (wire) => ({
      image: wire.image,
      rules: {
        keep_last: wire.keep_last ?? null,
        yank_older_than: wire.yank_older_than ?? null,
        retire_yanked_after: wire.retire_yanked_after ?? null,
        next_run_at: new Date(wire.next_run_at),
        last_run_at: parsedTimestamp(wire.last_run_at),
        updated_at: new Date(wire.updated_at)
      }
    })
  }
)

/** The rules of an image as the API shows them. */
export const rulesToWire = (image: string, rules: RetentionRulesRow): RetentionRules =>
  Schema.decodeSync(RetentionRulesFromRow)({ image, rules })

/** What the preview shows of a planned version: its version, and when it was published and yanked. */
const PlannedVersion = Schema.Struct({
  version: Schema.String,
  published_at: Schema.NullOr(Schema.DateFromSelf),
  yanked_at: Schema.NullOr(Schema.DateFromSelf)
})

/** A version's time a plan relies on: a published version has `published_at`, a retired one `yanked_at`. */
const plannedTime = (time: Date | null): string => formatTimestamp(time!)

/** The preview of a plan: what the next run yanks (with why) and retires, newest first. */
export const RetentionPreviewFromPlan = Schema.transform(
  Schema.Struct({
    image: Schema.String,
    yank: Schema.Array(Schema.Struct({ version: PlannedVersion, reason: Schema.String })),
    retire: Schema.Array(PlannedVersion)
  }),
  RetentionPreview,
  {
    strict: true,
    decode: ({ image, retire, yank }) => ({
      image,
      yank: yank.map(({ reason, version }) => ({
        version: version.version,
        published_at: plannedTime(version.published_at),
        reason
      })),
      retire: retire.map((version) => ({ version: version.version, yanked_at: plannedTime(version.yanked_at) }))
    }),
    encode: (wire) => ({
      image: wire.image,
      yank: wire.yank.map(({ published_at, reason, version }) => ({
        version: { version, published_at: new Date(published_at), yanked_at: null },
        reason
      })),
      retire: wire.retire.map(({ version, yanked_at }) => ({
        version,
        published_at: null,
        yanked_at: new Date(yanked_at)
      }))
    })
  }
)

/** What the next run of an image's rules does, as the preview shows it. */
export const previewToWire: (plan: typeof RetentionPreviewFromPlan.Encoded) => RetentionPreview = Schema.decodeSync(
  RetentionPreviewFromPlan
)

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
