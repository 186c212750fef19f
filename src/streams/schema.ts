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

/** Relative download path of an artifact (the `disk-kvm.img` item). */
export const diskPath = (image: string, version: string, artifactId: string): string =>
  `v1/images/${pathEscape(image)}/versions/${pathEscape(version)}/artifacts/${pathEscape(artifactId)}/download`

/** Relative download path of an attachment (the `incus.tar.xz` item). */
export const metadataPath = (image: string, version: string, artifactId: string, attachmentId: string): string =>
  `v1/images/${pathEscape(image)}/versions/${pathEscape(version)}/artifacts/${pathEscape(artifactId)}` +
  `/attachments/${pathEscape(attachmentId)}/download`

// ---------------------------------------------------------------------------------
// Documents (types only: they are rendered with sorted keys, see service.ts).
// ---------------------------------------------------------------------------------

export interface StreamItem {
  readonly ftype: "incus.tar.xz" | "disk-kvm.img"
  readonly path: string
  readonly size: number
  readonly sha256: string
  readonly "combined_disk-kvm-img_sha256"?: string
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
