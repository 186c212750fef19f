import { Effect, Schema } from "effect"
import { Sha256Digest } from "../contract/digest.js"
import { MediaType } from "../contract/media-type.js"
import { optionalTimestamp, parsedTimestamp, present } from "../contract/optional-members.js"
import { nextCursorField, PgTimestampText } from "../contract/pagination.js"
import { decodeParam, nonBlank, strictBody, TEXT_LIMITS, UuidId, UuidString } from "../contract/params.js"
import { formatTimestamp, TimestampString } from "../contract/timestamp.js"

/**
 * Wire and row shapes of the catalog: images, versions, artifacts, attachments,
 * aliases and manifests (api.md §1.7, §2.1, §2.5–2.7, §2.10).
 */

// ---------------------------------------------------------------------------------
// Names and tokens (api.md §1.7). Each message names the field and its pattern.
// ---------------------------------------------------------------------------------

const patterned = (field: string, pattern: RegExp) =>
  Schema.String.pipe(Schema.pattern(pattern, { message: () => `${field} must match ${pattern.source}` }))

export const IMAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/
export const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+:-]{0,127}$/
export const ALIAS = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
export const TOKEN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/

export const ImageName = patterned("image name", IMAGE_NAME).annotations({ identifier: "ImageName" })
export const VersionString = patterned("version", VERSION).annotations({ identifier: "Version" })
export const AliasName = patterned("alias", ALIAS).annotations({ identifier: "Alias" })
/** `ref` of the refs endpoint: a version string or an alias, validated like a version. */
export const RefString = patterned("ref", VERSION)

const tokenOf = (field: string) => patterned(field, TOKEN)

/** Ids of the catalog's entities; publishing, retention and streams cite them too. */
export const ImageId = UuidId("ImageId", "image id")
export type ImageId = typeof ImageId.Type
export const VersionId = UuidId("VersionId", "version id")
export type VersionId = typeof VersionId.Type
export const ArtifactId = UuidId("ArtifactId", "artifact id")
export type ArtifactId = typeof ArtifactId.Type
export const AttachmentId = UuidId("AttachmentId", "attachment id")
export type AttachmentId = typeof AttachmentId.Type

/** int64 ≥ 0 that survives a JSON round trip exactly (imgsrv never needs more than 2^53 − 1). */
const sizeBytes = (field: string) =>
  Schema.Number.pipe(
    Schema.filter((n) => Number.isSafeInteger(n) && n >= 0, {
      message: () => `${field} must be an integer between 0 and ${Number.MAX_SAFE_INTEGER}`
    })
  )

export const ARTIFACT_FORMATS = ["raw", "raw.gz", "qcow2", "squashfs"] as const

export const ArtifactFormat = Schema.Literal(...ARTIFACT_FORMATS).annotations({
  identifier: "ArtifactFormat",
  // `override`: otherwise each member reports its own "Expected …", and the 400 shows only the first.
  message: () => ({ message: `format must be one of ${ARTIFACT_FORMATS.join(", ")}`, override: true })
})
export type ArtifactFormat = typeof ArtifactFormat.Type

/**
 * The file name an artifact's bytes are downloaded as (the last segment of its Simple
 * Streams item path, which `lxc image export` names the file after). An attachment's is
 * its own name.
 */
export const ARTIFACT_FILE_NAMES: Readonly<Record<ArtifactFormat, string>> = {
  "raw": "disk.raw",
  "raw.gz": "disk.raw.gz",
  "qcow2": "disk.qcow2",
  "squashfs": "rootfs.squashfs"
}

export const VersionState = Schema.Literal("draft", "publishing", "published")
export type VersionState = typeof VersionState.Type

/** The attachment name that makes a qcow2 or squashfs artifact an Incus image (its metadata tarball). */
export const INCUS_METADATA_ATTACHMENT = "incus.tar.xz"

// ---------------------------------------------------------------------------------
// Request bodies: strict (unknown members → 400).
// ---------------------------------------------------------------------------------

export const CreateImageRequest = Schema.Struct({
  name: ImageName,
  display_name: Schema.optional(nonBlank("display_name", TEXT_LIMITS.short)),
  description: Schema.optional(nonBlank("description", TEXT_LIMITS.long))
}).annotations({ ...strictBody, identifier: "CreateImageRequest" })
export type CreateImageRequest = typeof CreateImageRequest.Type

export const CreateVersionRequest = Schema.Struct({
  version: VersionString
}).annotations({ ...strictBody, identifier: "CreateVersionRequest" })

