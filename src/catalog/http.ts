import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { Authentication } from "../auth/authentication.js"
import { CurrentPrincipal } from "../auth/middleware.js"
import { decodeParam } from "../contract/params.js"
import { InvalidRequest } from "../contract/problem.js"
import { serveBlob } from "../platform/http/download.js"
import { cursorField, pageOf, pageRequest, paginate } from "../platform/http/pagination.js"
import { apiOf } from "../platform/http/routes.js"
import { casKey } from "../platform/storage/blob-store/keys.js"
import { CatalogGroup } from "./api.js"
import { DownloadFileNotFound } from "./errors.js"
import { PublishedManifests } from "./manifest-cache.js"
import {
  AliasListKey,
  AliasName,
  aliasToWire,
  ArtifactId,
  ArtifactListKey,
  artifactToWire,
  AttachmentId,
  attachmentToWire,
  decodeVersionPath,
  ImageListKey,
  ImageName,
  imageToWire,
  RefString,
  VersionListKey,
  VersionString,
  versionToWire
} from "./schema.js"
import type { ArtifactRow, DownloadTarget, ManifestRows, VersionPageRow } from "./schema.js"
import { Catalog } from "./service.js"

/** Handlers of the catalog group: validate path parameters, call the service, encode. */

const nameOf = (path: { readonly name: string }) => decodeParam(ImageName, path.name)

const artifactPathOf = (path: { readonly name: string; readonly version: string; readonly artifact_id: string }) =>
  Effect.all([
    decodeParam(ImageName, path.name),
    decodeParam(VersionString, path.version),
    decodeParam(ArtifactId, path.artifact_id)
  ])

const aliasPathOf = (path: { readonly name: string; readonly alias: string }) =>
  Effect.all([decodeParam(ImageName, path.name), decodeParam(AliasName, path.alias)])

/** Streams a published blob with the shared download semantics (platform/http/download.ts). */
const download = <E, R>(lookup: Effect.Effect<DownloadTarget, E, R>, route: string) =>
  Effect.flatMap(lookup, (target) =>
    serveBlob({
      key: casKey(target.digest),
      sizeBytes: target.sizeBytes,
      digest: target.digest,
      lastModified: target.updatedAt,
      contentType: target.mediaType,
      route
    }))

/** The `…/download/{file_name}` routes: the name must be the one the blob is served as. */
const servedAs = (fileName: string) => <E, R>(lookup: Effect.Effect<DownloadTarget, E, R>) =>
  Effect.filterOrFail(
    lookup,
    (target) => target.fileName === fileName,
    (target) => new DownloadFileNotFound({ fileName, servedAs: target.fileName })
  )

/** `?include_yanked=` of the version list: `true` or `false` (absent is `false`), anything else a 400. */
const includeYankedOf = (request: HttpServerRequest.HttpServerRequest) => {
  const q = request.url.indexOf("?")
  const value = new URLSearchParams(q === -1 ? "" : request.url.slice(q + 1)).get("include_yanked")
  return value === null || value === "false"
    ? Effect.succeed(false)
    : value === "true"
    ? Effect.succeed(true)
    : Effect.fail(new InvalidRequest({ detail: "include_yanked must be true or false" }))
}

type ArtifactPathParams = Parameters<typeof artifactPathOf>[0]
type AttachmentPathParams = ArtifactPathParams & { readonly attachment_id: string }

/** Route templates (metric labels), without the `/download…` tail. */
const ARTIFACT_ROUTE = "GET /v1/images/{name}/versions/{version}/artifacts/{artifact_id}"
const ATTACHMENT_ROUTE = `${ARTIFACT_ROUTE}/attachments/{attachment_id}`

