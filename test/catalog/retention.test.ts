import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CatalogGroup } from "../../src/catalog/api.js"
import { PublishedManifests, PublishedManifestsLive } from "../../src/catalog/manifest-cache.js"
import { CatalogRepositoryLive } from "../../src/catalog/repository.js"
import type { ImageVersion, VersionList } from "../../src/catalog/schema.js"
import { AppConfig } from "../../src/platform/config/config.js"
import { apiOf, makeRouteTable } from "../../src/platform/http/routes.js"
import { DatabaseLive } from "../../src/platform/storage/database.js"
import { RetentionRepositoryLive } from "../../src/retention/repository.js"
import type { RetentionPreview, RetentionRules } from "../../src/retention/schema.js"
import { Retention, RetentionLive } from "../../src/retention/service.js"
import { seedBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { createImage, expectProblem, expectStatus, publishVersion } from "./fixtures.js"

/**
 * Retention rules (docs/lifecycle.md): PUT/GET/preview, and the worker doing exactly what
 * the preview listed, never touching a version an alias points at. The app's own loop is
 * off here so that a run happens exactly when the test says (`runOnce` is what the loop
 * calls); the last test runs the real loop.
 */

const encoder = new TextEncoder()

interface EventJson {
  readonly type: string
  readonly data: Record<string, unknown>
}

describe("retention rules", () => {
  let app: TestApp
  let writer: string
  let worker: ManagedRuntime.ManagedRuntime<Retention | PublishedManifests, unknown>
  const runOnce = () => worker.runPromise(Effect.flatMap(Retention, (r) => r.runOnce))
  /** Runs until no image is due (other tests' images may be due too); how many runs worked. */
  const runDue = async () => {
    let worked = 0
    while ((await runOnce()) === "worked") worked += 1
    return worked
  }

  beforeAll(async () => {
    app = await startTestApp({
      settings: { "publish-worker-poll-interval": "50ms", "retention-enabled": "false" }
    })
    writer = await app.tokenFor("content-writer")
    // The service the loop runs, on the same database: a second replica's worker.
    worker = ManagedRuntime.make(
      RetentionLive.pipe(
        Layer.provideMerge(PublishedManifestsLive(makeRouteTable(apiOf(CatalogGroup)))),
        Layer.provide(Layer.merge(RetentionRepositoryLive, CatalogRepositoryLive)),
        Layer.provide(DatabaseLive({ url: Redacted.make(app.databaseUrl), maxConnections: 3 })),
        Layer.provide(Layer.succeed(AppConfig, app.config))
      )
    )
  })
  afterAll(async () => {
    await worker?.dispose()
    await app?.close()
  })

  const publish = async (name: string, version: string) => {
    const disk = await seedBlob(app, encoder.encode(`${name} ${version} ${randomBytes(4).toString("hex")}`))
    await publishVersion(app, writer, { name, version, artifacts: [{ blob: disk }] })
  }
  /** `token` null: no Authorization header. */
  const putRules = (name: string, json: unknown, token: string | null = writer) =>
    app.request("PUT", `/v1/images/${name}/retention`, { ...(token !== null ? { token } : {}), json })
  const preview = async (name: string) =>
    expectStatus<RetentionPreview>(
      await app.request("GET", `/v1/images/${name}/retention/preview`, { token: writer }),
      200
    )
  const allVersions = async (name: string) =>
    (await expectStatus<VersionList>(
      await app.request("GET", `/v1/images/${name}/versions?include_yanked=true`),
      200
    )).versions
  const setAlias = async (name: string, alias: string, version: string) =>
    expectStatus(
      await app.request("PUT", `/v1/images/${name}/aliases/${alias}`, { token: writer, json: { version } }),
      200
    )

  it("PUT stores the rules (due at once), GET shows them; 404 before any are set", async () => {
    await createImage(app, writer, "ret-crud")
    await expectProblem(await app.request("GET", "/v1/images/ret-crud/retention", { token: writer }), 404)
    await expectProblem(await app.request("GET", "/v1/images/ret-crud/retention/preview", { token: writer }), 404)
    const put = await expectStatus<RetentionRules>(
      await putRules("ret-crud", { keep_last: 3, yank_older_than: "90d", retire_yanked_after: "30d" }),
      200
    )
    expect(put).toMatchObject({ image: "ret-crud", keep_last: 3, yank_older_than: "90d", retire_yanked_after: "30d" })
    expect(put).not.toHaveProperty("last_run_at")
    const got = await expectStatus<RetentionRules>(
      await app.request("GET", "/v1/images/ret-crud/retention", { token: writer }),
      200
    )
    expect(got).toEqual(put)
    // Replacing: members left out are unset.
    const replaced = await expectStatus<RetentionRules>(await putRules("ret-crud", { keep_last: 5 }), 200)
    expect(replaced).toMatchObject({ keep_last: 5 })
    expect(replaced).not.toHaveProperty("yank_older_than")
    expect(replaced).not.toHaveProperty("retire_yanked_after")
  })

  it("validates the rules (typed 400s), the image (404) and the caller (401/403)", async () => {
    await createImage(app, writer, "ret-invalid")
    for (
      const [body, field] of [
        [{ yank_older_than: "90 days" }, "yank_older_than"],
        [{ yank_older_than: "1.5d" }, "yank_older_than"],
        [{ retire_yanked_after: "-1d" }, "retire_yanked_after"],
        [{ retire_yanked_after: "" }, "retire_yanked_after"],
        [{ keep_last: -1 }, "keep_last"],
        [{ keep_last: 2.5 }, "keep_last"],
        [{ keep_last: "3" }, "keep_last"],
        [{ keep: 3 }, "keep"]
      ] as const
    ) {
      const problem = await expectProblem(await putRules("ret-invalid", body), 400)
      expect(problem.detail, JSON.stringify(body)).toContain(field)
    }
    await expectProblem(await putRules("no-such-image", { keep_last: 1 }), 404)
    await expectProblem(await putRules("Bad_Name", { keep_last: 1 }), 400)
    await expectProblem(await putRules("ret-invalid", { keep_last: 1 }, null), 401)
    await expectProblem(await putRules("ret-invalid", { keep_last: 1 }, await app.tokenFor("auth-manager")), 403)
  })

  it("the preview lists exactly what the next run does; aliased versions survive", async () => {
    for (const version of ["1", "2", "3", "4", "5", "6"]) await publish("ret-plan", version)
    await setAlias("ret-plan", "stable", "1")
    await setAlias("ret-plan", "lts", "3")
    await expectStatus(
      await app.request("POST", "/v1/images/ret-plan/versions/2/yank", { token: writer, json: { reason: "manual" } }),
      200
    )
    await expectStatus(await putRules("ret-plan", { keep_last: 2, retire_yanked_after: "0s" }), 200)

    const planned = await preview("ret-plan")
    // Newest live versions 6, 5 are kept; 3 and 1 carry aliases; 2 was yanked before the run.
    expect(planned.yank.map((y) => y.version)).toEqual(["4"])
    expect(planned.yank[0]!.reason).toBe("retention: not among the newest 2")
    expect(planned.retire.map((r) => r.version)).toEqual(["2"])

    const before = await allVersions("ret-plan")
    expect(await runDue()).toBeGreaterThanOrEqual(1)
    const after = await allVersions("ret-plan")

    const yankedNow = after.filter((v) =>
      v.yanked === true && before.find((b) => b.version === v.version)?.yanked !== true
    )
    const gone = before.filter((b) => !after.some((v) => v.version === b.version))
    expect(yankedNow.map((v) => v.version)).toEqual(planned.yank.map((y) => y.version))
    expect(yankedNow.map((v) => v.yank_reason)).toEqual(planned.yank.map((y) => y.reason))
    expect(gone.map((v) => v.version)).toEqual(planned.retire.map((r) => r.version))
    // Aliased versions survive, untouched.
    for (const version of ["1", "3"]) {
      const survivor = after.find((v) => v.version === version) as ImageVersion
      expect(survivor).toBeDefined()
      expect(survivor).not.toHaveProperty("yanked")
    }
    expect(
      (await expectStatus<RetentionRules>(
        await app.request("GET", "/v1/images/ret-plan/retention", { token: writer }),
        200
      )).last_run_at
    ).toMatch(/Z$/)

    // The run recorded its events like a manual yank or retire.
    const feed = await expectStatus<{ events: ReadonlyArray<EventJson> }>(
      await app.request("GET", "/v1/events?limit=1000", { token: writer }),
      200
    )
    const mine = feed.events.filter((e) => e.data["image"] === "ret-plan" && e.type !== "version.published")
      .map((e) => `${e.type} ${(e.data["version"] as { version: string } | undefined)?.version ?? ""}`)
    expect(mine).toContain("version.yanked 4")
    expect(mine).toContain("version.retired 2")

    // Not due again before --retention-interval (1h): the next run finds nothing to do.
    expect(await runOnce()).toBe("idle")
  })

  it("yank_older_than yanks versions published longer ago than the duration, newest N kept", async () => {
    await publish("ret-age", "1")
    await publish("ret-age", "2")
    await publish("ret-age", "3")
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await publish("ret-age", "4")
    await expectStatus(await putRules("ret-age", { keep_last: 1, yank_older_than: "1s" }), 200)
    const planned = await preview("ret-age")
    // 4 is too young; 3 is the newest live one older than 1s but keep_last keeps only 4.
    expect(planned.yank.map((y) => y.version)).toEqual(["3", "2", "1"])
    expect(planned.retire).toEqual([])
    expect(await runDue()).toBeGreaterThanOrEqual(1)
    expect((await allVersions("ret-age")).filter((v) => v.yanked === true).map((v) => v.version).sort()).toEqual(
      planned.yank.map((y) => y.version).sort()
    )
  })

  it("a run that yanks empties its replica's published-manifest cache at once", async () => {
    await publish("ret-cache", "1")
    await publish("ret-cache", "2")
    const cached = () => worker.runPromise(Effect.map(PublishedManifests, (m) => m.peek("ret-cache", "1")))
    await worker.runPromise(Effect.flatMap(PublishedManifests, (m) => m.get("ret-cache", "1")))
    expect((await cached())?.rows.version.yanked_at ?? null).toBeNull()
    await expectStatus(await putRules("ret-cache", { keep_last: 1 }), 200)
    expect(await runDue()).toBeGreaterThanOrEqual(1)
    // Not waiting for the published-epoch poll (1 s): the run itself emptied it.
    expect(await cached()).toBeUndefined()
  })

  it("two workers never run one image's rules at once (FOR UPDATE SKIP LOCKED)", async () => {
    for (const version of ["1", "2", "3"]) await publish("ret-race", version)
    await runDue()
    await expectStatus(await putRules("ret-race", { keep_last: 1 }), 200)
    const outcomes = await Promise.all([runOnce(), runOnce(), runOnce()])
    expect(outcomes.filter((o) => o === "worked")).toHaveLength(1)
    const feed = await expectStatus<{ events: ReadonlyArray<EventJson> }>(
      await app.request("GET", "/v1/events?limit=1000", { token: writer }),
      200
    )
    expect(feed.events.filter((e) => e.data["image"] === "ret-race" && e.type === "version.yanked")).toHaveLength(2)
  })

  it("the background loop applies the rules on its own", async () => {
    const looping = await startTestApp({
      settings: { "publish-worker-poll-interval": "50ms", "retention-interval": "200ms" }
    })
    try {
      const token = await looping.tokenFor("content-writer")
      for (const version of ["1", "2", "3"]) {
        const disk = await seedBlob(looping, encoder.encode(`loop ${version} ${randomBytes(4).toString("hex")}`))
        await publishVersion(looping, token, { name: "ret-loop", version, artifacts: [{ blob: disk }] })
      }
      await expectStatus(
        await looping.request("PUT", "/v1/images/ret-loop/aliases/stable", { token, json: { version: "1" } }),
        200
      )
      await expectStatus(
        await looping.request("PUT", "/v1/images/ret-loop/retention", { token, json: { keep_last: 0 } }),
        200
      )
      const deadline = Date.now() + 10_000
      let listed: ReadonlyArray<string> = []
      while (Date.now() < deadline) {
        const list = await expectStatus<VersionList>(await looping.request("GET", "/v1/images/ret-loop/versions"), 200)
        listed = list.versions.map((v) => v.version)
        if (listed.length === 1) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(listed).toEqual(["1"])
    } finally {
      await looping.close()
    }
  })

  it("the OpenAPI document lists the retention routes", async () => {
    const doc = await expectStatus<{ paths: Record<string, Record<string, unknown>> }>(
      await app.request("GET", "/openapi.json"),
      200
    )
    expect(Object.keys(doc.paths["/v1/images/{name}/retention"] ?? {}).sort()).toEqual(["get", "put"])
    expect(Object.keys(doc.paths["/v1/images/{name}/retention/preview"] ?? {})).toEqual(["get"])
  })
})
