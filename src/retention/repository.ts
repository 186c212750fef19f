import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Context, Effect, Layer, Option } from "effect"
import type { RetentionRulesRow } from "./schema.js"

/** SQL of the retention rules (migrations/0008_yank_retention.sql). No rules here. */
export class RetentionRepository extends Context.Tag("imgsrv/RetentionRepository")<RetentionRepository, {
  readonly findRules: (imageId: string) => Effect.Effect<Option.Option<RetentionRulesRow>, SqlError.SqlError>
  /** Creates or replaces the rules; they are due at once (`next_run_at` = now). */
  readonly upsertRules: (rules: {
    readonly imageId: string
    readonly keepLast: number | null
    readonly yankOlderThan: string | null
    readonly retireYankedAfter: string | null
  }) => Effect.Effect<RetentionRulesRow, SqlError.SqlError>
  /**
   * The rules of one image due at `now`, locked FOR UPDATE SKIP LOCKED until the caller's
   * transaction ends (another replica skips that image meanwhile), with the image's name.
   */
  readonly claimDue: (
    now: Date
  ) => Effect.Effect<Option.Option<RetentionRulesRow & { readonly image_name: string }>, SqlError.SqlError>
  /** Records a run at `at`; the next one is due at `next`. */
  readonly markRun: (imageId: string, at: Date, next: Date) => Effect.Effect<void, SqlError.SqlError>
}>() {}

export const RetentionRepositoryLive = Layer.effect(
  RetentionRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return RetentionRepository.of({
      findRules: (imageId) =>
        sql<RetentionRulesRow>`SELECT * FROM image_retention_rules WHERE image_id = ${imageId}`.pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]))
        ),

      upsertRules: (rules) =>
        sql<RetentionRulesRow>`
          INSERT INTO image_retention_rules (image_id, keep_last, yank_older_than, retire_yanked_after)
          VALUES (${rules.imageId}, ${rules.keepLast}, ${rules.yankOlderThan}, ${rules.retireYankedAfter})
          ON CONFLICT (image_id) DO UPDATE
            SET keep_last = EXCLUDED.keep_last,
                yank_older_than = EXCLUDED.yank_older_than,
                retire_yanked_after = EXCLUDED.retire_yanked_after,
                next_run_at = now(),
                updated_at = now()
          RETURNING *`.pipe(Effect.map((rows) => rows[0]!)),

      claimDue: (now) =>
        sql<RetentionRulesRow & { readonly image_name: string }>`
          SELECT r.*, i.name AS image_name
          FROM image_retention_rules r JOIN images i ON i.id = r.image_id
          WHERE r.next_run_at <= ${now}
          ORDER BY r.next_run_at, r.image_id
          LIMIT 1
          FOR UPDATE OF r SKIP LOCKED`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]))),

      markRun: (imageId, at, next) =>
        sql`
          UPDATE image_retention_rules SET last_run_at = ${at}, next_run_at = ${next}
          WHERE image_id = ${imageId}`.pipe(Effect.asVoid)
    })
  })
)
