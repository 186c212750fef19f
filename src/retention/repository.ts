import { SqlClient, SqlSchema } from "@effect/sql"
import type { Option } from "effect"
import { Context, Effect, Layer, Schema } from "effect"
import { ImageId } from "../catalog/schema.js"
import { dieOnSqlError, type Infrastructure } from "../platform/storage/sql-errors.js"
import { DueRetentionRules, RetentionRulesRow } from "./schema.js"

/**
 * SQL of the retention rules (migrations/0008_yank_retention.sql). No rules here. Every
 * method dies on infrastructure failure (a failing database, a row its schema refuses):
 * none of them has an expected constraint failure to translate.
 */
export class RetentionRepository extends Context.Tag("imgsrv/RetentionRepository")<RetentionRepository, {
  /** Runs `effect` in one transaction (a failing BEGIN or COMMIT is a defect). */
  readonly transaction: <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, Exclude<E, Infrastructure>, R>
  readonly findRules: (imageId: ImageId) => Effect.Effect<Option.Option<RetentionRulesRow>>
  /** Creates or replaces the rules; they are due at once (`next_run_at` = now). */
  readonly upsertRules: (rules: {
    readonly imageId: ImageId
    readonly keepLast: number | null
    readonly yankOlderThan: string | null
    readonly retireYankedAfter: string | null
  }) => Effect.Effect<RetentionRulesRow>
  /**
   * The rules of one image due at `now`, locked FOR UPDATE SKIP LOCKED until the caller's
   * transaction ends (another replica skips that image meanwhile), with the image's name.
   */
  readonly claimDue: (now: Date) => Effect.Effect<Option.Option<DueRetentionRules>>
  /** Records a run at `at`; the next one is due at `next`. */
  readonly markRun: (imageId: ImageId, at: Date, next: Date) => Effect.Effect<void>
}>() {}

export const RetentionRepositoryLive = Layer.effect(
  RetentionRepository,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const findRules = SqlSchema.findOne({
      Request: ImageId,
      Result: RetentionRulesRow,
      execute: (imageId) => sql`SELECT * FROM image_retention_rules WHERE image_id = ${imageId}`
    })

    const upsertRules = SqlSchema.single({
      Request: Schema.Struct({
        imageId: ImageId,
        keepLast: Schema.NullOr(Schema.Number),
        yankOlderThan: Schema.NullOr(Schema.String),
        retireYankedAfter: Schema.NullOr(Schema.String)
      }),
      Result: RetentionRulesRow,
      execute: (rules) =>
        sql`
          INSERT INTO image_retention_rules (image_id, keep_last, yank_older_than, retire_yanked_after)
          VALUES (${rules.imageId}, ${rules.keepLast}, ${rules.yankOlderThan}, ${rules.retireYankedAfter})
          ON CONFLICT (image_id) DO UPDATE
            SET keep_last = EXCLUDED.keep_last,
                yank_older_than = EXCLUDED.yank_older_than,
                retire_yanked_after = EXCLUDED.retire_yanked_after,
                next_run_at = now(),
                updated_at = now()
          RETURNING *`
    })

    const claimDue = SqlSchema.findOne({
      Request: Schema.DateFromSelf,
      Result: DueRetentionRules,
      execute: (now) =>
        sql`
          SELECT r.*, i.name AS image_name
          FROM image_retention_rules r JOIN images i ON i.id = r.image_id
          WHERE r.next_run_at <= ${now}
          ORDER BY r.next_run_at, r.image_id
          LIMIT 1
          FOR UPDATE OF r SKIP LOCKED`
    })

    return RetentionRepository.of({
      transaction: (effect) => dieOnSqlError(sql.withTransaction(effect)),

      findRules: (imageId) => dieOnSqlError(findRules(imageId)),

      // The statement always returns its row: none at all is a defect like a failing database.
      upsertRules: (rules) => upsertRules(rules).pipe(Effect.orDie),

      claimDue: (now) => dieOnSqlError(claimDue(now)),

      markRun: (imageId, at, next) =>
        sql`
          UPDATE image_retention_rules SET last_run_at = ${at}, next_run_at = ${next}
          WHERE image_id = ${imageId}`.pipe(Effect.asVoid, dieOnSqlError)
    })
  })
)
