import { Duration, Effect, Metric } from "effect"
import { createHash } from "node:crypto"
import { latencyBoundaries } from "../platform/observability/metrics.js"
import type { AliasTarget, StreamRow } from "./repository.js"
import {
  incusArch,
  type IndexDocument,
  type MetadataFtype,
  productName,
  type ProductsDocument,
  type RootFtype,
  serialOf,
  type StreamItem,
  type StreamProduct
} from "./schema.js"

/**
 * The Incus Simple Streams documents (spec/streams.md): rendered (cache.ts keeps them) from
 * the projection rows of published versions plus the live aliases, serialised like the
 * reference (sorted keys, two-space indent, trailing newline) and given a strong ETag.
 *
 * A product is an image version for one architecture and variant; it offers up to two
 * Incus images (builds), a container (`squashfs` root) and a VM (`disk-kvm.img` root),
 * under the same aliases — as images.linuxcontainers.org does. Each build's metadata is
 * served twice, as `incus.tar.xz` for Incus and as an identical `lxd.tar.xz` twin for LXD
 * (which ignores `incus.tar.xz`; Incus ignores `lxd.tar.xz`), carrying the build's
 * fingerprint in the combined-hash field its root type is read from.
 *
 * Beyond the reference, three rules keep the feed usable by a real Incus client:
 * - Variants are honoured: the variant is part of the product name, so two artifacts
 *   that differ only by variant are two products (never a collision or a 500).
 * - Bare aliases (`<image>/<version>`, `<image>/<alias>`) go to one product per image
 *   version and architecture — the `default` variant, or else the first variant in
 *   code-point order; the other variants get `<image>/<version>/<variant>` and
 *   `<image>/<alias>/<variant>`. Incus registers each alias once per type and
 *   architecture, so this makes every alias resolve to a well-defined image.
 * - Fingerprints are unique: Incus identifies an image by the combined hash and refuses
 *   a fingerprint that two images share (streams.md §2.8 trap 9). Of the builds with the
 *   same combined hash (the same metadata and root file published twice), the
 *   earliest-published one stays; a product left with no build disappears and its
 *   aliases go to the product of the build that stayed.
 */

export interface RenderedDocument {
  readonly body: Uint8Array
  /** Strong validator of `body`: its SHA-256, quoted. */
  readonly etag: string
}

export const streamsRenderDuration = Metric.histogram(
  "imgsrv_streams_render_duration_seconds",
  latencyBoundaries,
  "Time to render the Simple Streams documents (both, from one snapshot of the catalog)."
)

// ---------------------------------------------------------------------------------
// Building products.
// ---------------------------------------------------------------------------------

/** A product being built: its builds (one Incus image each, at most one per root ftype). */
interface Candidate {
  readonly name: string
  /** The first build's row: image, version, OS and dates are the same for every build. */
  readonly row: StreamRow
  readonly arch: string
  readonly variant: string
  readonly publishedAt: Date
  readonly builds: Map<RootFtype, StreamRow>
  aliases: Array<string>
}

const codePointCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/** Sorted, de-duplicated, keeping `first` in front. */
const aliasList = (
  first: string,
  rest: Iterable<string>
): Array<string> => [first, ...[...new Set(rest)].filter((a) => a !== first).sort(codePointCompare)]

const groupBy = <A>(items: Iterable<A>, key: (a: A) => string): Map<string, Array<A>> => {
  const groups = new Map<string, Array<A>>()
  for (const item of items) {
    const k = key(item)
    const group = groups.get(k)
    if (group === undefined) groups.set(k, [item])
    else group.push(item)
  }
  return groups
}

/**
 * The products of the feed, keyed by product name, from the projection rows (already in
 * image, version, variant, architecture, root ftype order) and the live aliases.
 */
