import { formatTimestamp } from "./timestamp.js"

/**
 * The wire transforms' half of "optional members are omitted when unset": a nullable column
 * becomes a member that is absent (not `undefined`) when null, and back.
 */

/** A nullable column as an optional wire member: absent (not undefined) when null. */
export const present = <K extends string, A>(key: K, value: A | null) =>
  (value === null ? {} : { [key]: value }) as Partial<Record<K, A>>

/** A nullable timestamp column as an optional wire timestamp (`formatTimestamp`). */
export const optionalTimestamp = <K extends string>(key: K, value: Date | null) =>
  present(key, value === null ? null : formatTimestamp(value))

/** An optional wire timestamp back as a nullable column. */
export const parsedTimestamp = (value: string | undefined) => (value === undefined ? null : new Date(value))
