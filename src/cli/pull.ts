import { Effect, Either } from "effect"
import { stat } from "node:fs/promises"
import * as path from "node:path"
import { ARTIFACT_FILE_NAMES, type Manifest } from "../catalog/schema.js"
import { ImgsrvClient, request, retryTransient } from "../client/client.js"
import { artifactDownloadPath, attachmentDownloadPath, download, type DownloadedFile } from "../client/download.js"
import type { ClientError } from "../client/errors.js"
import { type CommandSpec, formatBytes, type Parsed, table, UsageError } from "./args.js"
import { type CommandContext, splitRef } from "./context.js"

export const pullSpec: CommandSpec = {
  name: "pull",
  operands: [{ name: "IMAGE[:REF]" }],
  summary: "Downloads a published artifact (REF: a version or an alias; default the newest published version), " +
    "verifying its sha256 and resuming a partial download. With --out DIR, its attachments too.",
  options: [
    { name: "arch", kind: "value", value: "ARCH", help: "the artifact's architecture" },
    { name: "variant", kind: "value", value: "VARIANT", help: "the artifact's variant" },
    { name: "os", kind: "value", value: "OS", help: "the artifact's operating system" },
    { name: "format", kind: "value", value: "FORMAT", help: "the artifact's format (qcow2, raw, raw.gz, squashfs)" },
    {
      name: "out",
      kind: "value",
      value: "FILE|DIR",
      help: "a file, or a directory (existing, or ending in /) for the artifact and its attachments " +
        "(default: the artifact's file name here)"
    }
  ]
}

const fromEither = <A>(either: Either.Either<A, UsageError>) =>
  Either.isRight(either) ? Effect.succeed(either.right) : Effect.fail(either.left)

/** The newest published version when no ref is given (the list is newest first). */
export const resolveManifest = (image: string, ref: string | undefined) =>
  Effect.gen(function*() {
    const client = yield* ImgsrvClient
    let target = ref
    if (target === undefined) {
      const list = yield* request(
        "list the versions",
        // Newest first: the first page (of one) holds the newest.
        retryTransient(client.api.catalog.listVersions({ path: { name: image }, urlParams: { limit: "1" } }))
      )
      const newest = list.versions.find((v) => v.state === "published")
      if (newest === undefined) return yield* new UsageError({ reason: `${image} has no published version` })
      target = newest.version
    }
    return yield* request(
      "resolve the version",
      retryTransient(client.api.catalog.resolveRef({ path: { name: image, ref: target } }))
    )
  })

const isDirectory = (out: string) =>
  Effect.tryPromise({ try: () => stat(out), catch: () => undefined }).pipe(
    Effect.map((info) => info.isDirectory()),
    Effect.orElseSucceed(() => false)
  )

const chooseArtifact = (manifest: Manifest, parsed: Parsed) => {
  const wanted = {
    architecture: parsed.values.get("arch"),
    variant: parsed.values.get("variant"),
    operating_system: parsed.values.get("os"),
    format: parsed.values.get("format")
  }
  const candidates = manifest.artifacts.filter(({ artifact }) =>
    (Object.keys(wanted) as Array<keyof typeof wanted>).every((key) =>
      wanted[key] === undefined || artifact[key] === wanted[key]
    )
  )
  const name = `${manifest.image.name}:${manifest.version.version}`
  if (candidates.length === 1) return Effect.succeed(candidates[0]!)
  const list = (manifest.artifacts.length === 0 ? candidates : manifest.artifacts)
    .map(({ artifact: a }) => `${a.architecture}/${a.variant}/${a.operating_system}/${a.format}`).join(", ")
  return Effect.fail(
    new UsageError({
      reason: candidates.length === 0
        ? `no artifact of ${name} matches (it has ${list})`
        : `${name} has several artifacts (${list}); choose with --arch, --variant, --os or --format`
    })
  )
}

export const pull = (
  parsed: Parsed,
  context: CommandContext
): Effect.Effect<void, ClientError | UsageError, ImgsrvClient> =>
  Effect.gen(function*() {
    const { image, ref } = yield* fromEither(splitRef(parsed.operands[0]!, false))
    const manifest = yield* resolveManifest(image, ref)
    const version = manifest.version.version
    const { artifact, attachments } = yield* chooseArtifact(manifest, parsed)
    const fileName = ARTIFACT_FILE_NAMES[artifact.format]
    const out = parsed.values.get("out")
    const toDir = out !== undefined && (out.endsWith("/") || (yield* isDirectory(out)))
    const artifactOut = out === undefined ? fileName : toDir ? path.join(out, fileName) : out
    if (toDir) {
      yield* Effect.tryPromise({
        try: () => import("node:fs/promises").then((fs) => fs.mkdir(out, { recursive: true })),
        catch: (cause) => new UsageError({ reason: `cannot create ${out}: ${String(cause)}` })
      })
    }
    const files: Array<DownloadedFile> = []
    files.push(
      yield* download(artifactDownloadPath(image, version, artifact.id, fileName), {
        out: artifactOut,
        digest: artifact.primary_blob_digest,
        sizeBytes: artifact.primary_blob_size_bytes,
        onEvent: context.reporter.sink
      })
    )
    if (toDir) {
      for (const attachment of attachments) {
        files.push(
          yield* download(attachmentDownloadPath(image, version, artifact.id, attachment.id), {
            out: path.join(out, attachment.name),
            digest: attachment.blob_digest,
            sizeBytes: attachment.blob_size_bytes,
            onEvent: context.reporter.sink
          })
        )
      }
    }
    context.reporter.close()
    if (context.json) {
      context.out(`${
        JSON.stringify({
          event: "done",
          image,
          version,
          artifact_id: artifact.id,
          files: files.map((f) => ({ path: f.path, digest: f.digest, size_bytes: f.sizeBytes }))
        })
      }\n`)
    } else {
      context.out(table(
        ["FILE", "SIZE", "DIGEST"],
        files.map((f) => [f.path, formatBytes(f.sizeBytes), f.digest])
      ))
    }
  })