export const buildProducts = (
  rows: ReadonlyArray<StreamRow>,
  aliases: ReadonlyArray<AliasTarget>
): Effect.Effect<Map<string, Candidate>> =>
  Effect.gen(function*() {
    const candidates = new Map<string, Candidate>()
    for (const row of rows) {
      const name = productName(row.image_name, row.version, row.architecture, row.variant)
      const existing = candidates.get(name)
      // Publishing refuses versions whose Incus images collide (two builds of one type, or
      // a container and a VM that disagree on the OS); should one exist anyway, one build
      // is dropped rather than failing the whole feed for every client.
      if (existing !== undefined) {
        const conflict = existing.builds.has(row.root_ftype)
          ? `a second ${row.root_ftype} build`
          : existing.row.operating_system !== row.operating_system
          ? `operating system ${row.operating_system}, not ${existing.row.operating_system}`
          : undefined
        if (conflict !== undefined) {
          yield* Effect.logError("simple streams: conflicting build in a product; keeping the first").pipe(
            Effect.annotateLogs({ product: name, artifact_id: row.artifact_id, conflict })
          )
          continue
        }
        existing.builds.set(row.root_ftype, row)
        continue
      }
      candidates.set(name, {
        name,
        row,
        arch: incusArch(row.architecture),
        variant: row.variant,
        publishedAt: row.published_at ?? row.created_at,
        builds: new Map([[row.root_ftype, row]]),
        aliases: []
      })
    }

    // Bare aliases: one product per (version, architecture).
    const aliasesByVersion = groupBy(aliases, (a) => a.version_id)
    for (const group of groupBy(candidates.values(), (c) => `${c.row.version_id}|${c.arch}`).values()) {
      const primary = group.find((c) => c.variant === "default") ??
        [...group].sort((a, b) => codePointCompare(a.variant, b.variant))[0]!
      for (const c of group) {
        const image = c.row.image_name
        const suffix = c === primary ? "" : `/${c.variant}`
        const live = aliasesByVersion.get(c.row.version_id) ?? []
        c.aliases = aliasList(
          `${image}/${c.row.version}${suffix}`,
          live.map(({ alias }) => `${image}/${alias}${suffix}`)
        )
      }
    }

    // One build per fingerprint: the earliest published keeps it.
    const builds = [...candidates.values()].flatMap((c) => [...c.builds.values()].map((row) => ({ c, row })))
    for (const group of groupBy(builds, (b) => b.row.combined_sha256).values()) {
      if (group.length < 2) continue
      group.sort((a, b) =>
        a.c.publishedAt.getTime() - b.c.publishedAt.getTime() || codePointCompare(a.c.name, b.c.name) ||
        codePointCompare(a.row.root_ftype, b.row.root_ftype)
      )
      const [survivor, ...merged] = group as [(typeof group)[number], ...typeof group]
      for (const m of merged) {
        m.c.builds.delete(m.row.root_ftype)
        // A product left without builds lends its aliases to the survivor's. One that
        // keeps another build keeps them: moving them would also point that build's
        // type at the survivor's product.
        if (m.c.builds.size > 0 || m.c === survivor.c) continue
        survivor.c.aliases = aliasList(survivor.c.aliases[0]!, [
          ...survivor.c.aliases.slice(1),
          ...m.c.aliases
        ])
        candidates.delete(m.c.name)
      }
    }
    return candidates
  })

/** The combined-hash fields a metadata item carries for its root ftype (what Incus and LXD read). */
const fingerprintFields = (row: StreamRow): Partial<StreamItem> =>
  row.root_ftype === "disk-kvm.img"
    ? { "combined_disk-kvm-img_sha256": row.combined_sha256 }
    : { combined_squashfs_sha256: row.combined_sha256, combined_sha256: row.combined_sha256 }

/**
 * The items of one build: the metadata (as `incus.tar.xz` and `lxd.tar.xz`) and the root.
 * Item keys are the ftypes; in a product with two builds the metadata keys also name the
 * root they belong to (`incus.tar.xz@squashfs`), since both builds have metadata.
 */
const buildItems = (row: StreamRow, shared: boolean): Record<string, StreamItem> => {
  const metadata = (ftype: MetadataFtype): StreamItem => ({
    ftype,
    path: row.metadata_path,
    size: row.metadata_size_bytes,
    sha256: row.metadata_sha256,
    ...fingerprintFields(row)
  })
  const key = (ftype: MetadataFtype) => shared ? `${ftype}@${row.root_ftype}` : ftype
  return {
    [key("incus.tar.xz")]: metadata("incus.tar.xz"),
    [key("lxd.tar.xz")]: metadata("lxd.tar.xz"),
    [row.root_ftype]: { ftype: row.root_ftype, path: row.root_path, size: row.root_size_bytes, sha256: row.root_sha256 }
  }
}

