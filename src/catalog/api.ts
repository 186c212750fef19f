import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { RequireContentWrite } from "../auth/api.js"
import { Forbidden } from "../auth/errors.js"
import { NotModified } from "../contract/http.js"
import { InvalidPageRequest, pageParamFields, PageParams } from "../contract/pagination.js"
import { UuidString } from "../contract/params.js"
import { InvalidRequest, Problem, RangeNotSatisfiable } from "../contract/problem.js"
import {
  AliasNotFound,
  AliasTargetNotPublished,
  AliasTargetYanked,
  ArtifactIdentityTaken,
  ArtifactNotFound,
  AttachmentNameTaken,
  AttachmentNotFound,
  DownloadFileNotFound,
  ImageNameTaken,
  ImageNotDeletable,
  ImageNotFound,
  RefNotFound,
  VersionAliased,
  VersionNotDeletable,
  VersionNotDraft,
  VersionNotFound,
  VersionNotYankable,
  VersionTaken
} from "./errors.js"
import {
  Alias,
  AliasList,
  Artifact,
  ArtifactList,
  Attachment,
  CreateArtifactRequest,
  CreateAttachmentRequest,
  CreateImageRequest,
  CreateVersionRequest,
  Image,
  ImageList,
  ImageVersion,
  Manifest,
  PutAliasRequest,
  VersionList,
  YankRequest
} from "./schema.js"

/**
 * The catalog's HTTP surface (api.md §2.5–2.8, §2.10). Path parameters are plain
 * strings here and validated by the handlers (400 naming the field, before lookups).
 */

const NamePath = Schema.Struct({ name: Schema.String })
/** `/v1/images/:name/versions/:version…` (also the publish route); decoded with `decodeVersionPath`. */
export const VersionPath = Schema.Struct({ name: Schema.String, version: Schema.String })
const ArtifactPath = Schema.Struct({ name: Schema.String, version: Schema.String, artifact_id: UuidString })
const AttachmentPath = Schema.Struct({
  name: Schema.String,
  version: Schema.String,
  artifact_id: UuidString,
  attachment_id: UuidString
})
const ArtifactFilePath = Schema.Struct({ ...ArtifactPath.fields, file_name: Schema.String })
const AttachmentFilePath = Schema.Struct({ ...AttachmentPath.fields, file_name: Schema.String })
const AliasPath = Schema.Struct({ name: Schema.String, alias: Schema.String })
const RefPath = Schema.Struct({ name: Schema.String, ref: Schema.String })

/** Raw bytes with the declared media type (documentation only: the handler streams them). */
const DownloadBody = Schema.Uint8ArrayFromSelf.pipe(
  HttpApiSchema.withEncoding({ kind: "Uint8Array", contentType: "application/octet-stream" })
)

