import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** Expected failures of `POST /v1/admin/gc`; each `message` is the problem `detail`. */

/** Another collection (this replica's worker, another replica, another request) holds the lock. */
export class GcAlreadyRunning extends Schema.TaggedError<GcAlreadyRunning>()(
  "GcAlreadyRunning",
  {},
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return "a garbage collection is already running; try again when it has finished"
  }
}
