import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { Context, Effect, Layer, Option } from "effect"
import { classifyConstraint, type ConstraintViolation } from "../platform/storage/sql-errors.js"
import type {
  AliasRow,
  ArtifactFormat,
  ArtifactListKey,
  ArtifactRow,
  AttachmentRow,
  ImageRow,
  ManifestRows,
  VersionListKey,
  VersionPageRow,
  VersionRow
} from "./schema.js"

/**
 * SQL of the catalog (tables of migrations/0003_catalog.sql). No rules here: the
 * service decides what a missing row or a violated constraint means for the caller.
 * Text orderings use COLLATE "C" — plain code-point order (api.md §1.8).
 */

const first = <A>(rows: ReadonlyArray<A>): Option.Option<A> => Option.fromNullable(rows[0])

/** A version together with its image (most catalog lookups go by image name + version string). */
export interface ImageVersionRows {
  readonly image: ImageRow
  readonly version: VersionRow
}

interface JoinedVersionRow extends VersionRow {
  readonly i_id: string
  readonly i_name: string
  readonly i_display_name: string | null
  readonly i_description: string | null
  readonly i_created_at: Date
  readonly i_updated_at: Date
}

const splitJoined = (row: JoinedVersionRow): ImageVersionRows => ({
  image: {
    id: row.i_id,
    name: row.i_name,
    display_name: row.i_display_name,
    description: row.i_description,
    created_at: row.i_created_at,
    updated_at: row.i_updated_at
  },
  version: {
    id: row.id,
    image_id: row.image_id,
    version: row.version,
    state: row.state,
    published_at: row.published_at,
    yanked_at: row.yanked_at,
    yank_reason: row.yank_reason,
    created_at: row.created_at,
    updated_at: row.updated_at
  }
})

export type RowLock = "none" | "share" | "update"

export class CatalogRepository extends Context.Tag("imgsrv/CatalogRepository")<CatalogRepository, {
  readonly insertImage: (image: {
    readonly id: string
    readonly name: string
    readonly displayName: string | undefined
    readonly description: string | undefined
  }) => Effect.Effect<ImageRow, SqlError.SqlError | ConstraintViolation>
  readonly findImage: (name: string) => Effect.Effect<Option.Option<ImageRow>, SqlError.SqlError>
  /** Images with at least one published version, by name then id. */
  readonly listPublishedImages: Effect.Effect<ReadonlyArray<ImageRow>, SqlError.SqlError>
  /** One page of them: at most `limit` images after (`name`, `id`) in that order (keyset). */
  readonly listPublishedImagesPage: (
    after: Option.Option<{ readonly name: string; readonly id: string }>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ImageRow>, SqlError.SqlError>
  readonly hasPublishedVersion: (imageId: string) => Effect.Effect<boolean, SqlError.SqlError>

  readonly insertVersion: (version: {
    readonly id: string
    readonly imageId: string
    readonly version: string
  }) => Effect.Effect<VersionRow, SqlError.SqlError | ConstraintViolation>
  /**
   * The version `name`/`version` with its image, optionally locking the version row:
   * `share` for manifest edits (a concurrent publish waits), `update` for publishing.
   */
  readonly findVersion: (
    name: string,
    version: string,
    lock?: RowLock
  ) => Effect.Effect<Option.Option<ImageVersionRows>, SqlError.SqlError>
  /**
   * At most `limit` published versions of an image after the key, newest `created_at`
   * first, then version, id (keyset), yanked ones on request; each with `created_at_key`,
   * its `created_at` as PostgreSQL text (microseconds) for the cursor. A `null` limit lists
   * them all (the retention preview, which plans over every version).
   */
  readonly listPublishedVersionsPage: (
    imageId: string,
    after: Option.Option<VersionListKey>,
    limit: number | null,
    includeYanked: boolean
  ) => Effect.Effect<ReadonlyArray<VersionPageRow>, SqlError.SqlError>
  /**
   * Sets (`reason`) or clears (null) the yank of a published version, keeping an existing
   * yank as it is; the caller holds the row lock. The guard refuses anything but a published row.
   */
  readonly setYank: (
    versionId: string,
    reason: string | null
  ) => Effect.Effect<VersionRow, SqlError.SqlError | ConstraintViolation>
  /** Aliases pointing at the version, by alias. */
  readonly aliasesOf: (versionId: string) => Effect.Effect<ReadonlyArray<string>, SqlError.SqlError>
  /**
   * Removes a yanked published version for good through `retire_version` (migration 0008):
   * projection rows, artifacts, attachments, publish jobs and the row. False when it is not
   * (or no longer) a yanked published version.
   */
  readonly retireVersion: (versionId: string) => Effect.Effect<boolean, SqlError.SqlError | ConstraintViolation>
  /** A version's artifacts and their attachments, in manifest order. */
  readonly loadManifest: (found: ImageVersionRows) => Effect.Effect<ManifestRows, SqlError.SqlError>

  readonly listArtifacts: (versionId: string) => Effect.Effect<ReadonlyArray<ArtifactRow>, SqlError.SqlError>
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
  ) => Effect.Effect<Option.Option<ReadonlyArray<ArtifactRow>>, SqlError.SqlError>
  readonly findArtifact: (
    versionId: string,
    artifactId: string
  ) => Effect.Effect<Option.Option<ArtifactRow>, SqlError.SqlError>
  readonly insertArtifact: (artifact: {
    readonly id: string
    readonly versionId: string
    readonly variant: string
    readonly operatingSystem: string
    readonly architecture: string
    readonly format: ArtifactFormat
    readonly primaryBlobDigest: string
    readonly primaryBlobSizeBytes: number
    readonly primaryMediaType: string
  }) => Effect.Effect<ArtifactRow, SqlError.SqlError | ConstraintViolation>
  /** Deletes the artifact (and, by cascade, its attachments); false when no such row. */
  readonly deleteArtifact: (
    versionId: string,
    artifactId: string
  ) => Effect.Effect<boolean, SqlError.SqlError | ConstraintViolation>

