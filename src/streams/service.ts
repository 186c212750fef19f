import { Context, Duration, Effect, Layer, Metric } from "effect"
import { createHash } from "node:crypto"
import { latencyBoundaries } from "../platform/metrics.js"
import { type AliasTarget, type StreamRow, StreamsRepository } from "./repository.js"
import {
  incusArch,
  type IndexDocument,
  productName,
  type ProductsDocument,
  serialOf,
  type StreamProduct
} from "./schema.js"

/**
 * The Incus Simple Streams documents (spec/streams.md): rendered on every request from
 * the projection rows of published versions plus the live aliases, serialised like the
 * reference (sorted keys, two-space indent, trailing newline) and given a strong ETag.
 *
 * Beyond the reference, three rules keep the feed usable by a real Incus client:
 * - Variants are honoured: the variant is part of the product name, so two artifacts
 *   that differ only by variant are two products (never a collision or a 500).
 * - Bare aliases (`<image>/<version>`, `<image>/<alias>`) go to one product per image
 *   version and architecture — the `default` variant, or else the first variant in
 *   code-point order; the other variants get `<image>/<version>/<variant>` and
 *   `<image>/<alias>/<variant>`. Incus registers each alias once per architecture, so
 *   this makes every alias resolve to a well-defined image.
 * - Fingerprints are unique: Incus identifies an image by the combined hash and refuses
 *   a fingerprint that two images share (streams.md §2.8 trap 9). Products with the
 *   same combined hash (the same metadata and disk published twice) are merged into
 *   the earliest-published one, which carries all of their aliases.
 */

export interface RenderedDocument {
  readonly body: string
  /** Strong validator of `body`. */
  readonly etag: string
}

export class SimpleStreams extends Context.Tag("imgsrv/SimpleStreams")<SimpleStreams, {
  readonly index: Effect.Effect<RenderedDocument>
  readonly images: Effect.Effect<RenderedDocument>
}>() {}

export const streamsRenderDuration = Metric.histogram(
  "imgsrv_streams_render_duration_seconds",
  latencyBoundaries,
  "Time to render a Simple Streams document, by document."
)

// ---------------------------------------------------------------------------------
// Building products.
// ---------------------------------------------------------------------------------

interface Candidate {
  readonly name: string
  readonly row: StreamRow
  readonly arch: string
  readonly variant: string
  readonly publishedAt: Date
  aliases: Array<string>
}

const codePointCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/** Sorted, de-duplicated, keeping `first` in front. */
const aliasList = (
  first: string,
  rest: Iterable<string>
): Array<string> => [first, ...[...new Set(rest)].filter((a) => a !== first).sort(codePointCompare)]

/**
 * The products of the feed, keyed by product name, from the projection rows (already in
 * image, version, variant, architecture order) and the live aliases.
 */
export const buildProducts = (
  rows: ReadonlyArray<StreamRow>,
  aliases: ReadonlyArray<AliasTarget>
): Effect.Effect<Map<string, Candidate>> =>
  Effect.gen(function*() {
    const aliasesByVersion = new Map<string, Array<string>>()
    for (const a of aliases) {
      const list = aliasesByVersion.get(a.version_id) ?? []
      list.push(a.alias)
      aliasesByVersion.set(a.version_id, list)
    }

    const candidates = new Map<string, Candidate>()
    for (const row of rows) {
      const name = productName(row.image_name, row.version, row.architecture, row.variant)
      if (candidates.has(name)) {
        // Publishing refuses versions whose Incus images collide; should one exist anyway,
        // one product is dropped rather than failing the whole feed for every client.
        yield* Effect.logError("simple streams: duplicate product name; keeping the first").pipe(
          Effect.annotateLogs({ product: name, artifact_id: row.artifact_id })
        )
        continue
      }
      candidates.set(name, {
        name,
        row,
        arch: incusArch(row.architecture),
        variant: row.variant,
        publishedAt: row.published_at ?? row.created_at,
        aliases: []
      })
    }

    // Bare aliases: one product per (version, architecture).
    const byVersionArch = new Map<string, Array<Candidate>>()
    for (const c of candidates.values()) {
      const key = `${c.row.version_id}|${c.arch}`
      const group = byVersionArch.get(key) ?? []
      group.push(c)
      byVersionArch.set(key, group)
    }
    for (const group of byVersionArch.values()) {
      const primary = group.find((c) => c.variant === "default") ??
        [...group].sort((a, b) => codePointCompare(a.variant, b.variant))[0]!
      for (const c of group) {
        const image = c.row.image_name
        const suffix = c === primary ? "" : `/${c.variant}`
        const live = aliasesByVersion.get(c.row.version_id) ?? []
        c.aliases = aliasList(`${image}/${c.row.version}${suffix}`, live.map((alias) => `${image}/${alias}${suffix}`))
      }
    }

    // One product per fingerprint: the earliest published keeps it and gathers the aliases.
    const byFingerprint = new Map<string, Array<Candidate>>()
    for (const c of candidates.values()) {
      const group = byFingerprint.get(c.row.combined_disk_kvm_img_sha256) ?? []
      group.push(c)
      byFingerprint.set(c.row.combined_disk_kvm_img_sha256, group)
    }
    for (const group of byFingerprint.values()) {
      if (group.length < 2) continue
      group.sort((a, b) => a.publishedAt.getTime() - b.publishedAt.getTime() || codePointCompare(a.name, b.name))
      const [survivor, ...merged] = group as [Candidate, ...Array<Candidate>]
      survivor.aliases = aliasList(survivor.aliases[0]!, [
        ...survivor.aliases.slice(1),
        ...merged.flatMap((m) => m.aliases)
      ])
      for (const m of merged) candidates.delete(m.name)
    }
    return candidates
  })

