/**
 * `imgsrv/client`: the typed client of imgsrv and the helpers `imgsrv push` and
 * `imgsrv pull` are built on. Everything here is derived from the API declarations
 * (`src/api.ts`); nothing imports server code (test/client/imports.test.ts).
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ImgsrvClient, layerNode, publishVersion, uploadFile } from "imgsrv/client"
 *
 * const program = Effect.gen(function*() {
 *   const disk = yield* uploadFile("disk.qcow2")
 *   yield* publishVersion({
 *     image: "debian", version: "12.5", aliases: ["latest"],
 *     artifacts: [{ operatingSystem: "linux", architecture: "x86_64", format: "qcow2",
 *       digest: disk.digest, sizeBytes: disk.sizeBytes, mediaType: "application/x-qemu-disk" }]
 *   })
 * })
 * Effect.runPromise(program.pipe(Effect.provide(layerNode({ server: "http://localhost:8080", token }))))
 * ```
 */
export {
  ALL_PAGES_LIMIT,
  allPages,
  type ClientOptions,
  endpointOf,
  endpointPath,
  type ImgsrvApiClient,
  ImgsrvClient,
  type ImgsrvClientService,
  isTransient,
  layer,
  layerNode,
  makeClient,
  pollUntil,
  request,
  retryTransient
} from "./client.js"
export {
  artifactDownloadPath,
  attachmentDownloadPath,
  download,
  type DownloadedFile,
  type DownloadOptions
} from "./download.js"
export * from "./errors.js"
export type { ClientEvent, EventSink } from "./events.js"
export {
  type ArtifactSpec,
  type AttachmentSpec,
  type PublishedVersion,
  publishVersion,
  type PublishVersionOptions
} from "./publish.js"
export { type ClientState, directoryState, type FileIdentity, memoryState, type StoredSession } from "./state.js"
export { type UploadedBlob, uploadFile, type UploadFileOptions } from "./upload.js"
