import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Manifest } from "../../src/catalog/schema.js"
import type { PublishJob } from "../../src/publishing/schema.js"
import { query, removeBlobBytes, restoreBlobBytes, seedBlob, type SeededBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  createImage,
  expectProblem,
  expectStatus,
  publishVersion,
  startPublish,
  waitForJob
} from "./fixtures.js"

/**
 * Lifecycle, first part (docs/lifecycle.md): deleting drafts and draft-only images, and
 * abandoning a failed publish so that its version is a draft again.
 */

const encoder = new TextEncoder()

describe("lifecycle", () => {
  let app: TestApp
  let token: string
  let disk: SeededBlob
  let meta: SeededBlob

  beforeAll(async () => {
    app = await startTestApp({ settings: { "publish-worker-poll-interval": "50ms" } })
    token = await app.tokenFor("content-writer")
    disk = await seedBlob(app, encoder.encode("lifecycle disk bytes"))
    meta = await seedBlob(app, encoder.encode("lifecycle metadata bytes"))
  })
  afterAll(async () => app?.close())

  /** `auth`: the token to send (default: the content writer's), or null for none. */
  const del = (path: string, auth: string | null = token) =>
    app.request("DELETE", path, auth === null ? {} : { token: auth })
  const rowCount = async (sql: string, params: ReadonlyArray<unknown>) =>
    Number((await query<{ n: string }>(app, sql, params))[0]!.n)

  /** A failed publish of `name`/`version`: its metadata attachment's bytes are missing. */
  const failedPublish = async (name: string, version: string, metadata: SeededBlob) => {
    await removeBlobBytes(app, metadata)
    await createImage(app, token, name)
    await createDraft(app, token, name, version)
    const artifact = await addArtifact(app, token, name, version, { blob: disk })
    await addAttachment(app, token, name, version, artifact.id, { name: "incus.tar.xz", blob: metadata })
    const job = await waitForJob(app, token, (await startPublish(app, token, name, version)).id)
    expect(job.state).toBe("failed")
    return job
  }

  describe("DELETE /v1/images/{name}/versions/{version}", () => {
    it("deletes a draft with its artifacts and attachments (204), after which the version is gone", async () => {
      await createImage(app, token, "del-draft")
      const draft = await createDraft(app, token, "del-draft", "1.0")
      const artifact = await addArtifact(app, token, "del-draft", "1.0", { blob: disk })
      await addAttachment(app, token, "del-draft", "1.0", artifact.id, { name: "incus.tar.xz", blob: meta })

      const response = await del("/v1/images/del-draft/versions/1.0")
      expect(response.status).toBe(204)
      expect(await response.text()).toBe("")

      await expectProblem(await app.request("GET", "/v1/images/del-draft/versions/1.0"), 404)
      expect(await rowCount("SELECT count(*) AS n FROM release_artifacts WHERE version_id = $1", [draft.id])).toBe(0)
      expect(await rowCount("SELECT count(*) AS n FROM artifact_attachments WHERE artifact_id = $1", [artifact.id]))
        .toBe(0)
      // The version string is free again.
      await createDraft(app, token, "del-draft", "1.0")
    })

    it("refuses a published version with 409 and the reason, and changes nothing", async () => {
      await publishVersion(app, token, { name: "del-pub", version: "1.0", artifacts: [{ blob: disk }] })
      const problem = await expectProblem(await del("/v1/images/del-pub/versions/1.0"), 409)
      expect(problem.detail).toContain("published versions cannot be deleted")
      const manifest = await expectStatus<Manifest>(await app.request("GET", "/v1/images/del-pub/versions/1.0"), 200)
      expect(manifest.version.state).toBe("published")
    })

    it("refuses a publishing version with 409", async () => {
      const stuck = await seedBlob(app, encoder.encode("metadata of a stuck publish"))
      await failedPublish("del-stuck", "1", stuck)
      const problem = await expectProblem(await del("/v1/images/del-stuck/versions/1"), 409)
      expect(problem.detail).toContain("being published")
      const manifest = await expectStatus<Manifest>(await app.request("GET", "/v1/images/del-stuck/versions/1"), 200)
      expect(manifest.version.state).toBe("publishing")
    })

    it("answers 404 for an unknown image or version, 400 for a bad name", async () => {
      await createImage(app, token, "del-404")
      await expectProblem(await del("/v1/images/del-404/versions/nope"), 404)
      await expectProblem(await del("/v1/images/no-such-image/versions/1.0"), 404)
      await expectProblem(await del("/v1/images/Not_Lowercase/versions/1.0"), 400)
    })

    it("needs content.write: anonymous is 401, auth-manager is 403, and nothing is deleted", async () => {
      await createImage(app, token, "del-auth")
      await createDraft(app, token, "del-auth", "1.0")
      await expectProblem(await del("/v1/images/del-auth/versions/1.0", null), 401)
      await expectProblem(await del("/v1/images/del-auth/versions/1.0", await app.tokenFor("auth-manager")), 403)
      await expectStatus(await app.request("GET", "/v1/images/del-auth/versions/1.0"), 200)
    })
  })

  describe("DELETE /v1/images/{name}", () => {
    it("deletes an image with only drafts (and their artifacts) → 204; the name is free again", async () => {
      await createImage(app, token, "del-image")
      for (const version of ["1", "2"]) {
        await createDraft(app, token, "del-image", version)
        const artifact = await addArtifact(app, token, "del-image", version, { blob: disk })
        await addAttachment(app, token, "del-image", version, artifact.id, { name: "incus.tar.xz", blob: meta })
      }
      const response = await del("/v1/images/del-image")
      expect(response.status).toBe(204)
      await expectProblem(await app.request("GET", "/v1/images/del-image/versions/1"), 404)
      await expectProblem(await app.request("GET", "/v1/images/del-image/aliases"), 404)
      expect(await rowCount("SELECT count(*) AS n FROM images WHERE name = $1", ["del-image"])).toBe(0)
      await createImage(app, token, "del-image")
    })

    it("deletes an image whose publish was abandoned (its abandoned job goes too)", async () => {
      const lost = await seedBlob(app, encoder.encode("metadata of an abandoned image"))
      const job = await failedPublish("del-abandoned", "1", lost)
      await expectStatus(await app.request("POST", `/v1/publish-jobs/${job.id}/abandon`, { token }), 200)
      expect((await del("/v1/images/del-abandoned")).status).toBe(204)
      await expectProblem(await app.request("GET", `/v1/publish-jobs/${job.id}`, { token }), 404)
    })

    it("refuses an image with a published or publishing version (409 naming it) and keeps its drafts", async () => {
      await publishVersion(app, token, { name: "del-image-pub", version: "1.0", artifacts: [{ blob: disk }] })
      await createDraft(app, token, "del-image-pub", "2.0-draft")
      const problem = await expectProblem(await del("/v1/images/del-image-pub"), 409)
      expect(problem.detail).toContain("published version 1.0")
      await expectStatus(await app.request("GET", "/v1/images/del-image-pub/versions/2.0-draft"), 200)

      const stuck = await seedBlob(app, encoder.encode("metadata of a publishing image"))
      await failedPublish("del-image-stuck", "1", stuck)
      const publishing = await expectProblem(await del("/v1/images/del-image-stuck"), 409)
      expect(publishing.detail).toContain("publishing version 1")
    })

    it("answers 404 for an unknown image; anonymous 401, auth-manager 403", async () => {
      await expectProblem(await del("/v1/images/never-created"), 404)
      await createImage(app, token, "del-image-auth")
      await expectProblem(await del("/v1/images/del-image-auth", null), 401)
      await expectProblem(await del("/v1/images/del-image-auth", await app.tokenFor("auth-manager")), 403)
      expect(await rowCount("SELECT count(*) AS n FROM images WHERE name = $1", ["del-image-auth"])).toBe(1)
    })
  })

  describe("POST /v1/publish-jobs/{job_id}/abandon", () => {
    it("abandons a failed job: 200 with the job abandoned, the version a draft again, editable and republishable", async () => {
      const lost = await seedBlob(app, encoder.encode("metadata lost then restored"))
      const failed = await failedPublish("abandon", "1", lost)

      const abandoned = await expectStatus<PublishJob>(
        await app.request("POST", `/v1/publish-jobs/${failed.id}/abandon`, { token }),
        200
      )
      expect(abandoned).toMatchObject({ id: failed.id, state: "abandoned", version: "1", image_name: "abandon" })
      const manifest = await expectStatus<Manifest>(await app.request("GET", "/v1/images/abandon/versions/1"), 200)
      expect(manifest.version.state).toBe("draft")

      // Editable again: fix the manifest (a fresh metadata blob), then publish it anew.
      const attachment = manifest.artifacts[0]!.attachments[0]!
      const artifactId = manifest.artifacts[0]!.artifact.id
      expect(
        (await del(`/v1/images/abandon/versions/1/artifacts/${artifactId}/attachments/${attachment.id}`)).status
      ).toBe(204)
      await restoreBlobBytes(app, lost)
      await addAttachment(app, token, "abandon", "1", artifactId, { name: "incus.tar.xz", blob: meta })
      const again = await startPublish(app, token, "abandon", "1")
      expect(again.id).not.toBe(failed.id)
      expect((await waitForJob(app, token, again.id)).state).toBe("succeeded")
      const published = await expectStatus<Manifest>(await app.request("GET", "/v1/images/abandon/versions/1"), 200)
      expect(published.version.state).toBe("published")

      // The abandoned job stays readable, and abandoned.
      const old = await expectStatus<PublishJob>(
        await app.request("GET", `/v1/publish-jobs/${failed.id}`, { token }),
        200
      )
      expect(old.state).toBe("abandoned")
    })

    it("refuses a succeeded or already abandoned job with 409, and retry of an abandoned job", async () => {
      const { job } = await publishVersion(app, token, {
        name: "abandon-ok",
        version: "1",
        artifacts: [{ blob: disk }]
      })
      const succeeded = await expectProblem(
        await app.request("POST", `/v1/publish-jobs/${job.id}/abandon`, { token }),
        409
      )
      expect(succeeded.detail).toContain("succeeded")

      const lost = await seedBlob(app, encoder.encode("metadata abandoned twice"))
      const failed = await failedPublish("abandon-twice", "1", lost)
      await expectStatus(await app.request("POST", `/v1/publish-jobs/${failed.id}/abandon`, { token }), 200)
      const twice = await expectProblem(
        await app.request("POST", `/v1/publish-jobs/${failed.id}/abandon`, { token }),
        409
      )
      expect(twice.detail).toContain("abandoned")
      await expectProblem(await app.request("POST", `/v1/publish-jobs/${failed.id}/retry`, { token }), 412)
    })

    it("refuses a queued or running job with 409", async () => {
      // A failed job put back to queued/running cannot progress (its incus_index step
      // failed, so no later step is runnable): the state stays as set while we ask.
      const lost = await seedBlob(app, encoder.encode("metadata of a live job"))
      const failed = await failedPublish("abandon-live", "1", lost)
      for (const state of ["queued", "running"]) {
        await query(app, "UPDATE publish_jobs SET state = $2, finished_at = NULL WHERE id = $1", [failed.id, state])
        const problem = await expectProblem(
          await app.request("POST", `/v1/publish-jobs/${failed.id}/abandon`, { token }),
          409
        )
        expect(problem.detail).toContain(`job is ${state}`)
      }
      const manifest = await expectStatus<Manifest>(await app.request("GET", "/v1/images/abandon-live/versions/1"), 200)
      expect(manifest.version.state).toBe("publishing")
    })

    it("answers 404 for an unknown job, 400 for a bad id; anonymous 401, auth-manager 403", async () => {
      const unknown = "3f2b8c1e-0000-4000-8000-000000000000"
      await expectProblem(await app.request("POST", `/v1/publish-jobs/${unknown}/abandon`, { token }), 404)
      await expectProblem(await app.request("POST", "/v1/publish-jobs/42/abandon", { token }), 400)
      await expectProblem(await app.request("POST", `/v1/publish-jobs/${unknown}/abandon`), 401)
      await expectProblem(
        await app.request("POST", `/v1/publish-jobs/${unknown}/abandon`, { token: await app.tokenFor("auth-manager") }),
        403
      )
    })

    it("the database refuses to abandon a job that did not fail, or to unfreeze a version otherwise", async () => {
      const { job } = await publishVersion(app, token, {
        name: "abandon-db",
        version: "1",
        artifacts: [{ blob: disk }]
      })
      await expect(query(app, "UPDATE publish_jobs SET state = 'abandoned' WHERE id = $1", [job.id])).rejects
        .toThrow("only failed publish_jobs can be abandoned")
      const lost = await seedBlob(app, encoder.encode("metadata for the db guard"))
      const failed = await failedPublish("abandon-db2", "1", lost)
      await expect(
        query(app, "UPDATE image_versions SET state = 'draft' WHERE id = $1", [failed.version_id])
      ).rejects.toThrow("only when its publish job is abandoned")
    })
  })

  it("the OpenAPI document lists the new routes", async () => {
    const doc = await expectStatus<{ paths: Record<string, Record<string, unknown>> }>(
      await app.request("GET", "/openapi.json"),
      200
    )
    expect(Object.keys(doc.paths["/v1/images/{name}"] ?? {})).toContain("delete")
    expect(Object.keys(doc.paths["/v1/images/{name}/versions/{version}"] ?? {})).toContain("delete")
    expect(Object.keys(doc.paths["/v1/publish-jobs/{job_id}/abandon"] ?? {})).toContain("post")
  })
})
