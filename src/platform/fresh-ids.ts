import { Context, Effect } from "effect"
import { randomUUID } from "node:crypto"

/**
 * Where the domains get fresh UUIDs (images, versions, uploads, jobs, webhooks, events). A
 * Reference, so production needs no wiring while a test can provide a fixed sequence; time
 * comes from effect's `Clock` for the same reason (see CONTRIBUTING.md).
 */
export class FreshIds extends Context.Reference<FreshIds>()("imgsrv/FreshIds", {
  defaultValue: () => ({ uuid: Effect.sync((): string => randomUUID()) })
}) {}

/** A fresh canonical lower-case UUID. */
export const freshUuid: Effect.Effect<string> = Effect.flatMap(FreshIds, (ids) => ids.uuid)

/**
 * A fresh UUID now, from the `FreshIds` of `context` (the default when it holds none), for code
 * that runs before any fiber of a request: the listener's request ids. One synchronous run, ~1 µs.
 */
export const unsafeFreshUuid = (context: Context.Context<never>): string =>
  Effect.runSync(Context.get(context, FreshIds).uuid)