export const CatalogHandlersLive = HttpApiBuilder.group(
  apiOf(CatalogGroup),
  "catalog",
  (handlers) =>
    Effect.gen(function*() {
      const catalog = yield* Catalog
      const manifests = yield* PublishedManifests
      const authentication = yield* Authentication

      // `…/download` and `…/download/{file_name}` serve through one implementation.
      const artifactTarget = (path: ArtifactPathParams) =>
        artifactPathOf(path).pipe(
          Effect.flatMap(([name, version, artifactId]) => catalog.artifactDownload(name, version, artifactId))
        )
      const attachmentTarget = (path: AttachmentPathParams) =>
        Effect.all([artifactPathOf(path), decodeParam(AttachmentId, path.attachment_id)]).pipe(
          Effect.flatMap(([[name, version, artifactId], attachmentId]) =>
            catalog.attachmentDownload(name, version, artifactId, attachmentId)
          )
        )

      /**
       * The manifest response: a published manifest's JSON comes from the cache
       * (manifest-cache.ts), which the listener also answers its paths from.
       */
      const manifestResponse = (rows: ManifestRows) =>
        HttpServerResponse.uint8Array(manifests.bodyOf(rows), { contentType: "application/json" })

      return handlers
        .handle("createImage", ({ payload }) => catalog.createImage(payload).pipe(Effect.map(imageToWire)))
        .handle("listImages", () =>
          Effect.gen(function*() {
            const page = yield* pageRequest(ImageListKey)
            const rows = yield* catalog.listImagesPage(page.after, page.limit + 1)
            const { items, next_cursor } = yield* pageOf(rows, page, ImageListKey, (row) => ({
              name: row.name,
              id: row.id
            }))
            return { images: items.map(imageToWire), ...(next_cursor === undefined ? {} : { next_cursor }) }
          }))
        .handle("getImage", ({ path }) => nameOf(path).pipe(Effect.flatMap(catalog.getImage), Effect.map(imageToWire)))
        .handle("deleteImage", ({ path }) => nameOf(path).pipe(Effect.flatMap(catalog.deleteImage)))
        .handle("deleteVersion", ({ path }) =>
          Effect.gen(function*() {
            const [name, version] = yield* decodeVersionPath(path)
            const principal = yield* CurrentPrincipal
            // The route needs content.write; retiring a published version also needs auth.manage.
            yield* catalog.deleteVersion(name, version, authentication.authorize(principal, "auth.manage"))
          }))
        .handle("yankVersion", ({ path, payload }) =>
          decodeVersionPath(path).pipe(
            Effect.flatMap(([name, version]) => catalog.yankVersion(name, version, payload.reason)),
            Effect.map(versionToWire)
          ))
        .handle("unyankVersion", ({ path }) =>
          decodeVersionPath(path).pipe(
            Effect.flatMap(([name, version]) => catalog.unyankVersion(name, version)),
            Effect.map(versionToWire)
          ))
        .handle("createVersion", ({ path, payload }) =>
          nameOf(path).pipe(
            Effect.flatMap((name) => catalog.createVersion(name, payload.version)),
            Effect.map(versionToWire)
          ))
        .handle("listVersions", ({ path }) =>
          Effect.gen(function*() {
            const name = yield* nameOf(path)
            const includeYanked = yield* includeYankedOf(yield* HttpServerRequest.HttpServerRequest)
            const { items, next_cursor } = yield* paginate(
              VersionListKey,
              (row: VersionPageRow) => ({ created_at: row.created_at_key, version: row.version, id: row.id }),
              (after, limit) => catalog.listVersions(name, after, limit, includeYanked)
            )
            return { versions: items.map(versionToWire), ...cursorField(next_cursor) }
          }))
        .handle("getManifest", ({ path }) =>
          decodeVersionPath(path).pipe(
            Effect.flatMap(([name, version]) => catalog.getManifest(name, version)),
            Effect.map(manifestResponse)
          ))
        .handle("resolveRef", ({ path }) =>
          Effect.all([decodeParam(ImageName, path.name), decodeParam(RefString, path.ref)]).pipe(
            Effect.flatMap(([name, ref]) =>
              catalog.resolveRef(name, ref)
            ),
            Effect.map(manifestResponse)
          ))
        .handle("listArtifacts", ({ path }) =>
          Effect.gen(function*() {
            const [name, version] = yield* decodeVersionPath(path)
            const { items, next_cursor } = yield* paginate(
              ArtifactListKey,
              (row: ArtifactRow) => ({
                variant: row.variant,
                operating_system: row.operating_system,
                architecture: row.architecture,
                format: row.format,
                id: row.id
              }),
              (after, limit) => catalog.listArtifacts(name, version, after, limit)
            )
            return { artifacts: items.map(artifactToWire), ...cursorField(next_cursor) }
          }))
        .handle("addArtifact", ({ path, payload }) =>
          decodeVersionPath(path).pipe(
            Effect.flatMap(([name, version]) => catalog.addArtifact(name, version, payload)),
            Effect.map(artifactToWire)
          ))
        .handle("getArtifact", ({ path }) =>
          artifactPathOf(path).pipe(
            Effect.flatMap(([name, version, artifactId]) => catalog.getArtifact(name, version, artifactId)),
            Effect.map(artifactToWire)
          ))
        .handle("deleteArtifact", ({ path }) =>
          artifactPathOf(path).pipe(
            Effect.flatMap(([name, version, artifactId]) => catalog.deleteArtifact(name, version, artifactId))
          ))
        .handle("addAttachment", ({ path, payload }) =>
          artifactPathOf(path).pipe(
            Effect.flatMap(([name, version, artifactId]) => catalog.addAttachment(name, version, artifactId, payload)),
            Effect.map(attachmentToWire)
          ))
        .handle("deleteAttachment", ({ path }) =>
          Effect.all([artifactPathOf(path), decodeParam(AttachmentId, path.attachment_id)]).pipe(
            Effect.flatMap(([[name, version, artifactId], attachmentId]) =>
              catalog.deleteAttachment(name, version, artifactId, attachmentId)
            )
          ))
        .handleRaw("downloadArtifact", ({ path }) =>
          download(artifactTarget(path), `${ARTIFACT_ROUTE}/download`))
        .handleRaw("downloadArtifactFile", ({ path }) =>
          download(artifactTarget(path).pipe(servedAs(path.file_name)), `${ARTIFACT_ROUTE}/download/{file_name}`))
        .handleRaw("downloadAttachment", ({ path }) =>
          download(attachmentTarget(path), `${ATTACHMENT_ROUTE}/download`))
        .handleRaw("downloadAttachmentFile", ({ path }) =>
          download(
            attachmentTarget(path).pipe(servedAs(path.file_name)),
            `${ATTACHMENT_ROUTE}/download/{file_name}`
          ))
        .handle("putAlias", ({ path, payload }) =>
          aliasPathOf(path).pipe(
            Effect.flatMap(([name, alias]) =>
              catalog.putAlias(name, alias, payload.version)
            ),
            Effect.map(aliasToWire)
          ))
        .handle("listAliases", ({ path }) =>
          Effect.gen(function*() {
            const name = yield* nameOf(path)
            const page = yield* pageRequest(AliasListKey)
            const rows = yield* catalog.listAliasesPage(name, page.after, page.limit + 1)
            const { items, next_cursor } = yield* pageOf(rows, page, AliasListKey, (row) => ({
              alias: row.alias,
              id: row.id
            }))
            return { aliases: items.map(aliasToWire), ...(next_cursor === undefined ? {} : { next_cursor }) }
          }))
        .handle("getAlias", ({ path }) =>
          aliasPathOf(path).pipe(
            Effect.flatMap(([name, alias]) =>
              catalog.getAlias(name, alias)
            ),
            Effect.map(aliasToWire)
          ))
        .handle("deleteAlias", ({ path }) =>
          aliasPathOf(path).pipe(Effect.flatMap(([name, alias]) =>
            catalog.deleteAlias(name, alias)
          )))
    })
)
