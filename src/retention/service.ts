import { SqlClient } from "@effect/sql"
import { Clock, Context, Duration, Effect, Layer, Metric, MetricLabel, Option } from "effect"
import { ImageNotFound } from "../catalog/errors.js"
import { PublishedManifests } from "../catalog/manifest-cache.js"
import { CatalogRepository } from "../catalog/repository.js"
import type { ImageId } from "../catalog/schema.js"
import { type ImageRow, type VersionRow } from "../catalog/schema.js"
import { retireLocked, yankLocked } from "../catalog/service.js"
import { AppConfig } from "../platform/config/config.js"
import { withLinkedSpan } from "../platform/observability/tracing.js"
import type { RunOutcome } from "../platform/worker.js"
import { RetentionRepository } from "./repository.js"
import {
  type DueRetentionRules,
  durationMillis,
  RetentionRulesNotFound,
  type RetentionRulesRequest,
  type RetentionRulesRow
} from "./schema.js"

/**
 * Retention rules (docs/lifecycle.md). One pure function, `planRetention`, decides what a
 * run does; the preview shows its answer and the worker carries it out, so the preview is
 * exactly what the next run does (given the same versions, aliases and time).
 */

export interface RetentionPlan {
  /** Published, not yanked versions to yank, newest first, with the recorded reason. */
  readonly yank: ReadonlyArray<{ readonly version: VersionRow; readonly reason: string }>
  /** Yanked versions to retire, newest first. */
  readonly retire: ReadonlyArray<VersionRow>
}