export const CreateArtifactRequest = Schema.Struct({
  // Absent or "" means "default" (normalised by the service).
  variant: Schema.optional(Schema.Union(Schema.Literal(""), tokenOf("variant"))),
  operating_system: tokenOf("operating_system"),
  architecture: tokenOf("architecture"),
  format: ArtifactFormat,
  primary_blob_digest: Sha256Digest,
  primary_blob_size_bytes: sizeBytes("primary_blob_size_bytes"),
  primary_media_type: MediaType("primary_media_type")
}).annotations({ ...strictBody, identifier: "CreateArtifactRequest" })
export type CreateArtifactRequest = typeof CreateArtifactRequest.Type

export const CreateAttachmentRequest = Schema.Struct({
  name: tokenOf("name"),
  media_type: MediaType("media_type"),
  blob_digest: Sha256Digest,
  blob_size_bytes: sizeBytes("blob_size_bytes")
}).annotations({ ...strictBody, identifier: "CreateAttachmentRequest" })
export type CreateAttachmentRequest = typeof CreateAttachmentRequest.Type

export const PutAliasRequest = Schema.Struct({
  version: VersionString
}).annotations({ ...strictBody, identifier: "PutAliasRequest" })

/** Why a version is withdrawn; shown to everyone who reads it (docs/lifecycle.md). */
export const YankRequest = Schema.Struct({
  reason: nonBlank("reason", TEXT_LIMITS.long)
}).annotations({ ...strictBody, identifier: "YankRequest" })
export type YankRequest = typeof YankRequest.Type

// ---------------------------------------------------------------------------------
// Responses. Timestamps are RFC 3339 UTC strings (see `formatTimestamp`); optional
// members are omitted when unset, arrays are always present.
// ---------------------------------------------------------------------------------

export const Image = Schema.Struct({
  id: UuidString,
  name: Schema.String,
  display_name: Schema.optional(Schema.String),
  description: Schema.optional(Schema.String),
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "Image" })
export type Image = typeof Image.Type

export const ImageVersion = Schema.Struct({
  id: UuidString,
  image_id: UuidString,
  version: Schema.String,
  state: VersionState,
  published_at: Schema.optional(TimestampString),
  /** Present (and true) only on a yanked version, with `yanked_at` and `yank_reason`. */
  yanked: Schema.optional(Schema.Literal(true)),
  yanked_at: Schema.optional(TimestampString),
  yank_reason: Schema.optional(Schema.String),
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "ImageVersion" })
export type ImageVersion = typeof ImageVersion.Type

export const Artifact = Schema.Struct({
  id: UuidString,
  version_id: UuidString,
  variant: Schema.String,
  operating_system: Schema.String,
  architecture: Schema.String,
  format: ArtifactFormat,
  primary_blob_digest: Schema.String,
  primary_blob_size_bytes: Schema.Number,
  primary_media_type: Schema.String,
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "Artifact" })
export type Artifact = typeof Artifact.Type

export const Attachment = Schema.Struct({
  id: UuidString,
  artifact_id: UuidString,
  name: Schema.String,
  media_type: Schema.String,
  blob_digest: Schema.String,
  blob_size_bytes: Schema.Number,
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "Attachment" })
export type Attachment = typeof Attachment.Type

export const Alias = Schema.Struct({
  id: UuidString,
  image_id: UuidString,
  alias: Schema.String,
  version_id: UuidString,
  version: Schema.String,
  created_at: TimestampString,
  updated_at: TimestampString
}).annotations({ identifier: "Alias" })
export type Alias = typeof Alias.Type

export const ManifestArtifact = Schema.Struct({
  artifact: Artifact,
  attachments: Schema.Array(Attachment)
}).annotations({ identifier: "ManifestArtifact" })

export const Manifest = Schema.Struct({
  image: Image,
  version: ImageVersion,
  artifacts: Schema.Array(ManifestArtifact)
}).annotations({ identifier: "Manifest" })
export type Manifest = typeof Manifest.Type

export const ImageList = Schema.Struct({ images: Schema.Array(Image), next_cursor: nextCursorField }).annotations({
  identifier: "ImageList"
})

/** Where a page of the image list ends (platform/http/pagination.ts). */
export const ImageListKey = Schema.Struct({ name: Schema.String, id: Schema.UUID })
export const VersionList = Schema.Struct({ versions: Schema.Array(ImageVersion), next_cursor: nextCursorField })
  .annotations({
    identifier: "VersionList"
  })
export const ArtifactList = Schema.Struct({ artifacts: Schema.Array(Artifact), next_cursor: nextCursorField })
  .annotations({
    identifier: "ArtifactList"
  })
export const AliasList = Schema.Struct({ aliases: Schema.Array(Alias), next_cursor: nextCursorField }).annotations({
  identifier: "AliasList"
})

