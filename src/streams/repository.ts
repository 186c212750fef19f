import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Context, Effect, Layer } from "effect"
import type { RootFtype } from "./schema.js"

/** SQL of the Simple Streams read side (domain.md §5.2). No rules here. */

/** A projection row of a published version (one Incus image), joined with what the documents show. */
export interface StreamRow {
  readonly artifact_id: string
  readonly version_id: string
  readonly image_id: string
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
  readonly version_id: string
  readonly alias: string
}

export class StreamsRepository extends Context.Tag("imgsrv/StreamsRepository")<StreamsRepository, {
  /** Projection rows of published versions only: rows of a version still publishing stay invisible. */
  readonly publishedRows: Effect.Effect<ReadonlyArray<StreamRow>, SqlError.SqlError>
  /** Every alias and the version it currently targets (read live, per request). */
  readonly aliases: Effect.Effect<ReadonlyArray<AliasTarget>, SqlError.SqlError>
}>() {}

export const StreamsRepositoryLive = Layer.effect(
  StreamsRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return StreamsRepository.of({
      publishedRows: sql<StreamRow>`
        SELECT p.artifact_id, p.version_id, i.id AS image_id, i.name AS image_name, i.display_name,
               v.version, v.published_at, v.created_at,
               a.operating_system, a.architecture, a.variant,
               p.metadata_path, p.metadata_sha256, p.metadata_size_bytes,
               p.root_ftype, p.root_path, p.root_sha256, p.root_size_bytes, p.combined_sha256
        FROM incus_projection_items p
        JOIN image_versions v ON v.id = p.version_id AND v.state = 'published'
        JOIN images i ON i.id = v.image_id
        JOIN release_artifacts a ON a.id = p.artifact_id
        ORDER BY i.name COLLATE "C", v.version COLLATE "C", a.variant COLLATE "C",
                 a.architecture COLLATE "C", p.root_ftype COLLATE "C", p.artifact_id`,
      aliases: sql<AliasTarget>`SELECT version_id, alias FROM aliases ORDER BY alias COLLATE "C", id`
    })
  })
)
