import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Manifest } from "../../src/catalog/schema.js"
import type { PublishJob } from "../../src/publishing/schema.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  createImage,
  expectProblem,
  expectStatus,
  startPublish,
  waitForJob
} from "../catalog/fixtures.js"
import {
  describeBlob,
  removeBlobBytes,
  restoreBlobBytes,
  seedBlob,
  type SeededBlob,
  withDatabase
} from "../support/blobs.js"
import { startTestApp, type StoreKind, type TestApp } from "../support/harness.js"
import { startOtlpReceiver } from "../support/otlp-receiver.js"

/**
 * Publishing through HTTP (api.md §2.9, §3.2–3.3): the synchronous publish and its
 * 412s, the job and its three steps, failure with `failed_step`, retry from the failed
 * step, and the in-process wake-up of the worker.
 */

const encoder = new TextEncoder()
const stepsOf = (job: PublishJob) => job.steps.map((s) => [s.name, s.state, s.attempt_count] as const)

describe("publish", () => {
  let app: TestApp
  let token: string
  let disk: SeededBlob
  let meta: SeededBlob

  beforeAll(async () => {
    app = await startTestApp()
    token = await app.tokenFor("content-writer")
    disk = await seedBlob(app, encoder.encode("qcow2 disk bytes"))
    meta = await seedBlob(app, encoder.encode("incus metadata bytes"))
  })
  afterAll(async () => app?.close())

  it("answers 202 with a queued job (id = job_id, steps 10/20/30) that the worker drives to succeeded", async () => {
    await createImage(app, token, "pub")
    await createDraft(app, token, "pub", "1.0")
    const artifact = await addArtifact(app, token, "pub", "1.0", { blob: disk })
    await addAttachment(app, token, "pub", "1.0", artifact.id, { name: "incus.tar.xz", blob: meta })
    const before = await expectStatus<Manifest>(await app.request("GET", "/v1/images/pub/versions/1.0"), 200)

    const queued = await startPublish(app, token, "pub", "1.0")
    expect(queued).toMatchObject({ job_id: queued.id, image_name: "pub", version: "1.0", state: "queued" })
    expect(queued.version_id).toBe(before.version.id)
    expect(queued).not.toHaveProperty("started_at")
    expect(queued).not.toHaveProperty("failed_step")
    expect(queued.steps.map((s) => [s.name, s.sequence, s.state, s.attempt_count, s.blocking])).toEqual([
      ["validate_catalog", 10, "queued", 0, true],
      ["incus_index", 20, "queued", 0, true],
      ["finalize_publish", 30, "queued", 0, true]
    ])

    const done = await waitForJob(app, token, queued.id)
    expect(done.state).toBe("succeeded")
    expect(stepsOf(done)).toEqual([
      ["validate_catalog", "succeeded", 1],
      ["incus_index", "succeeded", 1],
      ["finalize_publish", "succeeded", 1]
    ])
    expect(done.started_at).toBeDefined()
    expect(done.finished_at).toBeDefined()
    expect(done).not.toHaveProperty("failure_message")

    const after = await expectStatus<Manifest>(await app.request("GET", "/v1/images/pub/versions/1.0"), 200)
    expect(after.version.state).toBe("published")
    expect(after.version.published_at).toBeDefined()
    expect(after.artifacts).toEqual(before.artifacts)
  })

  it("job reads need content.write and a UUID; unknown jobs are 404", async () => {
    const jobId = "3f2b8c1e-0000-4000-8000-000000000000"
    await expectProblem(await app.request("GET", `/v1/publish-jobs/${jobId}`), 401)
    await expectProblem(await app.request("GET", `/v1/publish-jobs/${jobId}`, { token }), 404)
    const bad = await expectProblem(await app.request("GET", "/v1/publish-jobs/42", { token }), 400)
    expect(bad.detail).toBe("publish job id must be a UUID")
    await expectProblem(await app.request("POST", `/v1/publish-jobs/${jobId}/retry`, { token }), 404)
    await expectProblem(await app.request("POST", "/v1/publish-jobs/x/retry", { token }), 400)
    await expectProblem(await app.request("POST", "/v1/images/pub/versions/1.0/publish"), 401)
  })

  it("refuses unpublishable drafts synchronously with 412, leaving them editable", async () => {
    const publish = (name: string, version: string) =>
      app.request("POST", `/v1/images/${name}/versions/${version}/publish`, { token })
    await createImage(app, token, "bad")

    await createDraft(app, token, "bad", "empty")
    expect((await expectProblem(await publish("bad", "empty"), 412)).detail).toContain("no artifacts")

    await createDraft(app, token, "bad", "missing")
    const missing = describeBlob(encoder.encode("never uploaded"))
    await addArtifact(app, token, "bad", "missing", { blob: missing })
    expect((await expectProblem(await publish("bad", "missing"), 412)).detail).toContain(missing.digest)

    await createDraft(app, token, "bad", "size")
    await addArtifact(app, token, "bad", "size", { blob: { digest: disk.digest, size: disk.size + 1 } })
    expect((await expectProblem(await publish("bad", "size"), 412)).detail).toContain(`${disk.size + 1} bytes`)

    await createDraft(app, token, "bad", "attachment")
    const ok = await addArtifact(app, token, "bad", "attachment", { blob: disk })
    await addAttachment(app, token, "bad", "attachment", ok.id, { name: "incus.tar.xz", blob: missing })
    expect((await expectProblem(await publish("bad", "attachment"), 412)).detail).toContain("attachment incus.tar.xz")

    // x86_64 and amd64 would both be the Simple Streams product bad:collide:amd64:default.
    await createDraft(app, token, "bad", "collide")
    for (const architecture of ["x86_64", "amd64"]) {
      const a = await addArtifact(app, token, "bad", "collide", { blob: disk, architecture })
      await addAttachment(app, token, "bad", "collide", a.id, { name: "incus.tar.xz", blob: meta })
    }
    expect((await expectProblem(await publish("bad", "collide"), 412)).detail).toContain("bad:collide:amd64:default")

    await expectProblem(await publish("bad", "nope"), 404)
    await expectProblem(await publish("bad", "-x"), 400)

    // Still drafts: fixing the manifest makes them publishable.
    const manifest = await expectStatus<Manifest>(await app.request("GET", "/v1/images/bad/versions/missing"), 200)
    expect(manifest.version.state).toBe("draft")
    await addArtifact(app, token, "bad", "empty", { blob: disk })
    const job = await startPublish(app, token, "bad", "empty")
    expect((await waitForJob(app, token, job.id)).state).toBe("succeeded")
    // Publishing is not idempotent: a published (or publishing) version is no draft.
    expect((await expectProblem(await publish("bad", "empty"), 412)).detail).toContain("not draft")
    const retry = await expectProblem(await app.request("POST", `/v1/publish-jobs/${job.id}/retry`, { token }), 412)
    expect(retry.detail).toContain("succeeded")
  })
})