/** Newest first: publication time, then creation time, then version (code points), then id. */
const newestFirst = (a: VersionRow, b: VersionRow): number =>
  (b.published_at?.getTime() ?? 0) - (a.published_at?.getTime() ?? 0) ||
  b.created_at.getTime() - a.created_at.getTime() ||
  (a.version < b.version ? -1 : a.version > b.version ? 1 : 0) ||
  (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/**
 * What one run of `rules` does to an image's `versions` at `now` (epoch ms):
 * - yank: a published, not yanked version that is not among the newest `keep_last` of them
 *   (when set) and was published more than `yank_older_than` ago (when set); with neither
 *   rule set, nothing is yanked;
 * - retire: a version yanked more than `retire_yanked_after` ago (when set), whoever yanked it;
 * - never a version an alias points at (in `aliased`, by version id).
 * Versions yanked by a run are retired by a later run, once `retire_yanked_after` has passed.
 */
export const planRetention = (
  rules: Pick<RetentionRulesRow, "keep_last" | "yank_older_than" | "retire_yanked_after">,
  versions: ReadonlyArray<VersionRow>,
  aliased: ReadonlySet<string>,
  now: number
): RetentionPlan => {
  const published = versions.filter((v) => v.state === "published").sort(newestFirst)
  const live = published.filter((v) => v.yanked_at === null)
  const yank: Array<{ readonly version: VersionRow; readonly reason: string }> = []
  if (rules.keep_last !== null || rules.yank_older_than !== null) {
    const cutoff = rules.yank_older_than === null ? undefined : now - durationMillis(rules.yank_older_than)
    live.forEach((version, index) => {
      if (aliased.has(version.id)) return
      if (rules.keep_last !== null && index < rules.keep_last) return
      if (cutoff !== undefined && (version.published_at === null || version.published_at.getTime() > cutoff)) return
      const why = [
        ...(rules.keep_last !== null ? [`not among the newest ${rules.keep_last}`] : []),
        ...(rules.yank_older_than !== null ? [`published more than ${rules.yank_older_than} ago`] : [])
      ]
      yank.push({ version, reason: `retention: ${why.join(" and ")}` })
    })
  }
  const retire: Array<VersionRow> = []
  if (rules.retire_yanked_after !== null) {
    const cutoff = now - durationMillis(rules.retire_yanked_after)
    for (const version of published) {
      if (version.yanked_at === null || aliased.has(version.id)) continue
      if (version.yanked_at.getTime() <= cutoff) retire.push(version)
    }
  }
  return { yank, retire }
}

const retentionActions = Metric.counter("imgsrv_retention_actions_total", {
  description: "Versions the retention worker yanked or retired, by action.",
  incremental: true
})
const actionLabel = (action: "yank" | "retire") => [MetricLabel.make("action", action)]

/** Makes both series exist at 0 (an `increase(...)` alert then sees the first action). */
export const initRetentionMetrics = Effect.all([
  Metric.incrementBy(Metric.taggedWithLabels(retentionActions, actionLabel("yank")), 0),
  Metric.incrementBy(Metric.taggedWithLabels(retentionActions, actionLabel("retire")), 0)
])

export class Retention extends Context.Tag("imgsrv/Retention")<Retention, {
  readonly getRules: (
    name: string
  ) => Effect.Effect<
    { readonly image: ImageRow; readonly rules: RetentionRulesRow },
    ImageNotFound | RetentionRulesNotFound
  >
  readonly putRules: (
    name: string,
    request: RetentionRulesRequest
  ) => Effect.Effect<{ readonly image: ImageRow; readonly rules: RetentionRulesRow }, ImageNotFound>
  /** What the next run would do now. */
  readonly preview: (name: string) => Effect.Effect<RetentionPlan, ImageNotFound | RetentionRulesNotFound>
  /** Applies the rules of at most one due image: `worked` when it ran them, `idle` when none is due. */
  readonly runOnce: Effect.Effect<RunOutcome>
}>() {}

export const RetentionLive = Layer.effect(
  Retention,
  Effect.gen(function*() {
    const repo = yield* RetentionRepository
    const catalog = yield* CatalogRepository
    const manifests = yield* PublishedManifests
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const interval = Duration.toMillis(config.retention.interval)

    const findImage = (name: string) =>
      catalog.findImage(name).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new ImageNotFound({ name })),
          onSome: Effect.succeed
        }))
      )

    const findRules = (image: ImageRow) =>
      repo.findRules(image.id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new RetentionRulesNotFound({ name: image.name })),
          onSome: Effect.succeed
        }))
      )

    const aliasedVersions = (imageId: ImageId) =>
      catalog.listAliases(imageId).pipe(Effect.map((aliases) => new Set(aliases.map((a) => a.version_id))))

    /** One run for a claimed image, in the claim's transaction. */
    const apply = (rules: DueRetentionRules) =>
      Effect.gen(function*() {
        // The image row first (as alias changes and yanks lock it), then its versions.
        yield* catalog.lockAliasesOf(rules.image_id)
        const versions = yield* catalog.lockVersionsOf(rules.image_id)
        const aliased = yield* aliasedVersions(rules.image_id)
        const now = yield* Clock.currentTimeMillis
        const plan = planRetention(rules, versions, aliased, now)
        for (const { reason, version } of plan.yank) {
          // Aliased versions are not in the plan, and alias changes wait for the image lock.
          yield* yankLocked(catalog, sql, rules.image_name, version, reason).pipe(
            Effect.catchTag("VersionAliased", Effect.die)
          )
        }
        for (const version of plan.retire) yield* retireLocked(catalog, sql, rules.image_name, version)
        yield* repo.markRun(rules.image_id, new Date(now), new Date(now + interval))
        return plan
      })

    const runOnce = Effect.gen(function*() {
      const now = new Date(yield* Clock.currentTimeMillis)
      // Whatever fails inside rolls the run back, and a failing database is a defect (the
      // loop logs it and backs off like any error).
      const result = yield* repo.transaction(Effect.gen(function*() {
        const due = yield* repo.claimDue(now)
        if (Option.isNone(due)) return Option.none()
        const plan = yield* apply(due.value).pipe(
          withLinkedSpan("retention.run", null, { "imgsrv.image.name": due.value.image_name })
        )
        return Option.some({ image: due.value.image_name, plan })
      }))
      if (Option.isNone(result)) return "idle" as const
      const { image, plan } = result.value
      // This replica stops answering changed manifests from memory at once (the others when
      // they see the published epoch move, as after an API yank).
      if (plan.yank.length > 0 || plan.retire.length > 0) yield* manifests.clear
      // Counted after the commit: a rolled-back run did nothing.
      yield* Metric.incrementBy(Metric.taggedWithLabels(retentionActions, actionLabel("yank")), plan.yank.length)
      yield* Metric.incrementBy(Metric.taggedWithLabels(retentionActions, actionLabel("retire")), plan.retire.length)
      yield* Effect.logInfo("retention run").pipe(
        Effect.annotateLogs({
          image,
          yanked: plan.yank.length,
          retired: plan.retire.length,
          ...(plan.yank.length > 0 ? { yanked_versions: plan.yank.map((y) => y.version.version).join(",") } : {}),
          ...(plan.retire.length > 0 ? { retired_versions: plan.retire.map((v) => v.version).join(",") } : {})
        })
      )
      return "worked" as const
    }).pipe(Effect.annotateLogs({ component: "retention" }))

    return Retention.of({
      getRules: (name) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          return { image, rules: yield* findRules(image) }
        }).pipe(Effect.withSpan("retention.getRules")),

      putRules: (name, request) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          const rules = yield* repo.upsertRules({
            imageId: image.id,
            keepLast: request.keep_last ?? null,
            yankOlderThan: request.yank_older_than ?? null,
            retireYankedAfter: request.retire_yanked_after ?? null
          })
          yield* Effect.logInfo("retention rules set").pipe(Effect.annotateLogs({ image: name, ...request }))
          return { image, rules }
        }).pipe(Effect.withSpan("retention.putRules")),

      preview: (name) =>
        Effect.gen(function*() {
          const image = yield* findImage(name)
          const rules = yield* findRules(image)
          const versions = yield* catalog.listPublishedVersionsPage(image.id, Option.none(), null, true)
          const aliased = yield* aliasedVersions(image.id)
          return planRetention(rules, versions, aliased, yield* Clock.currentTimeMillis)
        }).pipe(Effect.withSpan("retention.preview")),

      runOnce
    })
  })
)
