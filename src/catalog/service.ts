import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option } from "effect"
import { freshUuid } from "../platform/fresh-ids.js"
import { aliasDeleted, aliasUpdated, versionRetired, versionUnyanked, versionYanked } from "../webhooks/events.js"
import { recordEvent } from "../webhooks/outbox.js"
import type { NewEvent } from "../webhooks/schema.js"
import type { ArtifactIdentityTaken, AttachmentNameTaken, ImageNameTaken, VersionTaken } from "./errors.js"
import {
  AliasNotFound,
  AliasTargetNotPublished,
  AliasTargetYanked,
  ArtifactNotFound,
  AttachmentNotFound,
  ImageNotDeletable,
  ImageNotFound,
  RefNotFound,
  VersionAliased,
  VersionNotDeletable,
  VersionNotDraft,
  VersionNotFound,
  VersionNotYankable
} from "./errors.js"
import { PublishedManifests } from "./manifest-cache.js"
import { CatalogRepository, type ImageVersionRows } from "./repository.js"
import {
  type AliasRow,
  ARTIFACT_FILE_NAMES,
  ArtifactId,
  type ArtifactListKey,
  type ArtifactRow,
  AttachmentId,
  type AttachmentRow,
  type CreateArtifactRequest,
  type CreateAttachmentRequest,
  type CreateImageRequest,
  type DownloadTarget,
  ImageId,
  type ImageRow,
  type ManifestRows,
  VersionId,
  type VersionListKey,
  type VersionPageRow,
  type VersionRow
} from "./schema.js"

/**
 * The catalog's rules (api.md §2.5–2.8, §2.10): what is visible to whom, what can be
 * edited when, and what identity collisions mean. Names, versions and ids arrive
 * already validated by the HTTP layer. The database enforces the same lifecycle with
 * guard triggers (migrations/0003_catalog.sql); the checks here give precise errors,
 * and a guard firing anyway (a race) is mapped to the same 412 (by the repository).
 */