export const CatalogGroup = HttpApiGroup.make("catalog")
  // Every catalog route validates a path parameter or a body: a 400 names what was wrong.
  .addError(Problem(InvalidRequest))
  // Images ------------------------------------------------------------------------
  .add(
    HttpApiEndpoint.post("createImage", "/v1/images")
      .middleware(RequireContentWrite)
      .setPayload(CreateImageRequest)
      .addSuccess(Image, { status: 201 })
      .addError(Problem(ImageNameTaken))
      .annotate(OpenApi.Description, "Creates an image. It stays invisible to listings until a version is published.")
  )
  .add(
    HttpApiEndpoint.get("listImages", "/v1/images")
      .setUrlParams(PageParams)
      .addSuccess(ImageList)
      .addError(Problem(InvalidPageRequest))
      .annotate(
        OpenApi.Description,
        "Images with at least one published version, by name. Paginated: `?limit=` (default 100, at most " +
          "1000) and `?cursor=` from the previous page's `next_cursor` (also its `Link: rel=\"next\"` header)."
      )
  )
  .add(
    HttpApiEndpoint.get("getImage", "/v1/images/:name")
      .setPath(NamePath)
      .addSuccess(Image)
      .addError(Problem(ImageNotFound))
      .annotate(OpenApi.Description, "An image that has at least one published version.")
  )
  .add(
    HttpApiEndpoint.del("deleteImage", "/v1/images/:name")
      .middleware(RequireContentWrite)
      .setPath(NamePath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(ImageNotFound))
      .addError(Problem(ImageNotDeletable))
      .annotate(
        OpenApi.Description,
        "Deletes an image with its draft versions and aliases. 409 when a version is published or publishing."
      )
  )
  // Versions, manifests, refs -----------------------------------------------------
  .add(
    HttpApiEndpoint.post("createVersion", "/v1/images/:name/versions")
      .middleware(RequireContentWrite)
      .setPath(NamePath)
      .setPayload(CreateVersionRequest)
      .addSuccess(ImageVersion, { status: 201 })
      .addError(Problem(ImageNotFound))
      .addError(Problem(VersionTaken))
      .annotate(OpenApi.Description, "Creates a draft version.")
  )
  .add(
    HttpApiEndpoint.get("listVersions", "/v1/images/:name/versions")
      .setPath(NamePath)
      .setUrlParams(Schema.Struct({
        ...pageParamFields,
        include_yanked: Schema.optional(Schema.String).annotations({
          description: "`true` lists yanked versions too (default `false`)."
        })
      }))
      .addSuccess(VersionList)
      .addError(Problem(InvalidPageRequest))
      .addError(Problem(ImageNotFound))
      .annotate(
        OpenApi.Description,
        "Published versions, newest first; yanked ones only with `?include_yanked=true`. 404 when the image has " +
          "no published version. Paginated like `GET /v1/images`."
      )
  )
  .add(
    HttpApiEndpoint.get("getManifest", "/v1/images/:name/versions/:version")
      .setPath(VersionPath)
      .addSuccess(Manifest)
      .addError(Problem(VersionNotFound))
      .annotate(OpenApi.Description, "The manifest of the exact version, in any state (drafts included).")
  )
  .add(
    HttpApiEndpoint.del("deleteVersion", "/v1/images/:name/versions/:version")
      .middleware(RequireContentWrite)
      .setPath(VersionPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(VersionNotFound))
      .addError(Problem(Forbidden))
      .addError(Problem(VersionNotDeletable))
      .annotate(
        OpenApi.Description,
        "Deletes a draft version with its artifacts and attachments, or retires a yanked published version " +
          "for good (this also needs `auth.manage`: 403 otherwise). 409 for a published version that is not " +
          "yanked, and for a publishing one."
      )
  )
  .add(
    HttpApiEndpoint.post("yankVersion", "/v1/images/:name/versions/:version/yank")
      .middleware(RequireContentWrite)
      .setPath(VersionPath)
      .setPayload(YankRequest)
      .addSuccess(ImageVersion)
      .addError(Problem(VersionNotFound))
      .addError(Problem(VersionNotYankable))
      .addError(Problem(VersionAliased))
      .annotate(
        OpenApi.Description,
        "Yanks a published version: its manifest and downloads keep answering (with `yanked: true` and the " +
          "reason), it leaves version listings and Simple Streams. 409 for a draft or publishing version, and " +
          "while an alias points at it. Yanking a yanked version changes nothing."
      )
  )
  .add(
    HttpApiEndpoint.del("unyankVersion", "/v1/images/:name/versions/:version/yank")
      .middleware(RequireContentWrite)
      .setPath(VersionPath)
      .addSuccess(ImageVersion)
      .addError(Problem(VersionNotFound))
      .addError(Problem(VersionNotYankable))
      .annotate(OpenApi.Description, "Undoes a yank (a version that is not yanked is returned unchanged).")
  )
  .add(
    HttpApiEndpoint.get("resolveRef", "/v1/images/:name/refs/:ref")
      .setPath(RefPath)
      .addSuccess(Manifest)
      .addError(Problem(RefNotFound))
      .annotate(OpenApi.Description, "A published manifest: an exact published version first, then an alias.")
  )
  // Artifacts and attachments -----------------------------------------------------
  .add(
    HttpApiEndpoint.get("listArtifacts", "/v1/images/:name/versions/:version/artifacts")
      .setPath(VersionPath)
      .setUrlParams(PageParams)
      .addSuccess(ArtifactList)
      .addError(Problem(InvalidPageRequest))
      .addError(Problem(VersionNotFound))
      .annotate(
        OpenApi.Description,
        "Artifacts of a published version, in manifest order. Paginated like `GET /v1/images`."
      )
  )
  .add(
    HttpApiEndpoint.post("addArtifact", "/v1/images/:name/versions/:version/artifacts")
      .middleware(RequireContentWrite)
      .setPath(VersionPath)
      .setPayload(CreateArtifactRequest)
      .addSuccess(Artifact, { status: 201 })
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactIdentityTaken))
      .addError(Problem(VersionNotDraft))
      .annotate(
        OpenApi.Description,
        "Declares an artifact on a draft. The blob is not checked here; publishing checks it."
      )
  )
  .add(
    HttpApiEndpoint.get("getArtifact", "/v1/images/:name/versions/:version/artifacts/:artifact_id")
      .setPath(ArtifactPath)
      .addSuccess(Artifact)
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .annotate(OpenApi.Description, "One artifact of a published version.")
  )
  .add(
    HttpApiEndpoint.del("deleteArtifact", "/v1/images/:name/versions/:version/artifacts/:artifact_id")
      .middleware(RequireContentWrite)
      .setPath(ArtifactPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .addError(Problem(VersionNotDraft))
      .annotate(OpenApi.Description, "Deletes a draft's artifact and its attachments.")
  )
  .add(
    HttpApiEndpoint.post(
      "addAttachment",
      "/v1/images/:name/versions/:version/artifacts/:artifact_id/attachments"
    )
      .middleware(RequireContentWrite)
      .setPath(ArtifactPath)
      .setPayload(CreateAttachmentRequest)
      .addSuccess(Attachment, { status: 201 })
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .addError(Problem(AttachmentNameTaken))
      .addError(Problem(VersionNotDraft))
      .annotate(
        OpenApi.Description,
        "Hangs a secondary blob off a draft's artifact (`incus.tar.xz` makes a qcow2 artifact an Incus VM image, " +
          "a squashfs artifact an Incus container image)."
      )
  )
  .add(
    HttpApiEndpoint.del(
      "deleteAttachment",
      "/v1/images/:name/versions/:version/artifacts/:artifact_id/attachments/:attachment_id"
    )
      .middleware(RequireContentWrite)
      .setPath(AttachmentPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .addError(Problem(AttachmentNotFound))
      .addError(Problem(VersionNotDraft))
  )
  // Downloads (anonymous; bytes streamed from the blob store) ----------------------
  // Each download has two routes with one implementation: `…/download` and
  // `…/download/<file name>` (`disk.qcow2`, `rootfs.squashfs`, `incus.tar.xz`, …). Simple
  // Streams items use the second, because `lxc image export` names each file after the
  // last segment of its item path.
  .add(
    HttpApiEndpoint.get("downloadArtifact", "/v1/images/:name/versions/:version/artifacts/:artifact_id/download")
      .setPath(ArtifactPath)
      .addSuccess(DownloadBody)
      .addSuccess(DownloadBody.annotations(HttpApiSchema.annotations({ status: 206 })))
      .addSuccess(NotModified)
      .addError(Problem(RangeNotSatisfiable))
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .annotate(
        OpenApi.Description,
        "The artifact's bytes (published versions only). HEAD, single Range (206/416), If-None-Match / " +
          "If-Modified-Since (304), If-Range; ETag is \"sha256:<hex>\"; immutable caching."
      )
  )
  .add(
    HttpApiEndpoint.get(
      "downloadArtifactFile",
      "/v1/images/:name/versions/:version/artifacts/:artifact_id/download/:file_name"
    )
      .setPath(ArtifactFilePath)
      .addSuccess(DownloadBody)
      .addSuccess(DownloadBody.annotations(HttpApiSchema.annotations({ status: 206 })))
      .addSuccess(NotModified)
      .addError(Problem(RangeNotSatisfiable))
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .addError(Problem(DownloadFileNotFound))
      .annotate(
        OpenApi.Description,
        "The artifact's bytes under its file name (`disk.qcow2`, `disk.raw`, `disk.raw.gz`, `rootfs.squashfs` " +
          "by format; any other name is 404), exactly as `…/download`. Simple Streams items point here."
      )
  )
  .add(
    HttpApiEndpoint.get(
      "downloadAttachment",
      "/v1/images/:name/versions/:version/artifacts/:artifact_id/attachments/:attachment_id/download"
    )
      .setPath(AttachmentPath)
      .addSuccess(DownloadBody)
      .addSuccess(DownloadBody.annotations(HttpApiSchema.annotations({ status: 206 })))
      .addSuccess(NotModified)
      .addError(Problem(RangeNotSatisfiable))
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .addError(Problem(AttachmentNotFound))
      .annotate(OpenApi.Description, "An attachment's bytes (published versions only), with the same semantics.")
  )
  .add(
    HttpApiEndpoint.get(
      "downloadAttachmentFile",
      "/v1/images/:name/versions/:version/artifacts/:artifact_id/attachments/:attachment_id/download/:file_name"
    )
      .setPath(AttachmentFilePath)
      .addSuccess(DownloadBody)
      .addSuccess(DownloadBody.annotations(HttpApiSchema.annotations({ status: 206 })))
      .addSuccess(NotModified)
      .addError(Problem(RangeNotSatisfiable))
      .addError(Problem(VersionNotFound))
      .addError(Problem(ArtifactNotFound))
      .addError(Problem(AttachmentNotFound))
      .addError(Problem(DownloadFileNotFound))
      .annotate(
        OpenApi.Description,
        "An attachment's bytes under its own name (e.g. `incus.tar.xz`; any other name is 404), exactly as " +
          "`…/download`. Simple Streams metadata items point here."
      )
  )
  // Aliases -----------------------------------------------------------------------
  .add(
    HttpApiEndpoint.put("putAlias", "/v1/images/:name/aliases/:alias")
      .middleware(RequireContentWrite)
      .setPath(AliasPath)
      .setPayload(PutAliasRequest)
      .addSuccess(Alias)
      .addError(Problem(ImageNotFound))
      .addError(Problem(VersionNotFound))
      .addError(Problem(AliasTargetNotPublished))
      .addError(Problem(AliasTargetYanked))
      .annotate(
        OpenApi.Description,
        "Creates the alias or moves it to another published version (200 both ways). 409 for a yanked version."
      )
  )
  .add(
    HttpApiEndpoint.get("listAliases", "/v1/images/:name/aliases")
      .setPath(NamePath)
      .setUrlParams(PageParams)
      .addSuccess(AliasList)
      .addError(Problem(InvalidPageRequest))
      .addError(Problem(ImageNotFound))
      .annotate(OpenApi.Description, "The image's aliases, by alias. Paginated like `GET /v1/images`.")
  )
  .add(
    HttpApiEndpoint.get("getAlias", "/v1/images/:name/aliases/:alias")
      .setPath(AliasPath)
      .addSuccess(Alias)
      .addError(Problem(ImageNotFound))
      .addError(Problem(AliasNotFound))
  )
  .add(
    HttpApiEndpoint.del("deleteAlias", "/v1/images/:name/aliases/:alias")
      .middleware(RequireContentWrite)
      .setPath(AliasPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Problem(ImageNotFound))
      .addError(Problem(AliasNotFound))
  )
  .annotate(OpenApi.Description, "Images, versions, manifests, artifacts, attachments and aliases")
