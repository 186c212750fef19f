import { Effect, Either } from "effect"
import { allPages, ImgsrvClient, request, retryTransient } from "../client/client.js"
import type { ClientError } from "../client/errors.js"
import { type CommandSpec, formatBytes, type Parsed, table, type UsageError } from "./args.js"
import { checkImage, type CommandContext, splitRef } from "./context.js"
import { resolveManifest } from "./pull.js"

/** `imgsrv images`, `imgsrv versions IMAGE`, `imgsrv inspect IMAGE:REF`: tables, or the API's JSON. */

export const imagesSpec: CommandSpec = {
  name: "images",
  operands: [],
  summary: "Lists the images that have a published version.",
  options: []
}

export const versionsSpec: CommandSpec = {
  name: "versions",
  operands: [{ name: "IMAGE" }],
  summary: "Lists an image's published versions, newest first.",
  options: []
}

export const inspectSpec: CommandSpec = {
  name: "inspect",
  operands: [{ name: "IMAGE[:REF]" }],
  summary: "Shows a published version (REF: a version or an alias; default the newest): its artifacts and " +
    "attachments, with sizes and digests.",
  options: []
}

const fromEither = <A>(either: Either.Either<A, UsageError>) =>
  Either.isRight(either) ? Effect.succeed(either.right) : Effect.fail(either.left)

const json = (context: CommandContext, value: unknown) => context.out(`${JSON.stringify(value, null, 2)}\n`)

export const images = (
  _: Parsed,
  context: CommandContext
): Effect.Effect<void, ClientError | UsageError, ImgsrvClient> =>
  Effect.gen(function*() {
    const client = yield* ImgsrvClient
    const pages = yield* allPages((urlParams) =>
      request("list the images", retryTransient(client.api.catalog.listImages({ urlParams })))
    )
    // The whole list, as one document of the API's shape (without a cursor: nothing follows).
    const list = { images: pages.flatMap((page) => page.images) }
    if (context.json) return json(context, list)
    context.out(table(
      ["NAME", "DISPLAY NAME", "UPDATED"],
      list.images.map((i) => [i.name, i.display_name ?? "", i.updated_at])
    ))
  })

export const versions = (
  parsed: Parsed,
  context: CommandContext
): Effect.Effect<void, ClientError | UsageError, ImgsrvClient> =>
  Effect.gen(function*() {
    const image = yield* fromEither(checkImage(parsed.operands[0]!))
    const client = yield* ImgsrvClient
    const pages = yield* allPages((urlParams) =>
      request(
        "list the versions",
        retryTransient(client.api.catalog.listVersions({ path: { name: image }, urlParams }))
      )
    )
    const list = { versions: pages.flatMap((page) => page.versions) }
    if (context.json) return json(context, list)
    context.out(table(
      ["VERSION", "STATE", "PUBLISHED"],
      list.versions.map((v) => [v.version, v.state, v.published_at ?? ""])
    ))
  })

export const inspect = (
  parsed: Parsed,
  context: CommandContext
): Effect.Effect<void, ClientError | UsageError, ImgsrvClient> =>
  Effect.gen(function*() {
    const { image, ref } = yield* fromEither(splitRef(parsed.operands[0]!, false))
    const manifest = yield* resolveManifest(image, ref)
    if (context.json) return json(context, manifest)
    const { version } = manifest
    context.out(
      `${manifest.image.name}:${version.version}  ${version.state}${
        version.published_at === undefined ? "" : ` ${version.published_at}`
      }\n\n`
    )
    context.out(table(
      ["ARTIFACT", "ARCH", "VARIANT", "OS", "FORMAT", "SIZE", "DIGEST"],
      manifest.artifacts.map(({ artifact: a }) => [
        a.id,
        a.architecture,
        a.variant,
        a.operating_system,
        a.format,
        formatBytes(a.primary_blob_size_bytes),
        a.primary_blob_digest
      ])
    ))
    const attachments = manifest.artifacts.flatMap(({ artifact, attachments }) =>
      attachments.map((t) => [artifact.id, t.name, t.media_type, formatBytes(t.blob_size_bytes), t.blob_digest])
    )
    if (attachments.length > 0) {
      context.out(`\n${table(["ARTIFACT", "ATTACHMENT", "MEDIA TYPE", "SIZE", "DIGEST"], attachments)}`)
    }
  })
