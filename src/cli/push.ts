import { Duration, Effect, Either } from "effect"
import * as path from "node:path"
import type { ArtifactFormat } from "../catalog/schema.js"
import { INCUS_METADATA_ATTACHMENT } from "../catalog/schema.js"
import type { ImgsrvClient } from "../client/client.js"
import type { ClientError } from "../client/errors.js"
import { type ArtifactSpec, type AttachmentSpec, publishVersion } from "../client/publish.js"
import { type UploadedBlob, uploadFile } from "../client/upload.js"
import { type CommandSpec, type Parsed, parseDuration, parsePositiveInt, parseSize, UsageError } from "./args.js"
import { checkAlias, checkToken, type CommandContext, splitRef } from "./context.js"
import {
  detectDiskFormat,
  imageDirectory,
  INCUS_METADATA_MEDIA_TYPE,
  MEDIA_TYPES,
  metadataArchitecture
} from "./inputs.js"

export const pushSpec: CommandSpec = {
  name: "push",
  operands: [{ name: "IMAGE:VERSION" }],
  summary: "Uploads an image's files (resumably, parts in parallel), declares them on the version, publishes it " +
    "and moves aliases. Running it again continues an interrupted push; a published version with the same bytes " +
    "is reported as already published.",
  options: [
    { name: "disk", kind: "value", value: "FILE", help: "VM disk image (qcow2, raw or raw.gz; see --format)" },
    { name: "format", kind: "value", value: "FORMAT", help: "disk format: qcow2, raw, raw.gz (default: detected)" },
    { name: "rootfs", kind: "value", value: "FILE", help: "container root filesystem (squashfs)" },
    { name: "incus-metadata", kind: "value", value: "FILE", help: "Incus metadata tarball, attached as incus.tar.xz" },
    { name: "attach", kind: "repeated", value: "NAME=FILE[:MEDIA_TYPE]", help: "another attachment" },
    {
      name: "from",
      kind: "value",
      value: "DIR",
      help: "take the files from a distrobuilder or `incus image export` dir"
    },
    { name: "os", kind: "value", value: "OS", help: "operating system (default linux)" },
    { name: "arch", kind: "value", value: "ARCH", help: "architecture (default: metadata.yaml's, else amd64)" },
    { name: "variant", kind: "value", value: "VARIANT", help: "variant (default: default)" },
    { name: "alias", kind: "repeated", value: "NAME", help: "alias to move to the version once published" },
    { name: "no-publish", kind: "flag", help: "leave the version a draft" },
    { name: "concurrency", kind: "value", value: "N", help: "parts in flight at once (default 4)" },
    { name: "part-size", kind: "value", value: "SIZE", help: "bytes per part, e.g. 64MiB (default: the server's)" },
    { name: "timeout", kind: "value", value: "DURATION", help: "how long to wait for verification and publishing (1h)" }
  ]
}

interface FileToPush {
  readonly file: string
  readonly label: string
}

interface PushPlan {
  readonly image: string
  readonly version: string
  readonly artifacts: ReadonlyArray<{ readonly file: string; readonly format: ArtifactFormat }>
  readonly attachments: ReadonlyArray<{ readonly name: string; readonly file: string; readonly mediaType: string }>
  readonly os: string
  readonly arch: string | undefined
  readonly variant: string | undefined
  readonly aliases: ReadonlyArray<string>
  readonly publish: boolean
  readonly concurrency: number
  readonly partSize: number | undefined
  readonly timeout: Duration.Duration
}

const usage = (reason: string) => Effect.fail(new UsageError({ reason }))

const fromEither = <A>(either: Either.Either<A, UsageError>) =>
  Either.isRight(either) ? Effect.succeed(either.right) : Effect.fail(either.left)

/** `NAME=FILE[:MEDIA_TYPE]`; the media type is split off only when it looks like one. */
const parseAttach = (text: string) => {
  const eq = text.indexOf("=")
  if (eq <= 0) return usage(`--attach expects NAME=FILE[:MEDIA_TYPE], got ${JSON.stringify(text)}`)
  const name = text.slice(0, eq)
  let file = text.slice(eq + 1)
  let mediaType = "application/octet-stream"
  const colon = file.lastIndexOf(":")
  if (colon > 0 && /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][\w!#$&^.+-]*(;.*)?$/.test(file.slice(colon + 1))) {
    mediaType = file.slice(colon + 1)
    file = file.slice(0, colon)
  }
  return Effect.map(fromEither(checkToken("attachment name", name)), () => ({ name, file, mediaType }))
}