for (const store of ["filesystem", "s3"] as const satisfies ReadonlyArray<StoreKind>) {
  describe(`a failing step (${store} store)`, () => {
    let app: TestApp
    let token: string
    let disk: SeededBlob
    let meta: SeededBlob

    beforeAll(async () => {
      app = await startTestApp({ store, settings: { "publish-worker-poll-interval": "50ms" } })
      token = await app.tokenFor("content-writer")
      disk = await seedBlob(app, encoder.encode(`disk on ${store}`))
      meta = await seedBlob(app, encoder.encode(`metadata on ${store}`))
    })
    afterAll(async () => app?.close())

    it("fails the job with failed_step incus_index; retry re-runs from that step only and succeeds", async () => {
      await removeBlobBytes(app, meta)
      await createImage(app, token, "flaky")
      await createDraft(app, token, "flaky", "1")
      const artifact = await addArtifact(app, token, "flaky", "1", { blob: disk })
      await addAttachment(app, token, "flaky", "1", artifact.id, { name: "incus.tar.xz", blob: meta })
      const queued = await startPublish(app, token, "flaky", "1")

      const failed = await waitForJob(app, token, queued.id)
      expect(failed).toMatchObject({ state: "failed", failed_step: "incus_index" })
      expect(failed.failure_message).toContain(meta.digest)
      expect(failed.reason).toBe(failed.failure_message)
      expect(failed.finished_at).toBeDefined()
      expect(stepsOf(failed)).toEqual([
        ["validate_catalog", "succeeded", 1],
        ["incus_index", "failed", 1],
        ["finalize_publish", "queued", 0]
      ])
      expect(failed.steps[1]!.failure_message).toBe(failed.failure_message)

      // The version is stuck in publishing: frozen, not aliasable, not publishable again.
      const manifest = await expectStatus<Manifest>(await app.request("GET", "/v1/images/flaky/versions/1"), 200)
      expect(manifest.version.state).toBe("publishing")
      await expectProblem(await app.request("POST", "/v1/images/flaky/versions/1/publish", { token }), 412)
      await expectProblem(
        await app.request("PUT", "/v1/images/flaky/aliases/latest", { token, json: { version: "1" } }),
        412
      )
      await expectProblem(await app.request("GET", "/v1/images/flaky/versions/1/artifacts"), 404)

      await restoreBlobBytes(app, meta)
      const requeued = await expectStatus<PublishJob>(
        await app.request("POST", `/v1/publish-jobs/${queued.id}/retry`, { token }),
        202
      )
      expect(requeued).toMatchObject({
        id: queued.id,
        job_id: queued.id,
        state: "queued",
        started_at: failed.started_at
      })
      expect(requeued).not.toHaveProperty("finished_at")
      expect(requeued).not.toHaveProperty("failure_message")
      expect(requeued).not.toHaveProperty("failed_step")
      expect(stepsOf(requeued)).toEqual([
        ["validate_catalog", "succeeded", 1],
        ["incus_index", "queued", 1],
        ["finalize_publish", "queued", 0]
      ])
      expect(requeued.steps[1]).not.toHaveProperty("failure_message")
      expect(requeued.steps[1]).not.toHaveProperty("finished_at")

      const done = await waitForJob(app, token, queued.id)
      expect(done.state).toBe("succeeded")
      // validate_catalog was not run again.
      expect(stepsOf(done)).toEqual([
        ["validate_catalog", "succeeded", 1],
        ["incus_index", "succeeded", 2],
        ["finalize_publish", "succeeded", 1]
      ])
      expect(done.steps[0]!.finished_at).toBe(failed.steps[0]!.finished_at)
      const published = await expectStatus<Manifest>(await app.request("GET", "/v1/images/flaky/versions/1"), 200)
      expect(published.version.state).toBe("published")
      const rows = await withDatabase(
        app,
        (c) =>
          c.query("SELECT count(*)::int AS n FROM incus_projection_items WHERE version_id = $1", [published.version.id])
      )
      expect(rows.rows[0].n).toBe(1)
    })
  })
}