export class Catalog extends Context.Tag("imgsrv/Catalog")<Catalog, {
  readonly createImage: (request: CreateImageRequest) => Effect.Effect<ImageRow, ImageNameTaken>
  /** Images with at least one published version. */
  readonly listImages: Effect.Effect<ReadonlyArray<ImageRow>>
  /** At most `limit` listed images after the (`name`, `id`) key, in listing order. */
  readonly listImagesPage: (
    after: Option.Option<{ readonly name: string; readonly id: string }>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ImageRow>>
  /** An image, visible only once it has a published version. */
  readonly getImage: (name: string) => Effect.Effect<ImageRow, ImageNotFound>

  readonly createVersion: (name: string, version: string) => Effect.Effect<VersionRow, ImageNotFound | VersionTaken>
  /**
   * Deletes a draft with its artifacts and attachments, or retires a yanked published
   * version once `authorizeRetire` (the caller may retire) succeeds; a published version
   * that is not yanked, and a publishing one, are refused.
   */
  readonly deleteVersion: <E>(
    name: string,
    version: string,
    authorizeRetire: Effect.Effect<void, E>
  ) => Effect.Effect<void, VersionNotFound | VersionNotDeletable | E>
  /** Yanks a published version (kept as it is when already yanked); refused while an alias points at it. */
  readonly yankVersion: (
    name: string,
    version: string,
    reason: string
  ) => Effect.Effect<VersionRow, VersionNotFound | VersionNotYankable | VersionAliased>
  /** Undoes a yank (a version that is not yanked is returned unchanged). */
  readonly unyankVersion: (
    name: string,
    version: string
  ) => Effect.Effect<VersionRow, VersionNotFound | VersionNotYankable>
  /** Deletes an image with its drafts and aliases, unless a version is published or publishing. */
  readonly deleteImage: (name: string) => Effect.Effect<void, ImageNotFound | ImageNotDeletable>
  /**
   * At most `limit` published versions after the key, newest first, without the yanked
   * ones unless `includeYanked`; an image without any published version (yanked or not) is
   * "not found" (only on the first page: later pages may be empty).
   */
  readonly listVersions: (
    name: string,
    after: Option.Option<VersionListKey>,
    limit: number,
    includeYanked: boolean
  ) => Effect.Effect<ReadonlyArray<VersionPageRow>, ImageNotFound>
  /** The manifest of the exact version, in any state (drafts are readable by name). */
  readonly getManifest: (name: string, version: string) => Effect.Effect<ManifestRows, VersionNotFound>
  /** A published manifest by exact version first, then by alias. */
  readonly resolveRef: (name: string, ref: string) => Effect.Effect<ManifestRows, RefNotFound>

  /** At most `limit` artifacts of a published version after the key, in manifest order. */
  readonly listArtifacts: (
    name: string,
    version: string,
    after: Option.Option<ArtifactListKey>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ArtifactRow>, VersionNotFound>
  readonly getArtifact: (
    name: string,
    version: string,
    artifactId: ArtifactId
  ) => Effect.Effect<ArtifactRow, VersionNotFound | ArtifactNotFound>
  readonly addArtifact: (
    name: string,
    version: string,
    request: CreateArtifactRequest
  ) => Effect.Effect<ArtifactRow, VersionNotFound | VersionNotDraft | ArtifactIdentityTaken>
  readonly deleteArtifact: (
    name: string,
    version: string,
    artifactId: ArtifactId
  ) => Effect.Effect<void, VersionNotFound | ArtifactNotFound | VersionNotDraft>
  readonly addAttachment: (
    name: string,
    version: string,
    artifactId: ArtifactId,
    request: CreateAttachmentRequest
  ) => Effect.Effect<AttachmentRow, VersionNotFound | ArtifactNotFound | VersionNotDraft | AttachmentNameTaken>
  readonly deleteAttachment: (
    name: string,
    version: string,
    artifactId: ArtifactId,
    attachmentId: AttachmentId
  ) => Effect.Effect<void, VersionNotFound | ArtifactNotFound | AttachmentNotFound | VersionNotDraft>

  readonly putAlias: (
    name: string,
    alias: string,
    version: string
  ) => Effect.Effect<AliasRow, ImageNotFound | VersionNotFound | AliasTargetNotPublished | AliasTargetYanked>
  /** All aliases of an existing image (possibly none, even without published versions). */
  readonly listAliases: (name: string) => Effect.Effect<ReadonlyArray<AliasRow>, ImageNotFound>
  /** At most `limit` aliases of the image after the (`alias`, `id`) key, in listing order. */
  readonly listAliasesPage: (
    name: string,
    after: Option.Option<{ readonly alias: string; readonly id: string }>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<AliasRow>, ImageNotFound>
  readonly getAlias: (name: string, alias: string) => Effect.Effect<AliasRow, ImageNotFound | AliasNotFound>
  readonly deleteAlias: (name: string, alias: string) => Effect.Effect<void, ImageNotFound | AliasNotFound>
  /** Drops the published manifests this process remembers (after a yank, unyank or retirement). */
  readonly forgetPublishedManifests: Effect.Effect<void>

  /** The blob behind a published artifact. */
  readonly artifactDownload: (
    name: string,
    version: string,
    artifactId: ArtifactId
  ) => Effect.Effect<DownloadTarget, VersionNotFound | ArtifactNotFound>
  /** The blob behind an attachment of a published artifact. */
  readonly attachmentDownload: (
    name: string,
    version: string,
    artifactId: ArtifactId,
    attachmentId: AttachmentId
  ) => Effect.Effect<DownloadTarget, VersionNotFound | ArtifactNotFound | AttachmentNotFound>
}>() {}

/** The artifact variant a creator meant: absent or empty is `default` (domain.md §1.3). */
export const normaliseVariant = (variant: string | undefined): string =>
  variant === undefined || variant === "" ? "default" : variant

type Repository = CatalogRepository["Type"]

/**
 * Yanks `version` (published, not yanked, its row locked FOR UPDATE after the image row,
 * the order alias changes lock in) and records `version.yanked`, in the caller's
 * transaction. Refused while an alias points at it. Shared by the API and retention.
 */
export const yankLocked = (
  repo: Repository,
  sql: SqlClient.SqlClient,
  imageName: string,
  version: VersionRow,
  reason: string
): Effect.Effect<VersionRow, VersionAliased> =>
  Effect.gen(function*() {
    const aliases = yield* repo.aliasesOf(version.id)
    if (aliases.length > 0) {
      return yield* new VersionAliased({ name: imageName, version: version.version, aliases })
    }
    const yanked = yield* repo.setYank(version.id, reason)
    yield* recordEvent(sql, versionYanked(imageName, yanked))
    yield* Effect.logInfo("version yanked").pipe(
      Effect.annotateLogs({ image: imageName, version: version.version, reason })
    )
    return yanked
  })

/**
 * Retires `version` (published and yanked, its row locked) and records `version.retired`,
 * in the caller's transaction. Its blobs stay: they become garbage collection candidates.
 */
export const retireLocked = (
  repo: Repository,
  sql: SqlClient.SqlClient,
  imageName: string,
  version: VersionRow
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const retired = yield* repo.retireVersion(version.id)
    // The row is locked and was seen yanked: anything else is a bug.
    if (!retired) return yield* Effect.dieMessage(`version ${version.id} was not a yanked published version`)
    yield* recordEvent(sql, versionRetired(imageName, version))
    yield* Effect.logInfo("version retired").pipe(
      Effect.annotateLogs({ image: imageName, version: version.version })
    )
  })

export const CatalogLive = Layer.scoped(
  Catalog,
  Effect.gen(function*() {
    const repo = yield* CatalogRepository
    const sql = yield* SqlClient.SqlClient
    const manifests = yield* PublishedManifests

    const versionNotFound = (name: string, version: string, published: boolean) =>
      new VersionNotFound({ name, version, published })

    /** Any version (any state), or VersionNotFound. */
    const findVersion = (name: string, version: string, lock: "none" | "share" = "none") =>
      repo.findVersion(name, version, lock).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(versionNotFound(name, version, false)),
          onSome: Effect.succeed
        }))
      )

