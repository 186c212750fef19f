import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

/**
 * The catalog's expected failures (api.md §1.9): unknown things are 404, identity
 * collisions 409, wrong lifecycle state 412. Each `message` is the problem `detail`.
 */

export class ImageNotFound extends Schema.TaggedError<ImageNotFound>()(
  "ImageNotFound",
  { name: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: image ${this.name} not found`
  }
}

/** No such version — or, where only published versions are visible, no such published version. */
export class VersionNotFound extends Schema.TaggedError<VersionNotFound>()(
  "VersionNotFound",
  { name: Schema.String, version: Schema.String, published: Schema.Boolean },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: ${
      this.published ? "published version" : "version"
    } ${this.name}/${this.version} not found`
  }
}

export class RefNotFound extends Schema.TaggedError<RefNotFound>()(
  "RefNotFound",
  { name: Schema.String, ref: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: no published version or alias ${this.ref} on image ${this.name}`
  }
}

export class ArtifactNotFound extends Schema.TaggedError<ArtifactNotFound>()(
  "ArtifactNotFound",
  { artifactId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: artifact ${this.artifactId} not found under this image version`
  }
}

export class AttachmentNotFound extends Schema.TaggedError<AttachmentNotFound>()(
  "AttachmentNotFound",
  { attachmentId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: attachment ${this.attachmentId} not found under this artifact`
  }
}

/** A download route's file name that is not the name this artifact or attachment is served as. */
export class DownloadFileNotFound extends Schema.TaggedError<DownloadFileNotFound>()(
  "DownloadFileNotFound",
  { fileName: Schema.String, servedAs: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: no file ${this.fileName} here (this download is ${this.servedAs})`
  }
}

export class AliasNotFound extends Schema.TaggedError<AliasNotFound>()(
  "AliasNotFound",
  { name: Schema.String, alias: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `catalog not found: alias ${this.name}/${this.alias} not found`
  }
}

export class ImageNameTaken extends Schema.TaggedError<ImageNameTaken>()(
  "ImageNameTaken",
  { name: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: image ${this.name} already exists`
  }
}

export class VersionTaken extends Schema.TaggedError<VersionTaken>()(
  "VersionTaken",
  { name: Schema.String, version: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: version ${this.name}/${this.version} already exists`
  }
}

export class ArtifactIdentityTaken extends Schema.TaggedError<ArtifactIdentityTaken>()(
  "ArtifactIdentityTaken",
  {
    variant: Schema.String,
    operatingSystem: Schema.String,
    architecture: Schema.String,
    format: Schema.String
  },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: an artifact ${this.variant}/${this.operatingSystem}/${this.architecture}/${this.format} ` +
      "already exists on this version"
  }
}

export class AttachmentNameTaken extends Schema.TaggedError<AttachmentNameTaken>()(
  "AttachmentNameTaken",
  { name: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: attachment ${this.name} already exists on this artifact`
  }
}

/** Artifacts and attachments can only change while the version is a draft. */
export class VersionNotDraft extends Schema.TaggedError<VersionNotDraft>()(
  "VersionNotDraft",
  { name: Schema.String, version: Schema.String, state: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `catalog failed precondition: version manifest can only change while draft ` +
      `(${this.name}/${this.version} is ${this.state})`
  }
}

/** Aliases only point at published versions. */
export class AliasTargetNotPublished extends Schema.TaggedError<AliasTargetNotPublished>()(
  "AliasTargetNotPublished",
  { name: Schema.String, version: Schema.String, state: Schema.String },
  HttpApiSchema.annotations({ status: 412 })
) {
  override get message() {
    return `catalog failed precondition: aliases must target a published version ` +
      `(${this.name}/${this.version} is ${this.state})`
  }
}

/** Only drafts can be deleted; the reason names the version's state (409). */
export class VersionNotDeletable extends Schema.TaggedError<VersionNotDeletable>()(
  "VersionNotDeletable",
  { name: Schema.String, version: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: version ${this.name}/${this.version} cannot be deleted: ${this.reason}`
  }
}

/** An image can only be deleted while none of its versions is published or publishing (409). */
export class ImageNotDeletable extends Schema.TaggedError<ImageNotDeletable>()(
  "ImageNotDeletable",
  { name: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: image ${this.name} cannot be deleted: ${this.reason}`
  }
}

/** Only published versions can be yanked or unyanked (409, naming the state). */
export class VersionNotYankable extends Schema.TaggedError<VersionNotYankable>()(
  "VersionNotYankable",
  { name: Schema.String, version: Schema.String, state: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: only published versions can be yanked (${this.name}/${this.version} is ${this.state})`
  }
}

/** A version an alias points at cannot be yanked (409, naming the aliases). */
export class VersionAliased extends Schema.TaggedError<VersionAliased>()(
  "VersionAliased",
  { name: Schema.String, version: Schema.String, aliases: Schema.Array(Schema.String) },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: version ${this.name}/${this.version} cannot be yanked: alias ` +
      `${this.aliases.join(", ")} points at it (move or delete the alias first)`
  }
}

/** No alias may point at a yanked version (409). */
export class AliasTargetYanked extends Schema.TaggedError<AliasTargetYanked>()(
  "AliasTargetYanked",
  { name: Schema.String, version: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `catalog conflict: version ${this.name}/${this.version} is yanked; aliases cannot point at it`
  }
}