describe("the worker loop", () => {
  it("is woken at once by a publish even with a long poll interval, and links its spans to the request", async () => {
    const receiver = await startOtlpReceiver()
    const app = await startTestApp({
      settings: { "publish-worker-poll-interval": "1h", "otel-endpoint": receiver.endpoint }
    })
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
    let jobId = ""
    try {
      const token = await app.tokenFor("content-writer")
      const disk = await seedBlob(app, encoder.encode("woken"))
      await createImage(app, token, "wake")
      await createDraft(app, token, "wake", "1")
      await addArtifact(app, token, "wake", "1", { blob: disk })
      // Give the loop time to go idle on its 1-hour sleep.
      await new Promise((resolve) => setTimeout(resolve, 300))
      const started = Date.now()
      const job = await app.request("POST", "/v1/images/wake/versions/1/publish", {
        token,
        headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }
      }).then((r) => expectStatus<PublishJob>(r, 202))
      jobId = job.id
      expect((await waitForJob(app, token, job.id, ["succeeded", "failed"], 5_000)).state).toBe("succeeded")
      expect(Date.now() - started).toBeLessThan(5_000)
    } finally {
      await app.close()
      await receiver.close()
    }
    const spans = receiver.spans()
    const steps = spans.filter((s) => s.name.startsWith("publish."))
    expect(steps.map((s) => s.name).sort(), JSON.stringify(spans.map((s) => s.name)))
      .toEqual(["publish.finalize_publish", "publish.incus_index", "publish.validate_catalog"])
    for (const step of steps) {
      expect(step.traceId).not.toBe(traceId)
      expect(step.links.map((l) => l.traceId)).toEqual([traceId])
      expect(step.attributes["imgsrv.publish.job_id"]).toBe(jobId)
    }
  })

  it("leaves jobs queued when --publish-worker-enabled=false", async () => {
    const app = await startTestApp({ settings: { "publish-worker-enabled": "false" } })
    try {
      const token = await app.tokenFor("content-writer")
      const disk = await seedBlob(app, encoder.encode("idle"))
      await createImage(app, token, "idle")
      await createDraft(app, token, "idle", "1")
      await addArtifact(app, token, "idle", "1", { blob: disk })
      const job = await startPublish(app, token, "idle", "1")
      await new Promise((resolve) => setTimeout(resolve, 500))
      const still = await app.request("GET", `/v1/publish-jobs/${job.id}`, { token }).then((r) =>
        expectStatus<PublishJob>(r, 200)
      )
      expect(still.state).toBe("queued")
      expect(stepsOf(still).every(([, state]) => state === "queued")).toBe(true)
    } finally {
      await app.close()
    }
  })
})