const toProduct = (c: Candidate): StreamProduct => {
  const title = c.row.display_name !== null && c.row.display_name.trim() !== ""
    ? c.row.display_name
    : `${c.row.image_name} ${c.row.version}`
  return {
    aliases: c.aliases.join(","),
    arch: c.arch,
    os: c.row.operating_system,
    release: c.row.version,
    release_title: title,
    variant: c.variant,
    requirements: {},
    versions: {
      [serialOf(c.publishedAt)]: {
        items: {
          "incus.tar.xz": {
            ftype: "incus.tar.xz",
            path: c.row.metadata_path,
            size: c.row.metadata_size_bytes,
            sha256: c.row.metadata_sha256,
            "combined_disk-kvm-img_sha256": c.row.combined_disk_kvm_img_sha256
          },
          "disk-kvm.img": {
            ftype: "disk-kvm.img",
            path: c.row.disk_path,
            size: c.row.disk_size_bytes,
            sha256: c.row.disk_sha256
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// What the Incus client decodes (streams.md §1.5, §2.4): checked before serving, so a
// product that would break the client's decoder is dropped instead of taking the whole
// document (and every image on the remote) down with it.
// ---------------------------------------------------------------------------------

const HEX64 = /^[0-9a-f]{64}$/
const isSafeRelativePath = (path: string) =>
  path !== "" && !path.startsWith("/") && !path.includes("://") &&
  !path.split("/").some((segment) => segment === "" || segment === "." || segment === "..")

export const productProblems = (product: StreamProduct): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const versionKeys = Object.keys(product.versions)
  if (versionKeys.length !== 1 || !/^\d{8}/.test(versionKeys[0]!)) problems.push("version key is not YYYYMMDD...")
  for (const version of Object.values(product.versions)) {
    for (const [key, item] of Object.entries(version.items)) {
      if (item.ftype !== key) problems.push(`item ${key} has ftype ${item.ftype}`)
      if (!isSafeRelativePath(item.path)) problems.push(`item ${key} path is not a safe relative path`)
      if (!Number.isSafeInteger(item.size) || item.size < 0) problems.push(`item ${key} size is not an integer`)
      if (!HEX64.test(item.sha256)) problems.push(`item ${key} sha256 is not 64 hex characters`)
    }
    const combined = version.items["incus.tar.xz"]?.["combined_disk-kvm-img_sha256"]
    if (combined === undefined || !HEX64.test(combined)) problems.push("missing combined_disk-kvm-img_sha256")
  }
  if (product.aliases.includes(" ")) problems.push("aliases contain spaces")
  return problems
}

// ---------------------------------------------------------------------------------
// Serialisation: Go's json.MarshalIndent of maps (sorted keys, two spaces, HTML-safe
// escapes) plus a trailing newline, so documents are byte-identical to the reference's.
// ---------------------------------------------------------------------------------

const sortKeys = (_key: string, value: unknown): unknown => {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort(codePointCompare)) sorted[key] = (value as Record<string, unknown>)[key]
  return sorted
}

export const marshalDocument = (document: unknown): string =>
  `${JSON.stringify(document, sortKeys, 2)}\n`
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029")

const rendered = (body: string): RenderedDocument => ({
  body,
  etag: `"${createHash("sha256").update(body).digest("hex")}"`
})

export const SimpleStreamsLive = Layer.effect(
  SimpleStreams,
  Effect.gen(function*() {
    const repo = yield* StreamsRepository

    /** Products that pass the client-compatibility checks, by name. */
    const products = (withAliases: boolean) =>
      Effect.gen(function*() {
        const [rows, aliases] = yield* Effect.all(
          [repo.publishedRows, withAliases ? repo.aliases : Effect.succeed([])],
          { concurrency: 2 }
        )
        const built = yield* buildProducts(rows, aliases)
        const out = new Map<string, StreamProduct>()
        for (const candidate of built.values()) {
          const product = toProduct(candidate)
          const problems = productProblems(product)
          if (problems.length > 0) {
            yield* Effect.logError("simple streams: product dropped, an Incus client could not use it").pipe(
              Effect.annotateLogs({ product: candidate.name, problems: problems.join("; ") })
            )
            continue
          }
          out.set(candidate.name, product)
        }
        return out
      }).pipe(Effect.orDie)

    const timed = (document: "index" | "images") => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Metric.trackDurationWith(Metric.tagged(streamsRenderDuration, "document", document), Duration.toSeconds),
        Effect.withSpan(`streams.render.${document}`)
      )

    return SimpleStreams.of({
      index: Effect.gen(function*() {
        // The index needs names only; aliases do not change product names.
        const names = [...(yield* products(false)).keys()].sort(codePointCompare)
        const document: IndexDocument = {
          format: "index:1.0",
          index: {
            images: {
              datatype: "image-downloads",
              format: "products:1.0",
              path: "streams/v1/images.json",
              // Omitted when empty (Go omitempty); Incus then never fetches images.json.
              ...(names.length > 0 ? { products: names } : {})
            }
          }
        }
        return rendered(marshalDocument(document))
      }).pipe(timed("index")),

      images: Effect.gen(function*() {
        const document: ProductsDocument = {
          content_id: "images",
          datatype: "image-downloads",
          format: "products:1.0",
          products: Object.fromEntries(yield* products(true))
        }
        return rendered(marshalDocument(document))
      }).pipe(timed("images"))
    })
  })
)
