/**
 * Names and shapes of the Incus Simple Streams documents (spec/streams.md §1).
 * Pure functions shared by the renderer and by publishing, which refuses a version
 * whose Incus images would collide on a product name.
 */

/** Incus architecture names for the two common non-Incus spellings; anything else unchanged. */
export const incusArch = (architecture: string): string =>
  architecture === "x86_64" ? "amd64" : architecture === "aarch64" ? "arm64" : architecture

/** `<image>:<version>:<incus arch>:<variant>` — the product key and index entry. */
export const productName = (image: string, version: string, architecture: string, variant: string): string =>
  `${image}:${version}:${incusArch(architecture)}:${variant}`

/** Serial (product version key): `published_at` in UTC as `YYYYMMDD_HH:MM`. */
export const serialOf = (date: Date): string => {
  const pad = (n: number) => String(n).padStart(2, "0")
  return `${date.getUTCFullYear()}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}_` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`
}

/**
 * Go's `url.PathEscape` for one path segment: unreserved characters and `$&+:=@` stay,
 * everything else is percent-encoded byte by byte. (Image names and versions only use
 * `[A-Za-z0-9._+:-]`, so in practice nothing is escaped; `:` and `+` must stay literal.)
 */
export const pathEscape = (segment: string): string =>
  Array.from(new TextEncoder().encode(segment), (byte) => {
    const c = String.fromCharCode(byte)
    return /^[A-Za-z0-9\-._~$&+:=@]$/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
  }).join("")

const artifactBase = (image: string, version: string, artifactId: string) =>
  `v1/images/${pathEscape(image)}/versions/${pathEscape(version)}/artifacts/${pathEscape(artifactId)}`

/**
 * Relative path of an artifact's bytes (the `disk-kvm.img` or `squashfs` item). It ends in
 * the file name: `lxc image export REMOTE:x DIR/` names each file after its last segment.
 */
export const rootPath = (image: string, version: string, artifactId: string, fileName: string): string =>
  `${artifactBase(image, version, artifactId)}/download/${pathEscape(fileName)}`

/** Relative path of an attachment's bytes (the metadata items), ending in its file name. */
export const metadataPath = (
  image: string,
  version: string,
  artifactId: string,
  attachmentId: string,
  fileName: string
): string =>
  `${artifactBase(image, version, artifactId)}/attachments/${pathEscape(attachmentId)}/download/${pathEscape(fileName)}`

/**
 * The Incus root file of an image: a VM disk (`disk-kvm.img`, Incus image type
 * `virtual-machine`) or a container's root filesystem (`squashfs`, type `container`).
 */
export type RootFtype = "disk-kvm.img" | "squashfs"

/** The artifact formats that are Incus root files (with an `incus.tar.xz` attachment); others are not. */
export const rootFtypeOf = (format: string): RootFtype | undefined =>
  format === "qcow2" ? "disk-kvm.img" : format === "squashfs" ? "squashfs" : undefined

// ---------------------------------------------------------------------------------
// Documents (types only: they are rendered with sorted keys, see service.ts).
// ---------------------------------------------------------------------------------

/** The metadata tarball: Incus reads `incus.tar.xz`, LXD only `lxd.tar.xz` (same file, served as both). */
export type MetadataFtype = "incus.tar.xz" | "lxd.tar.xz"

export interface StreamItem {
  readonly ftype: MetadataFtype | RootFtype
  readonly path: string
  readonly size: number
  readonly sha256: string
  /** On a metadata item: the fingerprint of the image it makes with a `disk-kvm.img` item. */
  readonly "combined_disk-kvm-img_sha256"?: string
  /** On a metadata item: the fingerprint of the image it makes with a `squashfs` item. */
  readonly combined_squashfs_sha256?: string
  /**
   * Legacy combined hash, set to the container fingerprint: LXD 2.x took it as the
   * fingerprint of any root; Incus and LXD 5 read it only for a `root.tar.xz` root.
   */
  readonly combined_sha256?: string
}

export interface StreamProduct {
  readonly aliases: string
  readonly arch: string
  readonly os: string
  readonly release: string
  readonly release_title: string
  readonly variant: string
  readonly requirements: Record<string, string>
  readonly versions: Record<string, { readonly items: Record<string, StreamItem> }>
}

export interface ProductsDocument {
  readonly content_id: "images"
  readonly datatype: "image-downloads"
  readonly format: "products:1.0"
  readonly products: Record<string, StreamProduct>
}

export interface IndexDocument {
  readonly format: "index:1.0"
  readonly index: {
    readonly images: {
      readonly datatype: "image-downloads"
      readonly format: "products:1.0"
      readonly path: "streams/v1/images.json"
      readonly products?: ReadonlyArray<string>
    }
  }
}
