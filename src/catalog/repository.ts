import { SqlClient, SqlSchema } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { Cause, Context, Effect, Layer, Option, Schema } from "effect"
import { classifyConstraint, dieOnSqlError, type Infrastructure } from "../platform/storage/sql-errors.js"
import {
  ArtifactIdentityTaken,
  ArtifactNotFound,
  AttachmentNameTaken,
  ImageNameTaken,
  ImageNotFound,
  VersionNotDraft,
  VersionTaken
} from "./errors.js"
import {
  AliasRow,
  type ArtifactFormat,
  type ArtifactId,
  type ArtifactListKey,
  ArtifactRow,
  type AttachmentId,
  AttachmentRow,
  ImageId,
  ImageRow,
  type ManifestRows,
  type VersionId,
  type VersionListKey,
  VersionPageRow,
  VersionRow
} from "./schema.js"

/**
 * SQL of the catalog (tables of migrations/0003_catalog.sql). No rules here: the
 * service decides what a missing row means for the caller. Text orderings use
 * COLLATE "C" — plain code-point order (api.md §1.8).
 *
 * This is the SQL boundary: a database that fails is a defect here, and so is a violated
 * constraint no caller expects (a guard firing where the service's checks said it could
 * not); the only failures a method declares are the violations it expects, already
 * translated to domain errors.
 */

/** A version together with its image (most catalog lookups go by image name + version string). */
export interface ImageVersionRows {
  readonly image: ImageRow
  readonly version: VersionRow
}

/** A version row joined with its image's columns, prefixed `i_`. */
const JoinedVersionRow = Schema.Struct({
  ...VersionRow.fields,
  i_id: ImageId,
  i_name: Schema.String,
  i_display_name: Schema.NullOr(Schema.String),
  i_description: Schema.NullOr(Schema.String),
  i_created_at: Schema.DateFromSelf,
  i_updated_at: Schema.DateFromSelf
})

const splitJoined = (
  { i_created_at, i_description, i_display_name, i_id, i_name, i_updated_at, ...version }: typeof JoinedVersionRow.Type
): ImageVersionRows => ({
  image: {
    id: i_id,
    name: i_name,
    display_name: i_display_name,
    description: i_description,
    created_at: i_created_at,
    updated_at: i_updated_at
  },
  version
})

/**
 * The artifacts of a version page, or one row of NULLs for a published version without
 * any; `found_state` is the version's state either way.
 */
const PublishedArtifactRow = Schema.Union(
  Schema.Struct({ found_state: Schema.String, ...ArtifactRow.fields }),
  Schema.Struct({ found_state: Schema.String, id: Schema.Null })
)

const FoundRow = Schema.Struct({ found: Schema.Boolean })
const EpochRow = Schema.Struct({ epoch: Schema.String })
const RetiredRow = Schema.Struct({ retired: Schema.Boolean })
const AliasNameRow = Schema.Struct({ alias: Schema.String })
const IdRow = Schema.Struct({ id: Schema.String })

export type RowLock = "none" | "share" | "update"

export class CatalogRepository extends Context.Tag("imgsrv/CatalogRepository")<CatalogRepository, {
  /**
   * Runs `effect` in a transaction (or joins the caller's); a failing database, in the
   * transaction or in `effect`, is a defect.
   */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, Exclude<E, Infrastructure>, R>
  /**
   * The published epoch (migration 0008): moved by every yank, unyank and retirement, so a
   * replica knows its cached published manifests may be stale. Text: it is only compared.
   */
  readonly publishedEpoch: Effect.Effect<string>

