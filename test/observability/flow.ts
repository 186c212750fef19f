import { Schema } from "effect"
import { expect } from "vitest"
import { DOCS_ROUTES, ImgsrvApi } from "../../src/api.js"
import { Sha256Digest } from "../../src/contract/digest.js"
import { makeRouteTable } from "../../src/platform/http/routes.js"
import { publishVersion } from "../catalog/fixtures.js"
import type { TestApp } from "../support/harness.js"
import { testBytes, uploadBlob } from "../support/uploads.js"

/**
 * Shared by the observability tests: one tutorial flow through the real HTTP API
 * (two uploads, image + draft + artifact + incus metadata, publish, then the reads a
 * user makes), with every request recorded so traces and metrics can be checked
 * against exactly what was sent.
 */

export interface RecordedCall {
  readonly method: string
  readonly path: string
  readonly status: number
  /** The `X-Trace-ID` response header (null when tracing is off). */
  readonly traceId: string | null
}

/** `app` with every `request` recorded. */
export const recordingApp = (app: TestApp): { readonly app: TestApp; readonly calls: Array<RecordedCall> } => {
  const calls: Array<RecordedCall> = []
  const request: TestApp["request"] = async (method, pathAndQuery, init) => {
    const response = await app.request(method, pathAndQuery, init)
    const path = pathAndQuery.split("?")[0]!
    calls.push({ method, path, status: response.status, traceId: response.headers.get("x-trace-id") })
    return response
  }
  return { app: { ...app, request }, calls }
}

const routes = makeRouteTable(ImgsrvApi, DOCS_ROUTES)

/** The route template label of a request, e.g. `GET /v1/uploads/{upload_id}` (as metrics and span names use it). */
export const routeLabelOf = (method: string, path: string): string => {
  const route = routes.match(method, path)
  return route ? route.label : "unmatched"
}

/** The span name of a request: `<METHOD> <route template>`. */
export const spanNameOf = (method: string, path: string): string => {
  const route = routes.match(method, path)
  return route ? `${method} ${route.label.slice(route.label.indexOf(" ") + 1)}` : `${method} unmatched`
}

export interface TutorialResult {
  readonly disk: { readonly uploadId: string; readonly digest: string; readonly size: number }
  readonly meta: { readonly uploadId: string; readonly digest: string; readonly size: number }
  readonly jobId: string
  readonly artifactId: string
  /** Bytes sent as part bodies. */
  readonly uploadedBytes: number
  readonly parts: number
}

/**
 * The tutorial (api.md §5), through `app.request` only: upload a disk and its Incus
 * metadata (each one part, promoted by the worker), create the image, a draft with a
 * qcow2 artifact and its `incus.tar.xz`, publish and wait for the job; then read the
 * manifest, download the disk and fetch the Simple Streams index.
 */
export const runTutorialFlow = async (app: TestApp, token: string, name = "observed"): Promise<TutorialResult> => {
  const diskBytes = testBytes(96 * 1024, 61)
  const metaBytes = testBytes(2 * 1024, 62)
  const disk = await uploadBlob(app, token, diskBytes)
  const meta = await uploadBlob(app, token, metaBytes)
  const blob = (digest: string, size: number) => ({ digest: Schema.decodeSync(Sha256Digest)(digest), size })
  const { job, artifacts } = await publishVersion(app, token, {
    name,
    version: "1.0",
    artifacts: [{
      blob: blob(disk.digest, diskBytes.byteLength),
      attachments: [{ name: "incus.tar.xz", blob: blob(meta.digest, metaBytes.byteLength) }]
    }]
  })
  const artifactId = artifacts[0]!.id
  expect((await app.request("GET", `/v1/images/${name}/versions/1.0`)).status).toBe(200)
  const download = await app.request("GET", `/v1/images/${name}/versions/1.0/artifacts/${artifactId}/download`)
  expect((await download.arrayBuffer()).byteLength).toBe(diskBytes.byteLength)
  const index = await app.request("GET", "/streams/v1/index.json")
  expect(index.status).toBe(200)
  await index.arrayBuffer()
  return {
    disk: { uploadId: disk.uploadId, digest: disk.digest, size: diskBytes.byteLength },
    meta: { uploadId: meta.uploadId, digest: meta.digest, size: metaBytes.byteLength },
    jobId: job.id,
    artifactId,
    uploadedBytes: diskBytes.byteLength + metaBytes.byteLength,
    parts: 2
  }
}
