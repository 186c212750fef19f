import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import { VersionId } from "../../src/catalog/schema.js"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"

/**
 * A publishable draft `name` 1 — one artifact citing a verified blob of its declared size —
 * set up with plain SQL, for tests that drive the publishing repository or service directly.
 */
export const publishableDraft = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const imageId = randomUUID()
    const versionId = VersionId.make(randomUUID())
    const digest = `sha256:${randomUUID().replace(/-/g, "").repeat(2)}`
    yield* sql`INSERT INTO images (id, name) VALUES (${imageId}, ${name})`
    yield* sql`INSERT INTO image_versions (id, image_id, version) VALUES (${versionId}, ${imageId}, '1')`
    yield* sql`INSERT INTO cas_blobs (digest, size_bytes, storage_key)
               VALUES (${digest}, 1, ${casKey(digest as Parameters<typeof casKey>[0])})`
    yield* sql`INSERT INTO release_artifacts (id, version_id, operating_system, architecture, format,
                 primary_blob_digest, primary_blob_size_bytes, primary_media_type)
               VALUES (${randomUUID()}, ${versionId}, 'linux', 'x86_64', 'raw', ${digest}, 1, 'x')`
    return versionId
  })