  readonly findAttachment: (
    artifactId: string,
    attachmentId: string
  ) => Effect.Effect<Option.Option<AttachmentRow>, SqlError.SqlError>
  readonly insertAttachment: (attachment: {
    readonly id: string
    readonly artifactId: string
    readonly name: string
    readonly mediaType: string
    readonly blobDigest: string
    readonly blobSizeBytes: number
  }) => Effect.Effect<AttachmentRow, SqlError.SqlError | ConstraintViolation>
  readonly deleteAttachment: (
    artifactId: string,
    attachmentId: string
  ) => Effect.Effect<boolean, SqlError.SqlError | ConstraintViolation>

  /** The image row locked FOR UPDATE (image delete): no version or alias can be added under it meanwhile. */
  readonly lockImage: (name: string) => Effect.Effect<Option.Option<ImageRow>, SqlError.SqlError>
  /** Every version of an image, locked FOR UPDATE (image delete), by version. */
  readonly lockVersionsOf: (imageId: string) => Effect.Effect<ReadonlyArray<VersionRow>, SqlError.SqlError>
  /**
   * Deletes versions (which must be drafts) with their artifacts, attachments (cascade)
   * and abandoned publish jobs. The caller holds the version row locks.
   */
  readonly deleteVersions: (
    versionIds: ReadonlyArray<string>
  ) => Effect.Effect<void, SqlError.SqlError | ConstraintViolation>
  /** Deletes an image and its aliases; its versions must already be gone (`deleteVersions`). */
  readonly deleteImage: (imageId: string) => Effect.Effect<void, SqlError.SqlError | ConstraintViolation>