const planOf = (parsed: Parsed) =>
  Effect.gen(function*() {
    const { image, ref } = yield* fromEither(splitRef(parsed.operands[0]!, true))
    const fromDir = parsed.values.get("from")
    const dir = fromDir === undefined ? undefined : yield* imageDirectory(fromDir)
    const disk = parsed.values.get("disk") ?? dir?.disk
    const rootfs = parsed.values.get("rootfs") ?? dir?.rootfs
    const metadata = parsed.values.get("incus-metadata") ?? dir?.metadata
    if (disk === undefined && rootfs === undefined) return yield* usage("give --disk FILE, --rootfs FILE or --from DIR")
    const formatOption = parsed.values.get("format")
    if (formatOption !== undefined && !["qcow2", "raw", "raw.gz"].includes(formatOption)) {
      return yield* usage(`--format must be qcow2, raw or raw.gz, got ${JSON.stringify(formatOption)}`)
    }
    if (formatOption !== undefined && disk === undefined) return yield* usage("--format applies to --disk")
    const artifacts: Array<{ file: string; format: ArtifactFormat }> = []
    if (disk !== undefined) {
      artifacts.push({
        file: disk,
        format: (formatOption as ArtifactFormat | undefined) ?? (yield* detectDiskFormat(disk))
      })
    }
    if (rootfs !== undefined) artifacts.push({ file: rootfs, format: "squashfs" })
    const attachments: Array<{ name: string; file: string; mediaType: string }> = []
    if (metadata !== undefined) {
      attachments.push({ name: INCUS_METADATA_ATTACHMENT, file: metadata, mediaType: INCUS_METADATA_MEDIA_TYPE })
    }
    for (const text of parsed.repeated.get("attach") ?? []) attachments.push(yield* parseAttach(text))
    const names = attachments.map((a) => a.name)
    const duplicate = names.find((name, i) => names.indexOf(name) !== i)
    if (duplicate !== undefined) return yield* usage(`two attachments named ${duplicate}`)
    const os = parsed.values.get("os") ?? "linux"
    yield* fromEither(checkToken("--os", os))
    const arch = parsed.values.get("arch")
    if (arch !== undefined) yield* fromEither(checkToken("--arch", arch))
    const variant = parsed.values.get("variant")
    if (variant !== undefined) yield* fromEither(checkToken("--variant", variant))
    const aliases = parsed.repeated.get("alias") ?? []
    for (const alias of aliases) yield* fromEither(checkAlias(alias))
    const publish = !parsed.flags.has("no-publish")
    if (!publish && aliases.length > 0) return yield* usage("--alias needs a published version (drop --no-publish)")
    const concurrencyText = parsed.values.get("concurrency")
    const concurrency = concurrencyText === undefined
      ? 4
      : yield* fromEither(parsePositiveInt("concurrency", concurrencyText))
    const partSizeText = parsed.values.get("part-size")
    const partSize = partSizeText === undefined ? undefined : yield* fromEither(parseSize("part-size", partSizeText))
    const timeoutText = parsed.values.get("timeout")
    const timeout = timeoutText === undefined
      ? Duration.hours(1)
      : yield* fromEither(parseDuration("timeout", timeoutText))
    return {
      image,
      version: ref!,
      artifacts,
      attachments,
      os,
      arch,
      variant,
      aliases,
      publish,
      concurrency,
      partSize,
      timeout
    } satisfies PushPlan
  })

export const push = (
  parsed: Parsed,
  context: CommandContext
): Effect.Effect<void, ClientError | UsageError, ImgsrvClient> =>
  Effect.gen(function*() {
    const plan = yield* planOf(parsed)
    const metadata = plan.attachments.find((a) => a.name === INCUS_METADATA_ATTACHMENT)
    const arch = plan.arch ?? (metadata === undefined ? "amd64" : yield* metadataArchitecture(metadata.file))

    // Every distinct file once, one after the other (each with its parts in parallel).
    const files: Array<FileToPush> = []
    for (const file of [...plan.artifacts.map((a) => a.file), ...plan.attachments.map((a) => a.file)]) {
      if (!files.some((f) => path.resolve(f.file) === path.resolve(file))) {
        files.push({ file, label: path.basename(file) })
      }
    }
    const blobs = new Map<string, UploadedBlob>()
    for (const { file, label } of files) {
      blobs.set(
        path.resolve(file),
        yield* uploadFile(file, {
          concurrency: plan.concurrency,
          partSize: plan.partSize,
          filenameHint: label,
          state: context.state,
          onEvent: context.reporter.sink,
          label,
          timeout: plan.timeout
        })
      )
    }
    const blobOf = (file: string) => blobs.get(path.resolve(file))!
    const attachments: Array<AttachmentSpec> = plan.attachments.map((a) => ({
      name: a.name,
      mediaType: a.mediaType,
      digest: blobOf(a.file).digest,
      sizeBytes: blobOf(a.file).sizeBytes
    }))
    const artifacts: Array<ArtifactSpec> = plan.artifacts.map((a) => ({
      variant: plan.variant,
      operatingSystem: plan.os,
      architecture: arch,
      format: a.format,
      digest: blobOf(a.file).digest,
      sizeBytes: blobOf(a.file).sizeBytes,
      mediaType: MEDIA_TYPES[a.format],
      attachments
    }))
    const result = yield* publishVersion({
      image: plan.image,
      version: plan.version,
      artifacts,
      publish: plan.publish,
      aliases: plan.aliases,
      state: context.state,
      onEvent: context.reporter.sink,
      timeout: plan.timeout
    })
    context.reporter.close()
    const sent = [...blobs.values()].reduce((n, b) => n + b.partsSent, 0)
    const state = result.manifest.version.state
    if (context.json) {
      context.out(`${
        JSON.stringify({
          event: "done",
          image: plan.image,
          version: plan.version,
          state,
          already_published: result.alreadyPublished,
          parts_sent: sent,
          aliases: plan.aliases,
          artifacts: result.manifest.artifacts.map(({ artifact }) => ({
            id: artifact.id,
            variant: artifact.variant,
            operating_system: artifact.operating_system,
            architecture: artifact.architecture,
            format: artifact.format,
            digest: artifact.primary_blob_digest,
            size_bytes: artifact.primary_blob_size_bytes
          }))
        })
      }\n`)
    } else {
      const what = result.alreadyPublished ? "already published" : state
      const aliases = plan.aliases.length === 0 ? "" : `, aliases ${plan.aliases.join(", ")}`
      context.out(`${plan.image}:${plan.version} ${what} (${files.length} file(s), ${sent} part(s) sent${aliases})\n`)
    }
  })