    /** A version that is published; drafts and publishing versions are "not found". */
    const findPublishedVersion = (name: string, version: string) =>
      repo.findVersion(name, version).pipe(
        Effect.flatMap((found) =>
          Option.isSome(found) && found.value.version.state === "published"
            ? Effect.succeed(found.value)
            : Effect.fail(versionNotFound(name, version, true))
        )
      )

    const findImage = (name: string) =>
      repo.findImage(name).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new ImageNotFound({ name })),
          onSome: Effect.succeed
        }))
      )

    const requireDraft = (found: ImageVersionRows) =>
      found.version.state === "draft"
        ? Effect.void
        : Effect.fail(
          new VersionNotDraft({ name: found.image.name, version: found.version.version, state: found.version.state })
        )

    const findArtifactIn = (found: ImageVersionRows, artifactId: ArtifactId) =>
      repo.findArtifact(found.version.id, artifactId).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new ArtifactNotFound({ artifactId })),
          onSome: Effect.succeed
        }))
      )

    /** A published manifest goes through the cache (manifest-cache.ts); other states never do. */
    const manifestOf = (found: ImageVersionRows) => {
      const load = repo.loadManifest(found)
      return found.version.state !== "published" ? load : manifests.get(found.image.name, found.version.version).pipe(
        // No longer published since `found` was read: answered as read, not cached.
        Effect.flatMap(Option.match({ onNone: () => load, onSome: (cached) => Effect.succeed(cached.rows) }))
      )
    }

    /** Drops every cached published manifest (the listener answers from the same cache). */
    const forgetPublishedManifests = manifests.clear

    const transaction = repo.transaction
    /** Records a webhook event in the caller's transaction. */
    const record = (event: NewEvent) => recordEvent(sql, event)

    return Catalog.of({
      createImage: (request) =>
        Effect.gen(function*() {
          return yield* repo.insertImage({
            id: ImageId.make(yield* freshUuid),
            name: request.name,
            displayName: request.display_name,
            description: request.description
          })
        }).pipe(Effect.withSpan("catalog.createImage")),

      listImages: repo.listPublishedImages.pipe(Effect.withSpan("catalog.listImages")),
      listImagesPage: (after, limit) =>
        repo.listPublishedImagesPage(after, limit).pipe(Effect.withSpan("catalog.listImages")),

      getImage: (name) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          const visible = yield* repo.hasPublishedVersion(image.id)
          if (!visible) return yield* new ImageNotFound({ name })
          return image
        }).pipe(Effect.withSpan("catalog.getImage")),

      createVersion: (name, version) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          return yield* repo.insertVersion({ id: VersionId.make(yield* freshUuid), image, version })
        }).pipe(Effect.withSpan("catalog.createVersion")),

      // Both deletes lock FOR UPDATE the version rows they check, as publish does: a
      // concurrent publish either commits first (and the delete then sees `publishing` and
      // refuses) or waits for the delete and then finds no version. The image delete also
      // locks the image row first, which the foreign keys of a concurrent version or alias
      // insert conflict with, so no new row can appear under an image being deleted.
      deleteVersion: (name, version, authorizeRetire) =>
        transaction(Effect.gen(function*() {
          const found = yield* repo.findVersion(name, version, "update")
          if (Option.isNone(found)) return yield* versionNotFound(name, version, false)
          const state = found.value.version.state
          if (state === "published" && found.value.version.yanked_at !== null) {
            yield* authorizeRetire
            yield* retireLocked(repo, sql, name, found.value.version)
            return true
          }
          if (state !== "draft") {
            return yield* new VersionNotDeletable({
              name,
              version,
              reason: state === "published"
                ? "published versions cannot be deleted; yank it first, then an auth manager can retire it"
                : "the version is being published (abandon its failed publish job first)"
            })
          }
          yield* repo.deleteVersions([found.value.version.id])
          yield* Effect.logInfo("draft version deleted").pipe(Effect.annotateLogs({ image: name, version }))
          return false
        })).pipe(
          Effect.tap((retired) => retired ? forgetPublishedManifests : Effect.void),
          Effect.asVoid,
          Effect.withSpan("catalog.deleteVersion")
        ),

      yankVersion: (name, version, reason) =>
        transaction(Effect.gen(function*() {
          // The image row first (alias changes lock it too), then the version row.
          const image = yield* findImage(name)
          yield* repo.lockAliasesOf(image.id)
          const found = yield* repo.findVersion(name, version, "update")
          if (Option.isNone(found)) return yield* versionNotFound(name, version, false)
          const row = found.value.version
          if (row.state !== "published") {
            return yield* new VersionNotYankable({ name, version, state: row.state })
          }
          if (row.yanked_at !== null) return row
          return yield* yankLocked(repo, sql, name, row, reason)
        })).pipe(
          Effect.tap(() => forgetPublishedManifests),
          Effect.catchTag("ImageNotFound", () => Effect.fail(versionNotFound(name, version, false))),
          Effect.withSpan("catalog.yankVersion")
        ),

      unyankVersion: (name, version) =>
        transaction(Effect.gen(function*() {
          const found = yield* repo.findVersion(name, version, "update")
          if (Option.isNone(found)) return yield* versionNotFound(name, version, false)
          const row = found.value.version
          if (row.state !== "published") {
            return yield* new VersionNotYankable({ name, version, state: row.state })
          }
          if (row.yanked_at === null) return row
          const unyanked = yield* repo.setYank(row.id, null)
          yield* record(versionUnyanked(name, unyanked))
          yield* Effect.logInfo("version unyanked").pipe(Effect.annotateLogs({ image: name, version }))
          return unyanked
        })).pipe(
          Effect.tap(() => forgetPublishedManifests),
          Effect.withSpan("catalog.unyankVersion")
        ),

      forgetPublishedManifests,

      deleteImage: (name) =>
        transaction(Effect.gen(function*() {
          const image = yield* repo.lockImage(name)
          if (Option.isNone(image)) return yield* new ImageNotFound({ name })
          const versions = yield* repo.lockVersionsOf(image.value.id)
          const kept = versions.filter((v) => v.state !== "draft")
          if (kept.length > 0) {
            return yield* new ImageNotDeletable({
              name,
              reason: `it has ${kept.map((v) => `${v.state} version ${v.version}`).join(", ")}; ` +
                "only images whose versions are all drafts can be deleted"
            })
          }
          yield* repo.deleteVersions(versions.map((v) => v.id))
          yield* repo.deleteImage(image.value.id)
          yield* Effect.logInfo("image deleted").pipe(
            Effect.annotateLogs({ image: name, drafts: versions.length })
          )
        })).pipe(Effect.withSpan("catalog.deleteImage")),

      listVersions: (name, after, limit, includeYanked) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          const versions = yield* repo.listPublishedVersionsPage(image.id, after, limit, includeYanked)
          // No published version at all (yanked ones included) means "not found"; an image
          // whose published versions are all yanked lists none. Later pages may be empty.
          if (
            versions.length === 0 && Option.isNone(after) &&
            !(yield* repo.hasPublishedVersion(image.id))
          ) {
            return yield* new ImageNotFound({ name })
          }
          return versions
        }).pipe(Effect.withSpan("catalog.listVersions")),

      getManifest: (name, version) =>
        Effect.suspend(() => {
          const hit = manifests.peek(name, version)
          return hit !== undefined
            ? Effect.succeed(hit.rows)
            : findVersion(name, version).pipe(Effect.flatMap(manifestOf))
        }).pipe(Effect.withSpan("catalog.getManifest")),

      resolveRef: (name, ref) =>
        Effect.gen(function*() {
          const cachedExact = manifests.peek(name, ref)
          if (cachedExact !== undefined) return cachedExact.rows
          const exact = yield* repo.findVersion(name, ref)
          if (Option.isSome(exact) && exact.value.version.state === "published") return yield* manifestOf(exact.value)
          const image = yield* repo.findImage(name)
          if (Option.isNone(image)) return yield* new RefNotFound({ name, ref })
          const alias = yield* repo.findAlias(image.value.id, ref)
          if (Option.isNone(alias)) return yield* new RefNotFound({ name, ref })
          // Aliases only ever target published, not yanked versions (DB guard); a retired one is gone.
          const cachedTarget = manifests.peek(name, alias.value.version)
          if (cachedTarget !== undefined) return cachedTarget.rows
          const target = yield* repo.findVersion(name, alias.value.version)
          if (Option.isNone(target) || target.value.version.state !== "published") {
            return yield* new RefNotFound({ name, ref })
          }
          return yield* manifestOf(target.value)
        }).pipe(Effect.withSpan("catalog.resolveRef")),

      listArtifacts: (name, version, after, limit) =>
        repo.listPublishedArtifacts(name, version, after, limit).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(versionNotFound(name, version, true)),
            onSome: Effect.succeed
          })),
          Effect.withSpan("catalog.listArtifacts")
        ),

      getArtifact: (name, version, artifactId) =>
        findPublishedVersion(name, version).pipe(
          Effect.flatMap((found) => findArtifactIn(found, artifactId)),
          Effect.withSpan("catalog.getArtifact")
        ),

      addArtifact: (name, version, request) =>
        transaction(Effect.gen(function*() {
          // FOR SHARE: a concurrent publish (FOR UPDATE) waits for this edit, or this waits for it.
          const found = yield* findVersion(name, version, "share")
          yield* requireDraft(found)
          return yield* repo.insertArtifact(found, {
            id: ArtifactId.make(yield* freshUuid),
            variant: normaliseVariant(request.variant),
            operatingSystem: request.operating_system,
            architecture: request.architecture,
            format: request.format,
            primaryBlobDigest: request.primary_blob_digest,
            primaryBlobSizeBytes: request.primary_blob_size_bytes,
            primaryMediaType: request.primary_media_type
          })
        })).pipe(Effect.withSpan("catalog.addArtifact")),

      deleteArtifact: (name, version, artifactId) =>
        transaction(Effect.gen(function*() {
          const found = yield* findVersion(name, version, "share")
          yield* findArtifactIn(found, artifactId)
          yield* requireDraft(found)
          const deleted = yield* repo.deleteArtifact(found, artifactId)
          if (!deleted) return yield* new ArtifactNotFound({ artifactId })
        })).pipe(Effect.withSpan("catalog.deleteArtifact")),

      addAttachment: (name, version, artifactId, request) =>
        transaction(Effect.gen(function*() {
          const found = yield* findVersion(name, version, "share")
          yield* findArtifactIn(found, artifactId)
          yield* requireDraft(found)
          return yield* repo.insertAttachment(found, {
            id: AttachmentId.make(yield* freshUuid),
            artifactId,
            name: request.name,
            mediaType: request.media_type,
            blobDigest: request.blob_digest,
            blobSizeBytes: request.blob_size_bytes
          })
        })).pipe(Effect.withSpan("catalog.addAttachment")),

      deleteAttachment: (name, version, artifactId, attachmentId) =>
        transaction(Effect.gen(function*() {
          const found = yield* findVersion(name, version, "share")
          yield* findArtifactIn(found, artifactId)
          const attachment = yield* repo.findAttachment(artifactId, attachmentId)
          if (Option.isNone(attachment)) return yield* new AttachmentNotFound({ attachmentId })
          yield* requireDraft(found)
          const deleted = yield* repo.deleteAttachment(found, artifactId, attachmentId)
          if (!deleted) return yield* new AttachmentNotFound({ attachmentId })
        })).pipe(Effect.withSpan("catalog.deleteAttachment")),

      putAlias: (name, alias, version) =>
        transaction(Effect.gen(function*() {
          const image = yield* findImage(name)
          const target = yield* findVersion(name, version)
          if (target.version.state !== "published") {
            return yield* new AliasTargetNotPublished({ name, version, state: target.version.state })
          }
          yield* repo.lockAliasesOf(image.id)
          // Checked under the image lock, which a yank takes first: no yank slips in between.
          const locked = yield* repo.findVersion(name, version, "share")
          if (Option.isNone(locked)) return yield* versionNotFound(name, version, false)
          if (locked.value.version.yanked_at !== null) return yield* new AliasTargetYanked({ name, version })
          const before = yield* repo.findAlias(image.id, alias)
          const after = yield* repo.upsertAlias({
            id: yield* freshUuid,
            imageId: image.id,
            alias,
            versionId: target.version.id
          })
          // Created or moved: alias.updated, in this transaction. Re-pointing at the same version is no change.
          const previous = Option.map(before, (row) => row.version_id)
          if (Option.isNone(previous) || previous.value !== after.version_id) {
            yield* record(aliasUpdated(name, after, Option.getOrUndefined(Option.map(before, (row) => row.version))))
          }
          return after
        })).pipe(Effect.withSpan("catalog.putAlias")),

      listAliases: (name) =>
        findImage(name).pipe(
          Effect.flatMap((image) => repo.listAliases(image.id)),
          Effect.withSpan("catalog.listAliases")
        ),

      listAliasesPage: (name, after, limit) =>
        findImage(name).pipe(
          Effect.flatMap((image) => repo.listAliasesPage(image.id, after, limit)),
          Effect.withSpan("catalog.listAliases")
        ),

      getAlias: (name, alias) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          const found = yield* repo.findAlias(image.id, alias)
          if (Option.isNone(found)) return yield* new AliasNotFound({ name, alias })
          return found.value
        }).pipe(Effect.withSpan("catalog.getAlias")),

      deleteAlias: (name, alias) =>
        transaction(Effect.gen(function*() {
          const image = yield* findImage(name)
          yield* repo.lockAliasesOf(image.id)
          const existing = yield* repo.findAlias(image.id, alias)
          const deleted = Option.isSome(existing) && (yield* repo.deleteAlias(image.id, alias))
          if (!deleted || Option.isNone(existing)) return yield* new AliasNotFound({ name, alias })
          // alias.deleted, in this transaction.
          yield* record(aliasDeleted(name, existing.value))
        })).pipe(Effect.withSpan("catalog.deleteAlias")),

      artifactDownload: (name, version, artifactId) =>
        Effect.gen(function*() {
          const found = yield* findPublishedVersion(name, version)
          const artifact = yield* findArtifactIn(found, artifactId)
          return {
            digest: artifact.primary_blob_digest,
            sizeBytes: artifact.primary_blob_size_bytes,
            mediaType: artifact.primary_media_type,
            updatedAt: artifact.updated_at,
            fileName: ARTIFACT_FILE_NAMES[artifact.format]
          }
        }).pipe(Effect.withSpan("catalog.artifactDownload")),

      attachmentDownload: (name, version, artifactId, attachmentId) =>
        Effect.gen(function*() {
          const found = yield* findPublishedVersion(name, version)
          yield* findArtifactIn(found, artifactId)
          const attachment = yield* repo.findAttachment(artifactId, attachmentId)
          if (Option.isNone(attachment)) return yield* new AttachmentNotFound({ attachmentId })
          return {
            digest: attachment.value.blob_digest,
            sizeBytes: attachment.value.blob_size_bytes,
            mediaType: attachment.value.media_type,
            updatedAt: attachment.value.updated_at,
            fileName: attachment.value.name
          }
        }).pipe(Effect.withSpan("catalog.attachmentDownload"))
    })
  })
)
