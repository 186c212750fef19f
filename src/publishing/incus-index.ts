import { Effect } from "effect"
import { createHash, type Hash } from "node:crypto"
import {
  ARTIFACT_FILE_NAMES,
  ArtifactId,
  AttachmentId,
  INCUS_METADATA_ATTACHMENT,
  type ManifestRows,
  VersionId
} from "../catalog/schema.js"
import { digestHex, type Sha256Digest } from "../contract/digest.js"
import { BlobStore, readAll } from "../platform/storage/blob-store/blob-store.js"
import { casKey } from "../platform/storage/blob-store/keys.js"
import { metadataPath, rootFtypeOf, rootPath } from "../streams/schema.js"
import { StepFailed } from "./errors.js"
import type { ProjectionRow } from "./schema.js"

/**
 * The `incus_index` step's work (domain.md §5.1): for every eligible artifact of the
 * frozen manifest — format `qcow2` (a VM disk) or `squashfs` (a container rootfs) with an
 * attachment named exactly `incus.tar.xz` (the metadata tarball) — one Simple Streams row
 * whose combined hash, the image fingerprint, is SHA-256 over the metadata bytes
 * immediately followed by the root file's bytes, read from the blob store in one
 * streaming pass through a single hasher (constant memory, whatever the image size).
 */

interface BlobRef {
  readonly digest: Sha256Digest
  readonly sizeBytes: number
}

/** Eligible artifacts with their metadata attachment, in manifest order. */
export const eligibleArtifacts = (manifest: ManifestRows) =>
  manifest.artifacts.flatMap(({ artifact, attachments }) => {
    const rootFtype = rootFtypeOf(artifact.format)
    if (rootFtype === undefined) return []
    const metadata = attachments.find((t) => t.name === INCUS_METADATA_ATTACHMENT)
    return metadata === undefined ? [] : [{ artifact, metadata, rootFtype }]
  })

/**
 * Feeds the whole blob into `hash`, checking that the store holds exactly the declared
 * number of bytes. The blob's handle is released as soon as it has been read.
 */
const hashInto = (hash: Hash, blob: BlobRef) =>
  Effect.scoped(Effect.gen(function*() {
    const store = yield* BlobStore
    const key = casKey(blob.digest)
    const opened = yield* store.open(key)
    const read = yield* readAll(opened, key, (chunk) => hash.update(chunk))
    if (read !== blob.sizeBytes) {
      return yield* new StepFailed({
        message: `incus materialization: blob ${blob.digest} has ${read} bytes in the blob store, ` +
          `expected ${blob.sizeBytes}`
      })
    }
  })).pipe(
    Effect.catchTags({
      BlobNotFound: () =>
        Effect.fail(
          new StepFailed({ message: `incus materialization: open blob ${blob.digest}: not found in the blob store` })
        ),
      BlobStoreError: (error) =>
        // The store's own text may name endpoints or paths: it goes to the log, not the job.
        Effect.logError("incus_index could not read a blob").pipe(
          Effect.annotateLogs({ digest: blob.digest, cause: error.message }),
          Effect.zipRight(
            Effect.fail(
              new StepFailed({
                message: `incus materialization: read blob ${blob.digest}: blob store ${error.operation} failed`
              })
            )
          )
        )
    })
  )

/** SHA-256 over `metadata ‖ root`, as bare lower-case hex. */
export const combinedSha256 = (metadata: BlobRef, root: BlobRef): Effect.Effect<string, StepFailed, BlobStore> =>
  Effect.suspend(() => {
    const hash = createHash("sha256")
    return hashInto(hash, metadata).pipe(
      Effect.zipRight(hashInto(hash, root)),
      Effect.map(() => hash.digest("hex"))
    )
  }).pipe(
    Effect.withSpan("publishing.combinedSha256", {
      attributes: { "imgsrv.bytes": metadata.sizeBytes + root.sizeBytes }
    })
  )

/** The projection rows of a frozen manifest (zero rows is a valid outcome). */
export const computeProjection = (
  manifest: ManifestRows
): Effect.Effect<ReadonlyArray<ProjectionRow>, StepFailed, BlobStore> =>
  Effect.gen(function*() {
    const image = manifest.image.name
    const version = manifest.version.version
    // The same (metadata, root) pair is hashed once per run.
    const memo = new Map<string, string>()
    const rows: Array<ProjectionRow> = []
    for (const { artifact, metadata, rootFtype } of eligibleArtifacts(manifest)) {
      const meta: BlobRef = { digest: metadata.blob_digest as Sha256Digest, sizeBytes: metadata.blob_size_bytes }
      const root: BlobRef = {
        digest: artifact.primary_blob_digest as Sha256Digest,
        sizeBytes: artifact.primary_blob_size_bytes
      }
      const key = `${meta.digest}|${root.digest}`
      let combined = memo.get(key)
      if (combined === undefined) {
        combined = yield* combinedSha256(meta, root)
        memo.set(key, combined)
      }
      rows.push({
        artifactId: ArtifactId.make(artifact.id),
        versionId: VersionId.make(manifest.version.id),
        metadataAttachmentId: AttachmentId.make(metadata.id),
        metadataPath: metadataPath(image, version, artifact.id, metadata.id, metadata.name),
        rootFtype,
        rootPath: rootPath(image, version, artifact.id, ARTIFACT_FILE_NAMES[artifact.format]),
        metadataSha256: digestHex(meta.digest),
        metadataSizeBytes: meta.sizeBytes,
        rootSha256: digestHex(root.digest),
        rootSizeBytes: root.sizeBytes,
        combinedSha256: combined
      })
    }
    return rows
  })