  /** Creates the alias or moves it to `versionId`; keeps id and created_at on a move. */
  readonly upsertAlias: (alias: {
    readonly id: string
    readonly imageId: string
    readonly alias: string
    readonly versionId: string
  }) => Effect.Effect<AliasRow, SqlError.SqlError | ConstraintViolation>
  readonly listAliases: (imageId: string) => Effect.Effect<ReadonlyArray<AliasRow>, SqlError.SqlError>
  /** At most `limit` aliases of the image after (`alias`, `id`) in that order (keyset). */
  readonly listAliasesPage: (
    imageId: string,
    after: Option.Option<{ readonly alias: string; readonly id: string }>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<AliasRow>, SqlError.SqlError>
  readonly findAlias: (imageId: string, alias: string) => Effect.Effect<Option.Option<AliasRow>, SqlError.SqlError>
  readonly deleteAlias: (imageId: string, alias: string) => Effect.Effect<boolean, SqlError.SqlError>
  /**
   * Serialises alias changes of one image until the transaction ends (the image row,
   * FOR NO KEY UPDATE: foreign-key checks still pass), so "what the alias pointed at before"
   * is exact even when two requests race to create it.
   */
  readonly lockAliasesOf: (imageId: string) => Effect.Effect<void, SqlError.SqlError>
}>() {}

export const CatalogRepositoryLive = Layer.effect(
  CatalogRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const versionQuery = (name: string, version: string, lock: RowLock) => {
      const suffix = sql.literal(lock === "update" ? "FOR UPDATE OF v" : lock === "share" ? "FOR SHARE OF v" : "")
      return sql<JoinedVersionRow>`
        SELECT v.*, i.id AS i_id, i.name AS i_name, i.display_name AS i_display_name,
               i.description AS i_description, i.created_at AS i_created_at, i.updated_at AS i_updated_at
        FROM image_versions v JOIN images i ON i.id = v.image_id
        WHERE i.name = ${name} AND v.version = ${version}
        ${suffix}`
    }

    const aliasSelect = (where: Statement.Fragment) =>
      sql<AliasRow>`
        SELECT a.id, a.image_id, a.alias, a.version_id, v.version, a.created_at, a.updated_at
        FROM aliases a JOIN image_versions v ON v.id = a.version_id
        WHERE ${where}
        ORDER BY a.alias COLLATE "C", a.id`

    return CatalogRepository.of({
      insertImage: (image) =>
        classifyConstraint(sql<ImageRow>`
          INSERT INTO images (id, name, display_name, description)
          VALUES (${image.id}, ${image.name}, ${image.displayName ?? null}, ${image.description ?? null})
          RETURNING *`).pipe(Effect.map((rows) => rows[0]!)),

      findImage: (name) => sql<ImageRow>`SELECT * FROM images WHERE name = ${name}`.pipe(Effect.map(first)),

      listPublishedImages: sql<ImageRow>`
        SELECT i.* FROM images i
        WHERE EXISTS (SELECT 1 FROM image_versions v WHERE v.image_id = i.id AND v.state = 'published')
        ORDER BY i.name COLLATE "C", i.id`,

      listPublishedImagesPage: (after, limit) => {
        const from = Option.match(after, {
          onNone: () => sql.literal("TRUE"),
          onSome: (key) => sql`(i.name COLLATE "C", i.id) > (${key.name} COLLATE "C", ${key.id}::uuid)`
        })
        return sql<ImageRow>`
          SELECT i.* FROM images i
          WHERE EXISTS (SELECT 1 FROM image_versions v WHERE v.image_id = i.id AND v.state = 'published')
            AND ${from}
          ORDER BY i.name COLLATE "C", i.id
          LIMIT ${limit}`
      },

      hasPublishedVersion: (imageId) =>
        sql<{ found: boolean }>`
          SELECT EXISTS (
            SELECT 1 FROM image_versions WHERE image_id = ${imageId} AND state = 'published'
          ) AS found`.pipe(Effect.map((rows) => rows[0]?.found === true)),

      insertVersion: (version) =>
        classifyConstraint(sql<VersionRow>`
          INSERT INTO image_versions (id, image_id, version)
          VALUES (${version.id}, ${version.imageId}, ${version.version})
          RETURNING *`).pipe(Effect.map((rows) => rows[0]!)),

      findVersion: (name, version, lock = "none") =>
        versionQuery(name, version, lock).pipe(Effect.map((rows) => first(rows).pipe(Option.map(splitJoined)))),

      listPublishedVersionsPage: (imageId, after, limit, includeYanked) =>
        sql<VersionPageRow>`
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
          LIMIT ${limit}`,

      setYank: (versionId, reason) =>
        classifyConstraint(sql<VersionRow>`
          UPDATE image_versions
          SET yanked_at = CASE WHEN ${reason}::text IS NULL THEN NULL ELSE coalesce(yanked_at, now()) END,
              yank_reason = CASE WHEN ${reason}::text IS NULL THEN NULL ELSE coalesce(yank_reason, ${reason}) END
          WHERE id = ${versionId}
          RETURNING *`).pipe(Effect.map((rows) => rows[0]!)),

      aliasesOf: (versionId) =>
        sql<{ alias: string }>`
          SELECT alias FROM aliases WHERE version_id = ${versionId} ORDER BY alias COLLATE "C"`.pipe(
          Effect.map((rows) => rows.map((row) => row.alias))
        ),

      retireVersion: (versionId) =>
        classifyConstraint(sql<{ retired: boolean }>`SELECT retire_version(${versionId}) AS retired`).pipe(
          Effect.map((rows) => rows[0]?.retired === true)
        ),

      loadManifest: (found) =>
        Effect.gen(function*() {
          const artifacts = yield* sql<ArtifactRow>`
            SELECT * FROM release_artifacts WHERE version_id = ${found.version.id}
            ORDER BY variant COLLATE "C", operating_system COLLATE "C", architecture COLLATE "C",
                     format COLLATE "C", id`
          const attachments = yield* sql<AttachmentRow>`
            SELECT t.* FROM artifact_attachments t
            JOIN release_artifacts a ON a.id = t.artifact_id
            WHERE a.version_id = ${found.version.id}
            ORDER BY t.name COLLATE "C", t.id`
          return {
            image: found.image,
            version: found.version,
            artifacts: artifacts.map((artifact) => ({
              artifact,
              attachments: attachments.filter((t) => t.artifact_id === artifact.id)
            }))
          }
        }),

      listArtifacts: (versionId) =>
        sql<ArtifactRow>`
          SELECT * FROM release_artifacts WHERE version_id = ${versionId}
          ORDER BY variant COLLATE "C", operating_system COLLATE "C", architecture COLLATE "C",
                   format COLLATE "C", id`,

      listPublishedArtifacts: (name, version, after, limit) =>
        // One row per artifact, or one row of NULLs for a published version without any
        // (a published version always has one; the LEFT JOIN keeps the answer exact anyway).
        sql<{ readonly found_state: string } & { readonly [K in keyof ArtifactRow]: ArtifactRow[K] | null }>`
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
          LIMIT ${limit}`.pipe(
          Effect.map((rows) => {
            if (rows.length === 0 || rows[0]!.found_state !== "published") return Option.none()
            const artifacts: Array<ArtifactRow> = []
            for (const { found_state: _, ...row } of rows) {
              if (row.id !== null) artifacts.push(row as ArtifactRow)
            }
            return Option.some(artifacts)
          })
        ),

      findArtifact: (versionId, artifactId) =>
        sql<ArtifactRow>`SELECT * FROM release_artifacts WHERE id = ${artifactId} AND version_id = ${versionId}`.pipe(
          Effect.map(first)
        ),

      insertArtifact: (a) =>
        classifyConstraint(sql<ArtifactRow>`
          INSERT INTO release_artifacts (
            id, version_id, variant, operating_system, architecture, format,
            primary_blob_digest, primary_blob_size_bytes, primary_media_type
          ) VALUES (
            ${a.id}, ${a.versionId}, ${a.variant}, ${a.operatingSystem}, ${a.architecture}, ${a.format},
            ${a.primaryBlobDigest}, ${a.primaryBlobSizeBytes}, ${a.primaryMediaType}
          )
          RETURNING *`).pipe(Effect.map((rows) => rows[0]!)),

      deleteArtifact: (versionId, artifactId) =>
        classifyConstraint(sql<{ id: string }>`
          DELETE FROM release_artifacts WHERE id = ${artifactId} AND version_id = ${versionId} RETURNING id`).pipe(
          Effect.map((rows) => rows.length > 0)
        ),

      findAttachment: (artifactId, attachmentId) =>
        sql<AttachmentRow>`
          SELECT * FROM artifact_attachments WHERE id = ${attachmentId} AND artifact_id = ${artifactId}`.pipe(
          Effect.map(first)
        ),

      insertAttachment: (t) =>
        classifyConstraint(sql<AttachmentRow>`
          INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
          VALUES (${t.id}, ${t.artifactId}, ${t.name}, ${t.mediaType}, ${t.blobDigest}, ${t.blobSizeBytes})
          RETURNING *`).pipe(Effect.map((rows) => rows[0]!)),

      deleteAttachment: (artifactId, attachmentId) =>
        classifyConstraint(sql<{ id: string }>`
          DELETE FROM artifact_attachments WHERE id = ${attachmentId} AND artifact_id = ${artifactId}
          RETURNING id`).pipe(Effect.map((rows) => rows.length > 0)),

      lockImage: (name) => sql<ImageRow>`SELECT * FROM images WHERE name = ${name} FOR UPDATE`.pipe(Effect.map(first)),

      lockVersionsOf: (imageId) =>
        sql<VersionRow>`
          SELECT * FROM image_versions WHERE image_id = ${imageId}
          ORDER BY version COLLATE "C", id FOR UPDATE`,

      deleteVersions: (versionIds) =>
        classifyConstraint(Effect.gen(function*() {
          // Attachments go with their artifacts (ON DELETE CASCADE), steps with their jobs.
          yield* sql`DELETE FROM release_artifacts WHERE version_id = ANY(${versionIds}::uuid[])`
          yield* sql`DELETE FROM publish_jobs WHERE version_id = ANY(${versionIds}::uuid[])`
          yield* sql`DELETE FROM image_versions WHERE id = ANY(${versionIds}::uuid[])`
        })),

      deleteImage: (imageId) =>
        classifyConstraint(Effect.gen(function*() {
          yield* sql`DELETE FROM aliases WHERE image_id = ${imageId}`
          yield* sql`DELETE FROM images WHERE id = ${imageId}`
        })),

      upsertAlias: (alias) =>
        classifyConstraint(sql<AliasRow>`
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
          FROM upserted u JOIN image_versions v ON v.id = u.version_id`).pipe(Effect.map((rows) => rows[0]!)),

      listAliases: (imageId) => aliasSelect(sql`a.image_id = ${imageId}`),

      listAliasesPage: (imageId, after, limit) =>
        sql<AliasRow>`
          SELECT a.id, a.image_id, a.alias, a.version_id, v.version, a.created_at, a.updated_at
          FROM aliases a JOIN image_versions v ON v.id = a.version_id
          WHERE a.image_id = ${imageId} AND ${
          Option.match(after, {
            onNone: () => sql.literal("TRUE"),
            onSome: (key) => sql`(a.alias COLLATE "C", a.id) > (${key.alias} COLLATE "C", ${key.id}::uuid)`
          })
        }
          ORDER BY a.alias COLLATE "C", a.id
          LIMIT ${limit}`,

      findAlias: (imageId, alias) =>
        aliasSelect(sql`a.image_id = ${imageId} AND a.alias = ${alias}`).pipe(Effect.map(first)),

      deleteAlias: (imageId, alias) =>
        sql<{ id: string }>`DELETE FROM aliases WHERE image_id = ${imageId} AND alias = ${alias} RETURNING id`.pipe(
          Effect.map((rows) => rows.length > 0)
        ),

      lockAliasesOf: (imageId) => sql`SELECT id FROM images WHERE id = ${imageId} FOR NO KEY UPDATE`.pipe(Effect.asVoid)
    })
  })
)
