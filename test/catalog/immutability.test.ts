import { randomUUID } from "node:crypto"
import type pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeBlob, seedBlob, type SeededBlob, withDatabase } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { addArtifact, createDraft, createImage, expectProblem, publishVersion } from "./fixtures.js"

/**
 * Published manifests are immutable in the database itself (domain.md §1.2, §9.1):
 * every SQL path that would change or remove a published version, its artifacts,
 * attachments or projection rows is refused with SQLSTATE 23514.
 */

let app: TestApp
let token: string
let blob: SeededBlob
let versionId = ""
let artifactId = ""
let attachmentId = ""

beforeAll(async () => {
  app = await startTestApp()
  token = await app.tokenFor("content-writer")
  blob = await seedBlob(app, new TextEncoder().encode("immutable disk"))
  const published = await publishVersion(app, token, {
    name: "locked",
    version: "1.0",
    artifacts: [{ blob, attachments: [{ name: "incus.tar.xz", blob }] }]
  })
  versionId = published.job.version_id
  artifactId = published.artifacts[0]!.id
  attachmentId = published.artifacts[0]!.attachments[0]!
})
afterAll(async () => app?.close())

/** Runs one statement and returns the PostgreSQL error it raised (or fails the test). */
const refusal = async (statement: string, params: ReadonlyArray<unknown> = []) => {
  // TRUNCATE ... CASCADE takes exclusive locks on many tables while the app's background
  // workers poll them; a deadlock (40P01) is lock scheduling, not the guard: try again.
  for (let attempt = 0;; attempt++) {
    const error = await withDatabase(app, async (client) => {
      try {
        await client.query(statement, [...params])
      } catch (error) {
        return error as { code: string; message: string }
      }
      throw new Error(`statement was accepted: ${statement}`)
    })
    if (error.code !== "40P01" || attempt >= 5) return error
  }
}

describe("a published manifest in the database", () => {
  it("refuses updates and deletes of its artifacts and attachments", async () => {
    for (
      const [statement, params] of [
        ["UPDATE release_artifacts SET primary_blob_size_bytes = 1 WHERE id = $1", [artifactId]],
        ["UPDATE release_artifacts SET updated_at = now() WHERE id = $1", [artifactId]],
        ["DELETE FROM release_artifacts WHERE id = $1", [artifactId]],
        ["UPDATE artifact_attachments SET media_type = 'x' WHERE id = $1", [attachmentId]],
        ["DELETE FROM artifact_attachments WHERE id = $1", [attachmentId]]
      ] as const
    ) {
      const error = await refusal(statement, params)
      expect(error.code, statement).toBe("23514")
      expect(error.message).toBe("version manifest can only change while draft")
    }
  })

  it("refuses new artifacts and attachments", async () => {
    const insertArtifact = await refusal(
      `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format, primary_blob_digest,
         primary_blob_size_bytes, primary_media_type) VALUES ($1, $2, 'linux', 'arm64', 'raw', $3, 1, 'x')`,
      [randomUUID(), versionId, blob.digest]
    )
    expect(insertArtifact.code).toBe("23514")
    const insertAttachment = await refusal(
      `INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
       VALUES ($1, $2, 'extra', 'x', $3, 1)`,
      [randomUUID(), artifactId, blob.digest]
    )
    expect(insertAttachment.code).toBe("23514")
    const orphan = await refusal(
      `INSERT INTO artifact_attachments (id, artifact_id, name, media_type, blob_digest, blob_size_bytes)
       VALUES ($1, $2, 'extra', 'x', $3, 1)`,
      [randomUUID(), randomUUID(), blob.digest]
    )
    expect(orphan.code).toBe("23503")
  })

  it("refuses any change to the version row, its deletion and its projection rows", async () => {
    for (
      const statement of [
        "UPDATE image_versions SET updated_at = now() WHERE id = $1",
        "UPDATE image_versions SET state = 'draft', published_at = NULL WHERE id = $1",
        "UPDATE image_versions SET published_at = now() WHERE id = $1",
        "DELETE FROM image_versions WHERE id = $1",
        "UPDATE incus_projection_items SET root_size_bytes = 1 WHERE version_id = $1",
        "DELETE FROM incus_projection_items WHERE version_id = $1"
      ]
    ) {
      const error = await refusal(statement, [versionId])
      expect(error.code, statement).toBe("23514")
    }
    expect((await refusal("UPDATE image_versions SET version = 'x' WHERE id = $1", [versionId])).message)
      .toBe("image_versions identity fields are immutable")
  })

  it("refuses TRUNCATE while anything is published", async () => {
    for (const table of ["release_artifacts", "artifact_attachments", "incus_projection_items", "image_versions"]) {
      const error = await refusal(`TRUNCATE ${table} CASCADE`)
      expect(error.code, table).toBe("23514")
    }
  })

  it("enforces the version lifecycle: inserted as drafts, draft → publishing → published only", async () => {
    const imageId = (await withDatabase(app, (c) => c.query("SELECT id FROM images WHERE name = 'locked'"))).rows[0].id
    const published = await refusal(
      "INSERT INTO image_versions (id, image_id, version, state, published_at) VALUES ($1, $2, 'x', 'published', now())",
      [randomUUID(), imageId]
    )
    expect(published).toMatchObject({ code: "23514", message: "image_versions must be inserted as drafts" })
    const draft = await createDraft(app, token, "locked", "2.0")
    expect(
      (await refusal("UPDATE image_versions SET state = 'published', published_at = now() WHERE id = $1", [draft.id]))
        .message
    )
      .toBe("invalid image_versions state transition")
    expect((await refusal("UPDATE image_versions SET state = 'publishing' WHERE id = $1", [draft.id])).message)
      .toBe("published image_versions require at least one release_artifact")
    await addArtifact(app, token, "locked", "2.0", { blob: describeBlob(new TextEncoder().encode("never uploaded")) })
    expect((await refusal("UPDATE image_versions SET state = 'publishing' WHERE id = $1", [draft.id])).message)
      .toBe("published image_versions require verified primary blobs")
    const alias = await refusal(
      "INSERT INTO aliases (id, image_id, alias, version_id) VALUES ($1, $2, 'next', $3)",
      [randomUUID(), imageId, draft.id]
    )
    expect(alias).toMatchObject({
      code: "23514",
      message: "aliases must target a published version for the same image"
    })
  })
})

