import { Schema } from "effect"

/**
 * RFC 3339 in UTC with `Z`, fractional seconds only when non-zero and without trailing
 * zeros (Go's RFC3339Nano, api.md §1.4): `2026-05-14T09:12:03.48Z`, `2026-05-14T09:12:03Z`.
 * Every timestamp imgsrv puts on the wire goes through this one function.
 */
export const formatTimestamp = (date: Date): string => {
  // Without a regular expression: every listed row formats several timestamps, on hot paths.
  const iso = date.toISOString() // …:03.480Z — always three fraction digits
  const ms = date.getUTCMilliseconds()
  if (ms === 0) return `${iso.slice(0, -5)}Z`
  if (ms % 100 === 0) return `${iso.slice(0, -3)}Z`
  if (ms % 10 === 0) return `${iso.slice(0, -2)}Z`
  return iso
}

/** A timestamp on the wire as `formatTimestamp` writes it, documented as `format: date-time`. */
export const TimestampString = Schema.String.annotations({
  jsonSchema: { type: "string", format: "date-time", description: "RFC 3339 in UTC" }
})