/** Where a page of an alias list ends (platform/http/pagination.ts). */
export const AliasListKey = Schema.Struct({ alias: Schema.String, id: Schema.UUID })
/** Sort key of the version list (newest first): `created_at` as PostgreSQL text, microseconds kept. */
export const VersionListKey = Schema.Struct({ created_at: PgTimestampText, version: Schema.String, id: Schema.UUID })
/** Sort key of the artifact list: the manifest order. */
export const ArtifactListKey = Schema.Struct({
  variant: Schema.String,
  operating_system: Schema.String,
  architecture: Schema.String,
  format: Schema.String,
  id: Schema.UUID
})
export type ImageList = typeof ImageList.Type
export type VersionList = typeof VersionList.Type
export type ArtifactList = typeof ArtifactList.Type
export type AliasList = typeof AliasList.Type
export type VersionListKey = typeof VersionListKey.Type
export type ArtifactListKey = typeof ArtifactListKey.Type

// ---------------------------------------------------------------------------------
// Rows, as the repository decodes them (`SqlSchema`): the domain type of each entity. A
// row that does not match its schema is a defect (the code and the database disagree).
// ---------------------------------------------------------------------------------

const Timestamp = Schema.DateFromSelf
const NullableTimestamp = Schema.NullOr(Schema.DateFromSelf)

export const ImageRow = Schema.Struct({
  id: ImageId,
  name: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  description: Schema.NullOr(Schema.String),
  created_at: Timestamp,
  updated_at: Timestamp
})
export type ImageRow = typeof ImageRow.Type

export const VersionRow = Schema.Struct({
  id: VersionId,
  image_id: ImageId,
  version: Schema.String,
  state: VersionState,
  published_at: NullableTimestamp,
  /** Set while a published version is yanked (with `yank_reason`). */
  yanked_at: NullableTimestamp,
  yank_reason: Schema.NullOr(Schema.String),
  created_at: Timestamp,
  updated_at: Timestamp
})
export type VersionRow = typeof VersionRow.Type

/** A listed version with its `created_at` as PostgreSQL text (microseconds), the cursor's sort key. */
export const VersionPageRow = Schema.Struct({ ...VersionRow.fields, created_at_key: Schema.String })
export type VersionPageRow = typeof VersionPageRow.Type

export const ArtifactRow = Schema.Struct({
  id: ArtifactId,
  version_id: VersionId,
  variant: Schema.String,
  operating_system: Schema.String,
  architecture: Schema.String,
  format: ArtifactFormat,
  primary_blob_digest: Sha256Digest,
  primary_blob_size_bytes: Schema.Number,
  primary_media_type: Schema.String,
  created_at: Timestamp,
  updated_at: Timestamp
})
export type ArtifactRow = typeof ArtifactRow.Type

export const AttachmentRow = Schema.Struct({
  id: AttachmentId,
  artifact_id: ArtifactId,
  name: Schema.String,
  media_type: Schema.String,
  blob_digest: Sha256Digest,
  blob_size_bytes: Schema.Number,
  created_at: Timestamp,
  updated_at: Timestamp
})
export type AttachmentRow = typeof AttachmentRow.Type

export const AliasRow = Schema.Struct({
  id: Schema.String,
  image_id: ImageId,
  alias: Schema.String,
  version_id: VersionId,
  /** Joined from the version it points at. */
  version: Schema.String,
  created_at: Timestamp,
  updated_at: Timestamp
})
export type AliasRow = typeof AliasRow.Type

/** A version manifest as rows: the image, the version, artifacts with their attachments. */
export const ManifestRows = Schema.Struct({
  image: ImageRow,
  version: VersionRow,
  artifacts: Schema.Array(Schema.Struct({ artifact: ArtifactRow, attachments: Schema.Array(AttachmentRow) }))
})
export type ManifestRows = typeof ManifestRows.Type

/** What a download needs to know about a published artifact or attachment. */
export interface DownloadTarget {
  readonly digest: Sha256Digest
  readonly sizeBytes: number
  readonly mediaType: string
  /** The declaration's `updated_at` (Last-Modified, truncated to seconds by the server). */
  readonly updatedAt: Date
  /** The file name it is served under (`…/download/<fileName>`). */
  readonly fileName: string
}

// ---------------------------------------------------------------------------------
// Encoding: the wire shapes declared as transformations of the domain types.
// ---------------------------------------------------------------------------------

/** The wire image of an image row (`display_name`, `description` absent when null). */
export const ImageFromRow = Schema.transform(Schema.typeSchema(ImageRow), Image, {
  strict: true,
  decode: (row) => ({
    id: row.id,
    name: row.name,
    ...present("display_name", row.display_name),
    ...present("description", row.description),
    created_at: formatTimestamp(row.created_at),
    updated_at: formatTimestamp(row.updated_at)
  }),
  encode: (wire) => ({
    id: ImageId.make(wire.id),
    name: wire.name,
    display_name: wire.display_name ?? null,
    description: wire.description ?? null,
    created_at: new Date(wire.created_at),
    updated_at: new Date(wire.updated_at)
  })
})