describe("projection rows", () => {
  it("cannot cite another version's artifact or another artifact's attachment (composite foreign keys)", async () => {
    const draft = await createDraft(app, token, "locked", "3.0")
    const own = await addArtifact(app, token, "locked", "3.0", { blob })
    await createDraft(app, token, "locked", "4.0")
    const foreign = await addArtifact(app, token, "locked", "4.0", { blob })
    await withDatabase(app, (c) => c.query("UPDATE image_versions SET state = 'publishing' WHERE id = $1", [draft.id]))
    const insert = (artifact: string, attachment: string) =>
      refusal(
        `INSERT INTO incus_projection_items (artifact_id, version_id, metadata_attachment_id, metadata_path, root_path,
           metadata_sha256, metadata_size_bytes, root_sha256, root_size_bytes, combined_sha256, root_ftype)
         VALUES ($1, $2, $3, 'm', 'd', $4, 1, $4, 1, $4, 'disk-kvm.img')`,
        [artifact, draft.id, attachment, blob.hex]
      )
    // Another version's artifact, under this version.
    expect((await insert(foreign.id, attachmentId)).code).toBe("23503")
    // This version's artifact with the other artifact's attachment.
    expect((await insert(own.id, attachmentId)).code).toBe("23503")
  })
})

describe("a manifest edit racing a publish", () => {
  it("is either seen by the publish or refused: never committed into a frozen version", async () => {
    await createImage(app, token, "race")
    await createDraft(app, token, "race", "1")
    await addArtifact(app, token, "race", "1", { blob })
    const unverified = describeBlob(new TextEncoder().encode("racing, never uploaded"))
    const versionRow = await withDatabase(
      app,
      (c) => c.query("SELECT v.id FROM image_versions v JOIN images i ON i.id = v.image_id WHERE i.name = 'race'")
    )
    const raceVersion = versionRow.rows[0].id as string
    await withDatabase(app, async (client: pg.Client) => {
      await client.query("BEGIN")
      // The guard locks the version row FOR SHARE: a publish must now wait for this edit.
      await client.query(
        `INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format, primary_blob_digest,
           primary_blob_size_bytes, primary_media_type) VALUES ($1, $2, 'linux', 'arm64', 'raw', $3, $4, 'x')`,
        [randomUUID(), raceVersion, unverified.digest, unverified.size]
      )
      const publish = app.request("POST", "/v1/images/race/versions/1/publish", { token })
      await new Promise((resolve) => setTimeout(resolve, 200))
      await client.query("COMMIT")
      // The publish saw the committed artifact, whose blob is not verified.
      const problem = await expectProblem(await publish, 412)
      expect(problem.detail).toContain(unverified.digest)
    })
  })

  it("a concurrent delete of the last artifact makes the publish wait and then refuse", async () => {
    await createImage(app, token, "race-delete")
    await createDraft(app, token, "race-delete", "1")
    const artifact = await addArtifact(app, token, "race-delete", "1", { blob })
    await withDatabase(app, async (client: pg.Client) => {
      await client.query("BEGIN")
      // Deleting takes no foreign-key lock on the version; the guard's FOR SHARE does.
      await client.query("DELETE FROM release_artifacts WHERE id = $1", [artifact.id])
      const publish = app.request("POST", "/v1/images/race-delete/versions/1/publish", { token })
      await new Promise((resolve) => setTimeout(resolve, 200))
      await client.query("COMMIT")
      expect((await expectProblem(await publish, 412)).detail).toContain("no artifacts")
    })
  })
})
