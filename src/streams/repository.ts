import { SqlClient, SqlSchema } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { ArtifactId, ImageId, VersionId } from "../catalog/schema.js"
import { dieOnSqlError } from "../platform/storage/sql-errors.js"

/**
 * SQL of the Simple Streams read side (domain.md §5.2). No rules here. The SQL boundary: a
 * failing database is a defect (the cache's poll and render log it and retry).
 */

/** A projection row of a published version (one Incus image), joined with what the documents show. */
export const StreamRow = Schema.Struct({
  artifact_id: ArtifactId,
  version_id: VersionId,
  image_id: ImageId,
  image_name: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  version: Schema.String,
  published_at: Schema.NullOr(Schema.DateFromSelf),
  created_at: Schema.DateFromSelf,
  operating_system: Schema.String,
  architecture: Schema.String,
  variant: Schema.String,
  metadata_path: Schema.String,
  metadata_sha256: Schema.String,
  metadata_size_bytes: Schema.Number,
  root_ftype: Schema.Literal("disk-kvm.img", "squashfs"),
  root_path: Schema.String,
  root_sha256: Schema.String,
  root_size_bytes: Schema.Number,
  /** sha256(metadata ‖ root): the image fingerprint. */
  combined_sha256: Schema.String
})
export type StreamRow = typeof StreamRow.Type

export const AliasTarget = Schema.Struct({ version_id: VersionId, alias: Schema.String })
export type AliasTarget = typeof AliasTarget.Type

const GenerationRow = Schema.Struct({ generation: Schema.Number })

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
  readonly snapshot: Effect.Effect<StreamsSnapshotRows>
  /** The catalog generation committed now (one small row). */
  readonly generation: Effect.Effect<number>
}>() {}

export const StreamsRepositoryLive = Layer.effect(
  StreamsRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const publishedRows = SqlSchema.findAll({
      Request: Schema.Void,
      Result: StreamRow,
      execute: () =>
        sql`
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
    })(undefined)
    const aliases = SqlSchema.findAll({
      Request: Schema.Void,
      Result: AliasTarget,
      execute: () => sql`SELECT version_id, alias FROM aliases ORDER BY alias COLLATE "C", id`
    })(undefined)
    const generation = SqlSchema.findOne({
      Request: Schema.Void,
      Result: GenerationRow,
      execute: () => sql`SELECT generation FROM catalog_generation`
    })(undefined).pipe(Effect.map(Option.match({ onNone: () => 0, onSome: (row) => row.generation })))
    return StreamsRepository.of({
      snapshot: sql.withTransaction(Effect.gen(function*() {
        // Must be the transaction's first statement: it fixes the snapshot every read below shares.
        yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`
        return { generation: yield* generation, rows: yield* publishedRows, aliases: yield* aliases }
      })).pipe(dieOnSqlError),
      generation: dieOnSqlError(generation)
    })
  })
)
