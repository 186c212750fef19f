import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { CatalogGroup } from "../../src/catalog/api.js"
import { PublishedManifestsLive } from "../../src/catalog/manifest-cache.js"
import { CatalogRepository, CatalogRepositoryLive } from "../../src/catalog/repository.js"
import { ArtifactId, AttachmentId, ImageId, VersionId } from "../../src/catalog/schema.js"
import { Catalog, CatalogLive } from "../../src/catalog/service.js"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { apiOf, makeRouteTable } from "../../src/platform/http/routes.js"
import { TestDatabaseLive } from "../support/harness.js"

/**
 * The catalog repository is the SQL boundary (src/catalog/repository.ts): a method declares only the
 * domain errors its expected constraints mean, and the service takes its ids from `FreshIds`.
 */

const CatalogTestLive = CatalogLive.pipe(
  Layer.provide(PublishedManifestsLive(makeRouteTable(apiOf(CatalogGroup)))),
  Layer.provideMerge(CatalogRepositoryLive),
  Layer.provideMerge(TestDatabaseLive)
)

const artifact = {
  variant: "default",
  operatingSystem: "linux",
  architecture: "x86_64",
  format: "qcow2",
  primaryBlobDigest: `sha256:${"a".repeat(64)}`,
  primaryBlobSizeBytes: 1,
  primaryMediaType: "application/octet-stream"
} as const

layer(CatalogTestLive)("the catalog repository", (it) => {
  it.effect("answers an expected constraint violation with the domain error it means", () =>
    Effect.gen(function*() {
      const repo = yield* CatalogRepository
      const newImage = { name: "boundary", displayName: undefined, description: undefined }
      const image = yield* repo.insertImage({ id: ImageId.make(randomUUID()), ...newImage })
      const nameTaken = yield* Effect.flip(repo.insertImage({ id: ImageId.make(randomUUID()), ...newImage }))
      expect([nameTaken._tag, nameTaken.name]).toEqual(["ImageNameTaken", "boundary"])

      const version = yield* repo.insertVersion({ id: VersionId.make(randomUUID()), image, version: "1.0" })
      const versionTaken = yield* Effect.flip(
        repo.insertVersion({ id: VersionId.make(randomUUID()), image, version: "1.0" })
      )
      expect(versionTaken._tag).toBe("VersionTaken")
      // An image deleted between the caller's lookup and the insert: its foreign key.
      const deleted = { ...image, id: ImageId.make(randomUUID()) }
      const imageGone = yield* Effect.flip(
        repo.insertVersion({ id: VersionId.make(randomUUID()), image: deleted, version: "1.0" })
      )
      expect(imageGone._tag).toBe("ImageNotFound")

      const target = { image, version }
      const first = yield* repo.insertArtifact(target, { id: ArtifactId.make(randomUUID()), ...artifact })
      expect(first.version_id).toBe(version.id)
      const identityTaken = yield* Effect.flip(
        repo.insertArtifact(target, { id: ArtifactId.make(randomUUID()), ...artifact })
      )
      expect(identityTaken._tag).toBe("ArtifactIdentityTaken")

      const attachment = {
        name: "incus.tar.xz",
        mediaType: "application/x-xz",
        blobDigest: `sha256:${"b".repeat(64)}`,
        blobSizeBytes: 1
      }
      yield* repo.insertAttachment(target, { id: AttachmentId.make(randomUUID()), artifactId: first.id, ...attachment })
      const attachmentTaken = yield* Effect.flip(
        repo.insertAttachment(target, { id: AttachmentId.make(randomUUID()), artifactId: first.id, ...attachment })
      )
      expect(attachmentTaken._tag).toBe("AttachmentNameTaken")
      // An artifact deleted between the lookup and the insert: its foreign key.
      const artifactGone = yield* Effect.flip(
        repo.insertAttachment(target, {
          id: AttachmentId.make(randomUUID()),
          artifactId: ArtifactId.make(randomUUID()),
          ...attachment
        })
      )
      expect(artifactGone._tag).toBe("ArtifactNotFound")
    }))

  it.effect("takes the ids it mints from FreshIds, so a test can fix them", () =>
    Effect.gen(function*() {
      const catalog = yield* Catalog
      const fixed = randomUUID()
      const image = yield* catalog.createImage({ name: "fixed-id" }).pipe(
        Effect.provideService(FreshIds, { uuid: Effect.succeed(fixed) })
      )
      expect(image.id).toBe(fixed)
      const version = yield* catalog.createVersion("fixed-id", "1.0").pipe(
        Effect.provideService(FreshIds, { uuid: Effect.succeed(fixed.replace(/^.{8}/, "00000000")) })
      )
      expect(version.id).toBe(fixed.replace(/^.{8}/, "00000000"))
    }))
})
