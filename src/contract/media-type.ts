import { Schema } from "effect"

/**
 * Media types as imgsrv accepts and serves them. A declared media type ends up verbatim in
 * the `Content-Type` of every later download of the blob or artifact, so it must be a value
 * an HTTP header can carry: RFC 6838 `type/subtype` (restricted names), optional RFC 9110
 * `; name=value` parameters (token or quoted string), printable ASCII only, bounded length.
 */

/** Longest media type accepted (type and subtype are at most 127 characters each, RFC 6838 §4.2). */
export const MEDIA_TYPE_MAX_LENGTH = 255

const RESTRICTED_NAME = "[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
const QUOTED_STRING = "\"(?:[ !#-\\[\\]-~]|\\\\[ -~])*\""
const PARAMETER = ` *; *${TOKEN}=(?:${TOKEN}|${QUOTED_STRING})`
const MEDIA_TYPE = new RegExp(`^${RESTRICTED_NAME}/${RESTRICTED_NAME}(?:${PARAMETER})*$`)

export const isMediaType = (value: string): boolean => value.length <= MEDIA_TYPE_MAX_LENGTH && MEDIA_TYPE.test(value)

/** A media type field of a request body; the 400 detail names `field`. */
export const MediaType = (field: string) =>
  Schema.String.pipe(
    Schema.filter(isMediaType, {
      message: () =>
        `${field} must be a media type such as application/octet-stream: type/subtype with optional ` +
        `;name=value parameters, printable ASCII, at most ${MEDIA_TYPE_MAX_LENGTH} characters`
    })
  ).annotations({
    description: "RFC 6838 media type (type/subtype, optional parameters), printable ASCII",
    jsonSchema: { maxLength: MEDIA_TYPE_MAX_LENGTH }
  })

/** What a download is served as when the stored media type cannot be a header value. */
export const FALLBACK_MEDIA_TYPE = "application/octet-stream"
