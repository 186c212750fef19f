import { Effect } from "effect"
import { FALLBACK_MEDIA_TYPE, isMediaType } from "../../contract/media-type.js"

// Which media types are accepted is part of the wire contract (src/contract/), which the
// typed client imports without any server code; server modules keep importing it from here.
export { FALLBACK_MEDIA_TYPE, isMediaType, MEDIA_TYPE_MAX_LENGTH, MediaType } from "../../contract/media-type.js"

/**
 * The `Content-Type` for a stored media type. Values stored before media types were
 * validated may not be valid header values, and a published row can never be corrected:
 * such a value is served as `application/octet-stream` (with a warning naming it) instead
 * of failing every download of the blob.
 */
export const contentTypeOf = (stored: string, route: string): Effect.Effect<string> =>
  isMediaType(stored)
    ? Effect.succeed(stored)
    : Effect.as(
      Effect.logWarning("stored media type is not a valid Content-Type; serving application/octet-stream").pipe(
        Effect.annotateLogs({ route, media_type: JSON.stringify(stored.slice(0, 100)) })
      ),
      FALLBACK_MEDIA_TYPE
    )