/**
 * The wire version of a version row: `published_at` absent until published; a yanked one
 * carries `yanked: true`, `yanked_at` and `yank_reason`, the others none of the three.
 */
export const ImageVersionFromRow = Schema.transform(Schema.typeSchema(VersionRow), ImageVersion, {
  strict: true,
  decode: (row) => ({
    id: row.id,
    image_id: row.image_id,
    version: row.version,
    state: row.state,
    ...optionalTimestamp("published_at", row.published_at),
    ...(row.yanked_at === null ? {} : {
      yanked: true as const,
      yanked_at: formatTimestamp(row.yanked_at),
      yank_reason: row.yank_reason ?? ""
    }),
    created_at: formatTimestamp(row.created_at),
    updated_at: formatTimestamp(row.updated_at)
  }),
  encode: (wire) => ({
    id: VersionId.make(wire.id),
    image_id: ImageId.make(wire.image_id),
    version: wire.version,
    state: wire.state,
    published_at: parsedTimestamp(wire.published_at),
    yanked_at: parsedTimestamp(wire.yanked_at),
    yank_reason: wire.yank_reason ?? null,
    created_at: new Date(wire.created_at),
    updated_at: new Date(wire.updated_at)
  })
})

interface Stamped {
  readonly created_at: Date
  readonly updated_at: Date
}
interface WireStamped {
  readonly created_at: string
  readonly updated_at: string
}

/**
 * A wire shape that is its row with `created_at` and `updated_at` as wire timestamps (the
 * wire schema checks the result); `rowOf` restores the row's branded members from the wire.
 */
const stampedFromRow = <Row extends Stamped, Wire extends WireStamped>(
  row: Schema.Schema<Row>,
  wire: Schema.Schema<Wire>,
  rowOf: (wire: Omit<Wire, keyof WireStamped>) => Omit<Row, keyof Stamped>
) =>
  Schema.transform(row, wire, {
    strict: true,
    // TypeScript cannot relate a generic row's rest to the wire type; the wire schema checks it.
    decode: ({ created_at, updated_at, ...rest }) =>
      ({
        ...rest,
        created_at: formatTimestamp(created_at),
        updated_at: formatTimestamp(updated_at)
      }) as unknown as Wire,
    encode: ({ created_at, updated_at, ...rest }) =>
      ({ ...rowOf(rest), created_at: new Date(created_at), updated_at: new Date(updated_at) }) as Row
  })

export const ArtifactFromRow = stampedFromRow(Schema.typeSchema(ArtifactRow), Artifact, (wire) => ({
  ...wire,
  id: ArtifactId.make(wire.id),
  version_id: VersionId.make(wire.version_id),
  primary_blob_digest: Sha256Digest.make(wire.primary_blob_digest)
}))

export const AttachmentFromRow = stampedFromRow(Schema.typeSchema(AttachmentRow), Attachment, (wire) => ({
  ...wire,
  id: AttachmentId.make(wire.id),
  artifact_id: ArtifactId.make(wire.artifact_id),
  blob_digest: Sha256Digest.make(wire.blob_digest)
}))

export const AliasFromRow = stampedFromRow(Schema.typeSchema(AliasRow), Alias, (wire) => ({
  ...wire,
  image_id: ImageId.make(wire.image_id),
  version_id: VersionId.make(wire.version_id)
}))

/** The wire manifest of its rows: each part encoded by its own transformation. */
export const ManifestFromRows = Schema.Struct({
  image: ImageFromRow,
  version: ImageVersionFromRow,
  artifacts: Schema.Array(Schema.Struct({ artifact: ArtifactFromRow, attachments: Schema.Array(AttachmentFromRow) }))
})

export const imageToWire: (row: ImageRow) => Image = Schema.decodeSync(ImageFromRow)
export const versionToWire: (row: VersionRow) => ImageVersion = Schema.decodeSync(ImageVersionFromRow)
export const artifactToWire: (row: ArtifactRow) => Artifact = Schema.decodeSync(ArtifactFromRow)
export const attachmentToWire: (row: AttachmentRow) => Attachment = Schema.decodeSync(AttachmentFromRow)
export const aliasToWire: (row: AliasRow) => Alias = Schema.decodeSync(AliasFromRow)
export const manifestToWire: (rows: ManifestRows) => Manifest = Schema.decodeSync(ManifestFromRows)

/** The image name and version of a version path, validated (400 naming the field). */
export const decodeVersionPath = (path: { readonly name: string; readonly version: string }) =>
  Effect.all([decodeParam(ImageName, path.name), decodeParam(VersionString, path.version)])
