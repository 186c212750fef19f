import type { AliasRow, VersionRow } from "../catalog/schema.js"
import { aliasToWire, versionToWire } from "../catalog/schema.js"
import type { JobWithSteps } from "../publishing/schema.js"
import { jobToWire } from "../publishing/schema.js"
import type { UploadSession } from "../uploads/schema.js"
import { sessionToJson } from "../uploads/schema.js"
import type { NewEvent } from "./schema.js"

/**
 * The events of each change, built from the rows the change wrote: `data` holds the
 * resource as its own API shows it, plus `url`, its path on this server. Callers pass
 * them to `recordEvent` in the change's transaction. (docs/webhooks.md lists them.)
 */

const segment = encodeURIComponent

export const uploadReady = (session: UploadSession): NewEvent => ({
  type: "upload.ready",
  imageName: null,
  data: {
    upload: sessionToJson({ ...session, state: "ready" }),
    blob: {
      digest: session.expectedDigest,
      size_bytes: session.expectedSizeBytes,
      url: `/v1/blobs/${session.expectedDigest}`
    },
    url: `/v1/uploads/${session.id}`
  }
})

export const uploadFailed = (
  session: UploadSession,
  failure: { readonly reason: UploadSession["failureReason"]; readonly message: string }
): NewEvent => ({
  type: "upload.failed",
  imageName: null,
  data: {
    upload: sessionToJson({ ...session, state: "failed", failureReason: failure.reason }),
    failure_message: failure.message,
    url: `/v1/uploads/${session.id}`
  }
})

export const versionPublished = (imageName: string, version: VersionRow): NewEvent => ({
  type: "version.published",
  imageName,
  data: {
    image: imageName,
    version: versionToWire(version),
    url: `/v1/images/${segment(imageName)}/versions/${segment(version.version)}`
  }
})

export const publishJobFailed = (job: JobWithSteps): NewEvent => ({
  type: "publish_job.failed",
  imageName: job.job.image_name,
  data: {
    image: job.job.image_name,
    publish_job: jobToWire(job),
    url: `/v1/publish-jobs/${job.job.id}`
  }
})

/** Created (`previous_version` absent) or moved to another version. */
export const aliasUpdated = (imageName: string, alias: AliasRow, previousVersion: string | undefined): NewEvent => ({
  type: "alias.updated",
  imageName,
  data: {
    image: imageName,
    alias: aliasToWire(alias),
    version: alias.version,
    ...(previousVersion !== undefined ? { previous_version: previousVersion } : {}),
    url: `/v1/images/${segment(imageName)}/aliases/${segment(alias.alias)}`
  }
})

export const aliasDeleted = (imageName: string, alias: AliasRow): NewEvent => ({
  type: "alias.deleted",
  imageName,
  data: {
    image: imageName,
    alias: aliasToWire(alias),
    version: alias.version,
    url: `/v1/images/${segment(imageName)}/aliases/${segment(alias.alias)}`
  }
})

/** A published version was yanked: `version` shows `yanked`, `yanked_at` and `yank_reason`. */
export const versionYanked = (imageName: string, version: VersionRow): NewEvent => ({
  type: "version.yanked",
  imageName,
  data: {
    image: imageName,
    version: versionToWire(version),
    reason: version.yank_reason,
    url: `/v1/images/${segment(imageName)}/versions/${segment(version.version)}`
  }
})

export const versionUnyanked = (imageName: string, version: VersionRow): NewEvent => ({
  type: "version.unyanked",
  imageName,
  data: {
    image: imageName,
    version: versionToWire(version),
    url: `/v1/images/${segment(imageName)}/versions/${segment(version.version)}`
  }
})

/** A yanked version was removed for good (`version` as it was); its `url` now answers 404. */
export const versionRetired = (imageName: string, version: VersionRow): NewEvent => ({
  type: "version.retired",
  imageName,
  data: {
    image: imageName,
    version: versionToWire(version),
    url: `/v1/images/${segment(imageName)}/versions/${segment(version.version)}`
  }
})