  /** A new image; its name is unique. */
  readonly insertImage: (image: {
    readonly id: ImageId
    readonly name: string
    readonly displayName: string | undefined
    readonly description: string | undefined
  }) => Effect.Effect<ImageRow, ImageNameTaken>
  readonly findImage: (name: string) => Effect.Effect<Option.Option<ImageRow>>
  /** Images with at least one published version, by name then id. */
  readonly listPublishedImages: Effect.Effect<ReadonlyArray<ImageRow>>
  /** One page of them: at most `limit` images after (`name`, `id`) in that order (keyset). */
  readonly listPublishedImagesPage: (
    after: Option.Option<{ readonly name: string; readonly id: string }>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ImageRow>>
  readonly hasPublishedVersion: (imageId: ImageId) => Effect.Effect<boolean>

  /** A new draft of `image`; a version string is unique per image, and the image may have gone meanwhile. */
  readonly insertVersion: (version: {
    readonly id: VersionId
    readonly image: ImageRow
    readonly version: string
  }) => Effect.Effect<VersionRow, VersionTaken | ImageNotFound>
  /**
   * The version `name`/`version` with its image, optionally locking the version row:
   * `share` for manifest edits (a concurrent publish waits), `update` for publishing.
   */
  readonly findVersion: (
    name: string,
    version: string,
    lock?: RowLock
  ) => Effect.Effect<Option.Option<ImageVersionRows>>
  /**
   * At most `limit` published versions of an image after the key, newest `created_at`
   * first, then version, id (keyset), yanked ones on request; each with `created_at_key`,
   * its `created_at` as PostgreSQL text (microseconds) for the cursor. A `null` limit lists
   * them all (the retention preview, which plans over every version).
   */
  readonly listPublishedVersionsPage: (
    imageId: ImageId,
    after: Option.Option<VersionListKey>,
    limit: number | null,
    includeYanked: boolean
  ) => Effect.Effect<ReadonlyArray<VersionPageRow>>
  /**
   * Sets (`reason`) or clears (null) the yank of a published version, keeping an existing
   * yank as it is; the caller holds the row lock. The guard refuses anything but a published
   * row, which the caller checked: its refusal is a defect.
   */
  readonly setYank: (versionId: VersionId, reason: string | null) => Effect.Effect<VersionRow>
  /** Aliases pointing at the version, by alias. */
  readonly aliasesOf: (versionId: VersionId) => Effect.Effect<ReadonlyArray<string>>
  /**
   * Removes a yanked published version for good through `retire_version` (migration 0008):
   * projection rows, artifacts, attachments, publish jobs and the row. False when it is not
   * (or no longer) a yanked published version.
   */
  readonly retireVersion: (versionId: VersionId) => Effect.Effect<boolean>
  /** A version's artifacts and their attachments, in manifest order. */
  readonly loadManifest: (found: ImageVersionRows) => Effect.Effect<ManifestRows>

  readonly listArtifacts: (versionId: VersionId) => Effect.Effect<ReadonlyArray<ArtifactRow>>
  /**
   * The artifacts of `name`/`version` in manifest order, when that version is published
   * (None otherwise), in one round trip: the hot read of the API (issue 15). One page:
   * at most `limit` artifacts after the key (keyset).
   */
  readonly listPublishedArtifacts: (
    name: string,
    version: string,
    after: Option.Option<ArtifactListKey>,
    limit: number
  ) => Effect.Effect<Option.Option<ReadonlyArray<ArtifactRow>>>
  readonly findArtifact: (
    versionId: VersionId,
    artifactId: ArtifactId
  ) => Effect.Effect<Option.Option<ArtifactRow>>
  /**
   * A new artifact of the draft `target` (whose row the caller holds FOR SHARE). Its identity
   * (variant, OS, architecture, format) is unique per version; the guard refusing it means
   * the version left `draft` meanwhile.
   */
  readonly insertArtifact: (target: ImageVersionRows, artifact: {
    readonly id: ArtifactId
    readonly variant: string
    readonly operatingSystem: string
    readonly architecture: string
    readonly format: ArtifactFormat
    readonly primaryBlobDigest: string
    readonly primaryBlobSizeBytes: number
    readonly primaryMediaType: string
  }) => Effect.Effect<ArtifactRow, ArtifactIdentityTaken | VersionNotDraft>
  /** Deletes the artifact (and, by cascade, its attachments) of the draft `target`; false when no such row. */
  readonly deleteArtifact: (
    target: ImageVersionRows,
    artifactId: ArtifactId
  ) => Effect.Effect<boolean, VersionNotDraft>

  readonly findAttachment: (
    artifactId: ArtifactId,
    attachmentId: AttachmentId
  ) => Effect.Effect<Option.Option<AttachmentRow>>
  /**
   * A new attachment of an artifact of the draft `target`: its name is unique per artifact,
   * and the artifact may have been deleted meanwhile.
   */
  readonly insertAttachment: (target: ImageVersionRows, attachment: {
    readonly id: AttachmentId
    readonly artifactId: ArtifactId
    readonly name: string
    readonly mediaType: string
    readonly blobDigest: string
    readonly blobSizeBytes: number
  }) => Effect.Effect<AttachmentRow, AttachmentNameTaken | ArtifactNotFound | VersionNotDraft>
  readonly deleteAttachment: (
    target: ImageVersionRows,
    artifactId: ArtifactId,
    attachmentId: AttachmentId
  ) => Effect.Effect<boolean, VersionNotDraft>

  /** The image row locked FOR UPDATE (image delete): no version or alias can be added under it meanwhile. */
  readonly lockImage: (name: string) => Effect.Effect<Option.Option<ImageRow>>
  /** Every version of an image, locked FOR UPDATE (image delete), by version. */
  readonly lockVersionsOf: (imageId: ImageId) => Effect.Effect<ReadonlyArray<VersionRow>>
  /**
   * Deletes versions (which must be drafts) with their artifacts, attachments (cascade)
   * and abandoned publish jobs. The caller holds the version row locks.
   */
  readonly deleteVersions: (versionIds: ReadonlyArray<VersionId>) => Effect.Effect<void>
  /** Deletes an image and its aliases; its versions must already be gone (`deleteVersions`). */
  readonly deleteImage: (imageId: ImageId) => Effect.Effect<void>

  /**
   * Creates the alias or moves it to `versionId`; keeps id and created_at on a move. The
   * target is published, a terminal state, so a guard refusing it is a defect.
   */
  readonly upsertAlias: (alias: {
    readonly id: string
    readonly imageId: ImageId
    readonly alias: string
    readonly versionId: VersionId
  }) => Effect.Effect<AliasRow>
  readonly listAliases: (imageId: ImageId) => Effect.Effect<ReadonlyArray<AliasRow>>
  /** At most `limit` aliases of the image after (`alias`, `id`) in that order (keyset). */
  readonly listAliasesPage: (
    imageId: ImageId,
    after: Option.Option<{ readonly alias: string; readonly id: string }>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<AliasRow>>
  readonly findAlias: (imageId: ImageId, alias: string) => Effect.Effect<Option.Option<AliasRow>>
  readonly deleteAlias: (imageId: ImageId, alias: string) => Effect.Effect<boolean>
  /**
   * Serialises alias changes of one image until the transaction ends (the image row,
   * FOR NO KEY UPDATE: foreign-key checks still pass), so "what the alias pointed at before"
   * is exact even when two requests race to create it.
   */
  readonly lockAliasesOf: (imageId: ImageId) => Effect.Effect<void>
}>() {}

/** Rows of a query decoded by `Result`. */
const all = <A, I, E>(Result: Schema.Schema<A, I>, query: Effect.Effect<ReadonlyArray<unknown>, E>) =>
  SqlSchema.findAll({ Request: Schema.Void, Result, execute: () => query })(undefined)

/** The first row of a query, if any, decoded by `Result`. */
const maybe = <A, I, E>(Result: Schema.Schema<A, I>, query: Effect.Effect<ReadonlyArray<unknown>, E>) =>
  SqlSchema.findOne({ Request: Schema.Void, Result, execute: () => query })(undefined)

/** The one row a query always answers (INSERT … RETURNING, an aggregate): none is a defect. */
const one = <A, I, E>(Result: Schema.Schema<A, I>, query: Effect.Effect<ReadonlyArray<unknown>, E>) =>
  SqlSchema.single({ Request: Schema.Void, Result, execute: () => query })(undefined).pipe(
    Effect.catchIf(Cause.isNoSuchElementException, Effect.die)
  )

export const CatalogRepositoryLive = Layer.effect(
  CatalogRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const findVersion = (name: string, version: string, lock: RowLock) => {
      const suffix = sql.literal(lock === "update" ? "FOR UPDATE OF v" : lock === "share" ? "FOR SHARE OF v" : "")
      return maybe(
        JoinedVersionRow,
        sql`
          SELECT v.*, i.id AS i_id, i.name AS i_name, i.display_name AS i_display_name,
                 i.description AS i_description, i.created_at AS i_created_at, i.updated_at AS i_updated_at
          FROM image_versions v JOIN images i ON i.id = v.image_id
          WHERE i.name = ${name} AND v.version = ${version}
          ${suffix}`
      ).pipe(Effect.map(Option.map(splitJoined)), dieOnSqlError)
    }

    const aliasSelect = (where: Statement.Fragment) =>
      sql`
        SELECT a.id, a.image_id, a.alias, a.version_id, v.version, a.created_at, a.updated_at
        FROM aliases a JOIN image_versions v ON v.id = a.version_id
        WHERE ${where}
        ORDER BY a.alias COLLATE "C", a.id`

    const artifactsOf = (versionId: VersionId) =>
      all(
        ArtifactRow,
        sql`
          SELECT * FROM release_artifacts WHERE version_id = ${versionId}
          ORDER BY variant COLLATE "C", operating_system COLLATE "C", architecture COLLATE "C",
                   format COLLATE "C", id`
      )

    /** Whether a DELETE … RETURNING id matched its row. */
    const deleted = <E>(query: Effect.Effect<ReadonlyArray<unknown>, E>) =>
      maybe(IdRow, query).pipe(Effect.map(Option.isSome))

    /** A guard trigger refusing a manifest edit means the version left `draft` under us. */
    const leftDraft = (target: ImageVersionRows) => () =>
      Effect.fail(
        new VersionNotDraft({ name: target.image.name, version: target.version.version, state: "not draft" })
      )

    return CatalogRepository.of({
      transaction: (effect) => dieOnSqlError(sql.withTransaction(effect)),

      publishedEpoch: SqlSchema.findOne({
        Request: Schema.Void,
        Result: EpochRow,
        execute: () => sql`SELECT published_epoch::text AS epoch FROM catalog_generation`
      })(undefined).pipe(
        Effect.map(Option.match({ onNone: () => "", onSome: (row) => row.epoch })),
        dieOnSqlError
      ),

      insertImage: (image) =>
        one(
          ImageRow,
          classifyConstraint(sql`
            INSERT INTO images (id, name, display_name, description)
            VALUES (${image.id}, ${image.name}, ${image.displayName ?? null}, ${image.description ?? null})
            RETURNING *`)
        ).pipe(
          Effect.catchTags({
            UniqueViolation: () => Effect.fail(new ImageNameTaken({ name: image.name })),
            CheckViolation: Effect.die,
            ForeignKeyViolation: Effect.die
          }),
          dieOnSqlError
        ),

      findImage: (name) => maybe(ImageRow, sql`SELECT * FROM images WHERE name = ${name}`).pipe(dieOnSqlError),

      listPublishedImages: all(
        ImageRow,
        sql`
          SELECT i.* FROM images i
          WHERE EXISTS (SELECT 1 FROM image_versions v WHERE v.image_id = i.id AND v.state = 'published')
          ORDER BY i.name COLLATE "C", i.id`
      ).pipe(dieOnSqlError),

      listPublishedImagesPage: (after, limit) => {
        const from = Option.match(after, {
          onNone: () => sql.literal("TRUE"),
          onSome: (key) => sql`(i.name COLLATE "C", i.id) > (${key.name} COLLATE "C", ${key.id}::uuid)`
        })
        return all(
          ImageRow,
          sql`
            SELECT i.* FROM images i
            WHERE EXISTS (SELECT 1 FROM image_versions v WHERE v.image_id = i.id AND v.state = 'published')
              AND ${from}
            ORDER BY i.name COLLATE "C", i.id
            LIMIT ${limit}`
        ).pipe(dieOnSqlError)
      },

      hasPublishedVersion: (imageId) =>
        one(
          FoundRow,
          sql`
            SELECT EXISTS (
              SELECT 1 FROM image_versions WHERE image_id = ${imageId} AND state = 'published'
            ) AS found`
        ).pipe(Effect.map((row) => row.found), dieOnSqlError),

      insertVersion: (version) =>
        one(
          VersionRow,
          classifyConstraint(sql`
            INSERT INTO image_versions (id, image_id, version)
            VALUES (${version.id}, ${version.image.id}, ${version.version})
            RETURNING *`)
        ).pipe(
          Effect.catchTags({
            UniqueViolation: () =>
              Effect.fail(new VersionTaken({ name: version.image.name, version: version.version })),
            CheckViolation: Effect.die,
            // The image was deleted between the caller's lookup and the insert.
            ForeignKeyViolation: () => Effect.fail(new ImageNotFound({ name: version.image.name }))
          }),
          dieOnSqlError
        ),

      findVersion: (name, version, lock = "none") => findVersion(name, version, lock),

      listPublishedVersionsPage: (imageId, after, limit, includeYanked) =>
        all(
          VersionPageRow,
          sql`
            SELECT *, created_at::text AS created_at_key FROM image_versions
            WHERE image_id = ${imageId} AND state = 'published' AND (${includeYanked} OR yanked_at IS NULL) AND ${
            Option.match(after, {
              onNone: () => sql.literal("TRUE"),
              // Mixed directions (created_at descending, the rest ascending): no single row comparison.
              onSome: (key) =>
                sql`(created_at < ${key.created_at}::timestamptz OR (created_at = ${key.created_at}::timestamptz
                     AND (version COLLATE "C", id) > (${key.version} COLLATE "C", ${key.id}::uuid)))`
            })
          }
            ORDER BY created_at DESC, version COLLATE "C", id
            LIMIT ${limit}`
        ).pipe(dieOnSqlError),

      setYank: (versionId, reason) =>
        one(
          VersionRow,
          sql`
            UPDATE image_versions
            SET yanked_at = CASE WHEN ${reason}::text IS NULL THEN NULL ELSE coalesce(yanked_at, now()) END,
                yank_reason = CASE WHEN ${reason}::text IS NULL THEN NULL ELSE coalesce(yank_reason, ${reason}) END
            WHERE id = ${versionId}
            RETURNING *`
        ).pipe(dieOnSqlError),

      aliasesOf: (versionId) =>
        all(AliasNameRow, sql`SELECT alias FROM aliases WHERE version_id = ${versionId} ORDER BY alias COLLATE "C"`)
          .pipe(Effect.map((rows) => rows.map((row) => row.alias)), dieOnSqlError),

      retireVersion: (versionId) =>
        one(RetiredRow, sql`SELECT retire_version(${versionId}) AS retired`).pipe(
          Effect.map((row) => row.retired),
          dieOnSqlError
        ),

      loadManifest: (found) =>
        Effect.gen(function*() {
          const artifacts = yield* artifactsOf(found.version.id)
          const attachments = yield* all(
            AttachmentRow,
            sql`
              SELECT t.* FROM artifact_attachments t
              JOIN release_artifacts a ON a.id = t.artifact_id
              WHERE a.version_id = ${found.version.id}
              ORDER BY t.name COLLATE "C", t.id`
          )
          return {
            image: found.image,
            version: found.version,
            artifacts: artifacts.map((artifact) => ({
              artifact,
              attachments: attachments.filter((t) => t.artifact_id === artifact.id)
            }))
          }
        }).pipe(dieOnSqlError),

      listArtifacts: (versionId) => dieOnSqlError(artifactsOf(versionId)),

      listPublishedArtifacts: (name, version, after, limit) =>
        // One row per artifact, or one row of NULLs for a published version without any
        // (a published version always has one; the LEFT JOIN keeps the answer exact anyway).
        all(
          PublishedArtifactRow,
          sql`
            SELECT v.state AS found_state, a.*
            FROM image_versions v
            JOIN images i ON i.id = v.image_id
            LEFT JOIN release_artifacts a ON a.version_id = v.id AND ${
            Option.match(after, {
              onNone: () => sql.literal("TRUE"),
              onSome: (key) =>
                sql`(a.variant COLLATE "C", a.operating_system COLLATE "C", a.architecture COLLATE "C",
                     a.format COLLATE "C", a.id)
                  > (${key.variant} COLLATE "C", ${key.operating_system} COLLATE "C", ${key.architecture} COLLATE "C",
                     ${key.format} COLLATE "C", ${key.id}::uuid)`
            })
          }
            WHERE i.name = ${name} AND v.version = ${version}
            ORDER BY a.variant COLLATE "C", a.operating_system COLLATE "C", a.architecture COLLATE "C",
                     a.format COLLATE "C", a.id
            LIMIT ${limit}`
        ).pipe(
          Effect.map((rows) => {
            if (rows.length === 0 || rows[0]!.found_state !== "published") return Option.none()
            return Option.some(rows.flatMap(({ found_state: _, ...row }) => "variant" in row ? [row] : []))
          }),
          dieOnSqlError
        ),

      findArtifact: (versionId, artifactId) =>
        maybe(
          ArtifactRow,
          sql`SELECT * FROM release_artifacts WHERE id = ${artifactId} AND version_id = ${versionId}`
        ).pipe(dieOnSqlError),

      insertArtifact: (target, a) =>
        one(
          ArtifactRow,
          classifyConstraint(sql`
            INSERT INTO release_artifacts (
              id, version_id, variant, operating_system, architecture, format,
              primary_blob_digest, primary_blob_size_bytes, primary_media_type
            ) VALUES (
              ${a.id}, ${target.version.id}, ${a.variant}, ${a.operatingSystem}, ${a.architecture}, ${a.format},
              ${a.primaryBlobDigest}, ${a.primaryBlobSizeBytes}, ${a.primaryMediaType}
            )
            RETURNING *`)
        ).pipe(
          Effect.catchTags({
            UniqueViolation: () =>
              Effect.fail(
                new ArtifactIdentityTaken({
                  variant: a.variant,
                  operatingSystem: a.operatingSystem,
                  architecture: a.architecture,
                  format: a.format
                })
              ),
            CheckViolation: leftDraft(target),
            ForeignKeyViolation: Effect.die
          }),
          dieOnSqlError
        ),

      deleteArtifact: (target, artifactId) =>
        deleted(classifyConstraint(sql`
          DELETE FROM release_artifacts WHERE id = ${artifactId} AND version_id = ${target.version.id}
          RETURNING id`)).pipe(
          Effect.catchTags({
            CheckViolation: leftDraft(target),
            ForeignKeyViolation: Effect.die,
            UniqueViolation: Effect.die
          }),
          dieOnSqlError
        ),

      findAttachment: (artifactId, attachmentId) =>
        maybe(
          AttachmentRow,
          sql`SELECT * FROM artifact_attachments WHERE id = ${attachmentId} AND artifact_id = ${artifactId}`
        ).pipe(dieOnSqlError),

      insertAttachment: (target, t) =>
        one(
          AttachmentRow,
          classifyConstraint(sql`
            INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
            VALUES (${t.id}, ${t.artifactId}, ${t.name}, ${t.mediaType}, ${t.blobDigest}, ${t.blobSizeBytes})
            RETURNING *`)
        ).pipe(
          Effect.catchTags({
            UniqueViolation: () => Effect.fail(new AttachmentNameTaken({ name: t.name })),
            CheckViolation: leftDraft(target),
            // The artifact vanished between lookup and insert (deleted concurrently).
            ForeignKeyViolation: () => Effect.fail(new ArtifactNotFound({ artifactId: t.artifactId }))
          }),
          dieOnSqlError
        ),

      deleteAttachment: (target, artifactId, attachmentId) =>
        deleted(classifyConstraint(sql`
          DELETE FROM artifact_attachments WHERE id = ${attachmentId} AND artifact_id = ${artifactId}
          RETURNING id`)).pipe(
          Effect.catchTags({
            CheckViolation: leftDraft(target),
            ForeignKeyViolation: Effect.die,
            UniqueViolation: Effect.die
          }),
          dieOnSqlError
        ),

      lockImage: (name) =>
        maybe(ImageRow, sql`SELECT * FROM images WHERE name = ${name} FOR UPDATE`).pipe(dieOnSqlError),

      lockVersionsOf: (imageId) =>
        all(
          VersionRow,
          sql`
            SELECT * FROM image_versions WHERE image_id = ${imageId}
            ORDER BY version COLLATE "C", id FOR UPDATE`
        ).pipe(dieOnSqlError),

      deleteVersions: (versionIds) =>
        Effect.gen(function*() {
          // Attachments go with their artifacts (ON DELETE CASCADE), steps with their jobs.
          yield* sql`DELETE FROM release_artifacts WHERE version_id = ANY(${versionIds}::uuid[])`
          yield* sql`DELETE FROM publish_jobs WHERE version_id = ANY(${versionIds}::uuid[])`
          yield* sql`DELETE FROM image_versions WHERE id = ANY(${versionIds}::uuid[])`
        }).pipe(dieOnSqlError),

      deleteImage: (imageId) =>
        Effect.gen(function*() {
          yield* sql`DELETE FROM aliases WHERE image_id = ${imageId}`
          yield* sql`DELETE FROM images WHERE id = ${imageId}`
        }).pipe(dieOnSqlError),

      upsertAlias: (alias) =>
        one(
          AliasRow,
          sql`
            WITH upserted AS (
              INSERT INTO aliases (id, image_id, alias, version_id)
              VALUES (${alias.id}, ${alias.imageId}, ${alias.alias}, ${alias.versionId})
              ON CONFLICT (image_id, alias) DO UPDATE
                SET version_id = EXCLUDED.version_id,
                    -- Re-pointing at the same version is not a move.
                    updated_at = CASE WHEN aliases.version_id = EXCLUDED.version_id
                                      THEN aliases.updated_at ELSE now() END
              RETURNING *
            )
            SELECT u.id, u.image_id, u.alias, u.version_id, v.version, u.created_at, u.updated_at
            FROM upserted u JOIN image_versions v ON v.id = u.version_id`
        ).pipe(dieOnSqlError),

      listAliases: (imageId) => all(AliasRow, aliasSelect(sql`a.image_id = ${imageId}`)).pipe(dieOnSqlError),

      listAliasesPage: (imageId, after, limit) =>
        all(
          AliasRow,
          sql`
            SELECT a.id, a.image_id, a.alias, a.version_id, v.version, a.created_at, a.updated_at
            FROM aliases a JOIN image_versions v ON v.id = a.version_id
            WHERE a.image_id = ${imageId} AND ${
            Option.match(after, {
              onNone: () => sql.literal("TRUE"),
              onSome: (key) => sql`(a.alias COLLATE "C", a.id) > (${key.alias} COLLATE "C", ${key.id}::uuid)`
            })
          }
            ORDER BY a.alias COLLATE "C", a.id
            LIMIT ${limit}`
        ).pipe(dieOnSqlError),

      findAlias: (imageId, alias) =>
        maybe(AliasRow, aliasSelect(sql`a.image_id = ${imageId} AND a.alias = ${alias}`)).pipe(dieOnSqlError),

      deleteAlias: (imageId, alias) =>
        deleted(sql`DELETE FROM aliases WHERE image_id = ${imageId} AND alias = ${alias} RETURNING id`).pipe(
          dieOnSqlError
        ),

      lockAliasesOf: (imageId) =>
        sql`SELECT id FROM images WHERE id = ${imageId} FOR NO KEY UPDATE`.pipe(Effect.asVoid, dieOnSqlError)
    })
  })
)