const toProduct = (c: Candidate): StreamProduct => {
  const title = c.row.display_name !== null && c.row.display_name.trim() !== ""
    ? c.row.display_name
    : `${c.row.image_name} ${c.row.version}`
  const builds = [...c.builds.values()]
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
        items: Object.assign({}, ...builds.map((row) => buildItems(row, builds.length > 1)))
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

const METADATA_FTYPES: ReadonlyArray<string> = ["incus.tar.xz", "lxd.tar.xz"] satisfies Array<MetadataFtype>
const ROOT_FTYPES: ReadonlyArray<string> = ["disk-kvm.img", "squashfs"] satisfies Array<RootFtype>

export const productProblems = (product: StreamProduct): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const versionKeys = Object.keys(product.versions)
  if (versionKeys.length !== 1 || !/^\d{8}/.test(versionKeys[0]!)) problems.push("version key is not YYYYMMDD...")
  for (const version of Object.values(product.versions)) {
    const items = Object.entries(version.items)
    for (const [key, item] of items) {
      if (!METADATA_FTYPES.includes(item.ftype) && !ROOT_FTYPES.includes(item.ftype)) {
        problems.push(`item ${key} has ftype ${item.ftype}`)
      }
      if (!isSafeRelativePath(item.path)) problems.push(`item ${key} path is not a safe relative path`)
      if (!Number.isSafeInteger(item.size) || item.size < 0) problems.push(`item ${key} size is not an integer`)
      if (!HEX64.test(item.sha256)) problems.push(`item ${key} sha256 is not 64 hex characters`)
    }
    // Each root needs metadata of both ftypes carrying its fingerprint, or that client skips the image.
    for (const [, root] of items.filter(([, item]) => ROOT_FTYPES.includes(item.ftype))) {
      const field = root.ftype === "disk-kvm.img" ? "combined_disk-kvm-img_sha256" : "combined_squashfs_sha256"
      for (const ftype of METADATA_FTYPES) {
        if (!items.some(([, item]) => item.ftype === ftype && HEX64.test(item[field] ?? ""))) {
          problems.push(`no ${ftype} item with ${field} for the ${root.ftype} item`)
        }
      }
    }
    if (!items.some(([, item]) => ROOT_FTYPES.includes(item.ftype))) problems.push("no disk-kvm.img or squashfs item")
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

/** A document as it is served: its bytes and their strong validator. */
export const rendered = (text: string): RenderedDocument => {
  const body = Buffer.from(text, "utf8")
  return { body, etag: `"${createHash("sha256").update(body).digest("hex")}"` }
}

/** Both documents, rendered from one snapshot of the rows. */
export interface RenderedDocuments {
  readonly index: RenderedDocument
  readonly images: RenderedDocument
}

/**
 * Renders both documents from the projection rows and aliases of one snapshot: the
 * products that pass the client-compatibility checks, their names for the index.
 */
export const renderDocuments = (
  rows: ReadonlyArray<StreamRow>,
  aliases: ReadonlyArray<AliasTarget>
): Effect.Effect<RenderedDocuments> =>
  Effect.gen(function*() {
    const built = yield* buildProducts(rows, aliases)
    const products = new Map<string, StreamProduct>()
    for (const candidate of built.values()) {
      const product = toProduct(candidate)
      const problems = productProblems(product)
      if (problems.length > 0) {
        yield* Effect.logError("simple streams: product dropped, an Incus client could not use it").pipe(
          Effect.annotateLogs({ product: candidate.name, problems: problems.join("; ") })
        )
        continue
      }
      products.set(candidate.name, product)
    }
    // Aliases never change product names, so the index lists the same products.
    const names = [...products.keys()].sort(codePointCompare)
    const index: IndexDocument = {
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
    const images: ProductsDocument = {
      content_id: "images",
      datatype: "image-downloads",
      format: "products:1.0",
      products: Object.fromEntries(products)
    }
    return { index: rendered(marshalDocument(index)), images: rendered(marshalDocument(images)) }
  }).pipe(
    Metric.trackDurationWith(streamsRenderDuration, Duration.toSeconds),
    Effect.withSpan("streams.render")
  )
