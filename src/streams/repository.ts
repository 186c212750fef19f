import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Context, Effect, Layer } from "effect"
import type { ArtifactId, ImageId, VersionId } from "../catalog/schema.js"
import type { RootFtype } from "./schema.js"

/** SQL of the Simple Streams read side (domain.md §5.2). No rules here. */

/** A projection row of a published version (one Incus image), joined with what the documents show. */
export interface StreamRow {
  readonly artifact_id: ArtifactId
  readonly version_id: VersionId
  readonly image_id: ImageId
  readonly image_name: string
  readonly display_name: string | null
  readonly version: string
  readonly published_at: Date | null
  readonly created_at: Date
  readonly operating_system: string
  readonly architecture: string
  readonly variant: string
  readonly metadata_path: string
  readonly metadata_sha256: string
  readonly metadata_size_bytes: number
  readonly root_ftype: RootFtype
  readonly root_path: string
  readonly root_sha256: string
  readonly root_size_bytes: number
  /** sha256(metadata ‖ root): the image fingerprint. */
  readonly combined_sha256: string
}

export interface AliasTarget {
  readonly version_id: VersionId
  readonly alias: string
}

/** Everything the documents are rendered from, read in one snapshot, and the catalog generation it shows. */
export interface StreamsSnapshotRows {
  readonly generation: number
  readonly rows: ReadonlyArray<StreamRow>
  readonly aliases: ReadonlyArray<AliasTarget>
}

export class StreamsRepository extends Context.Tag("imgsrv/StreamsRepository")<StreamsRepository, {
  /**
   * Projection rows of published, not yanked versions (rows of a version still publishing
   * or yanked stay invisible) and every alias with the version it targets, with the catalog generation,
   * all from one REPEATABLE READ snapshot: the rendering of these rows is exactly the
   * documents of that generation (migrations/0006_catalog_generation.sql).
   */
  readonly snapshot: Effect.Effect<StreamsSnapshotRows, SqlError.SqlError>
  /** The catalog generation committed now (one small row). */
  readonly generation: Effect.Effect<number, SqlError.SqlError>
}>() {}

export const StreamsRepositoryLive = Layer.effect(
  StreamsRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const publishedRows = sql<StreamRow>`
        SELECT p.artifact_id, p.version_id, i.id AS image_id, i.name AS image_name, i.display_name,
               v.version, v.published_at, v.created_at,
               a.operating_system, a.architecture, a.variant,
               p.metadata_path, p.metadata_sha256, p.metadata_size_bytes,
               p.root_ftype, p.root_path, p.root_sha256, p.root_size_bytes, p.combined_sha256
        FROM incus_projection_items p
        JOIN image_versions v ON v.id = p.version_id AND v.state = 'published' AND v.yanked_at IS NULL
        JOIN images i ON i.id = v.image_id
        JOIN release_artifacts a ON a.id = p.artifact_id
        ORDER BY i.name COLLATE "C", v.version COLLATE "C", a.variant COLLATE "C",
                 a.architecture COLLATE "C", p.root_ftype COLLATE "C", p.artifact_id`
    const aliases = sql<AliasTarget>`SELECT version_id, alias FROM aliases ORDER BY alias COLLATE "C", id`
    const generation = sql<{ generation: number }>`SELECT generation FROM catalog_generation`.pipe(
      Effect.map((found) => found[0]?.generation ?? 0)
    )
    return StreamsRepository.of({
      snapshot: sql.withTransaction(Effect.gen(function*() {
        // Must be the transaction's first statement: it fixes the snapshot every read below shares.
        yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`
        return { generation: yield* generation, rows: yield* publishedRows, aliases: yield* aliases }
      })),
      generation
    })
  })
)
