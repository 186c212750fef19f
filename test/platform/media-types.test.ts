import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest"
import { addArtifact, createDraft, createImage, expectProblem, publishVersion } from "../catalog/fixtures.js"
import { query, seedBlob, type SeededBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import { sha256Digest } from "../support/uploads.js"

/**
 * Media types end up in the `Content-Type` of every download of a blob or artifact. Every
 * place one enters refuses what a header cannot carry (400 naming the field, nothing
 * stored), and a value stored before that rule existed is served as
 * application/octet-stream with a warning in the log — never a 500.
 */

const BAD_MEDIA_TYPES = [
  "text/plain\r\nX-Injected: 1",
  "text/plain\n",
  "text/plàin",
  "application/x-qemu-disk; note=\"ü\"",
  "text/plain\u2028",
  "application",
  "/octet-stream",
  "application/",
  "application/octet stream",
  "application/octet-stream;",
  " application/octet-stream",
  `application/${"x".repeat(250)}`
]

const GOOD_MEDIA_TYPES = [
  "application/x-qemu-disk",
  "text/plain; charset=utf-8",
  "multipart/mixed; boundary=\"a b;c\"",
  "application/vnd.oci.image.layer.v1.tar+gzip"
]

let app: TestApp
let writer: string
let disk: SeededBlob
let meta: SeededBlob

beforeAll(async () => {
  app = await startTestApp({ settings: { verbosity: "warn" } })
  writer = await app.tokenFor("content-writer")
  disk = await seedBlob(app, new TextEncoder().encode("disk bytes"))
  meta = await seedBlob(app, new TextEncoder().encode("metadata bytes"))
  await createImage(app, writer, "media")
  await createDraft(app, writer, "media", "1")
})
afterAll(() => app?.close())

const artifactsPath = "/v1/images/media/versions/1/artifacts"

const artifactBody = (mediaType: string) => ({
  operating_system: "linux",
  architecture: "x86_64",
  format: "qcow2",
  primary_blob_digest: disk.digest,
  primary_blob_size_bytes: disk.size,
  primary_media_type: mediaType
})

describe("a media type that cannot be a header value", () => {
  it("is refused by begin upload (media_type_hint), and no session is created", async () => {
    const bytes = new TextEncoder().encode("hinted")
    for (const hint of BAD_MEDIA_TYPES) {
      const response = await app.request("POST", "/v1/uploads", {
        token: writer,
        json: { expected_digest: sha256Digest(bytes), expected_size_bytes: bytes.byteLength, media_type_hint: hint }
      })
      expect((await expectProblem(response, 400)).detail, JSON.stringify(hint)).toMatch(
        /^invalid JSON request body: media_type_hint: media_type_hint must be a media type/
      )
    }
    expect(await query(app, "SELECT id FROM upload_sessions")).toEqual([])
  })

  it("is refused by artifact creation (primary_media_type), and nothing is declared", async () => {
    for (const mediaType of BAD_MEDIA_TYPES) {
      const response = await app.request("POST", artifactsPath, { token: writer, json: artifactBody(mediaType) })
      expect((await expectProblem(response, 400)).detail, JSON.stringify(mediaType)).toMatch(
        /primary_media_type must be a media type/
      )
    }
    expect(await query(app, "SELECT id FROM release_artifacts")).toEqual([])
  })

  it("is refused by attachment creation (media_type), and nothing is declared", async () => {
    const artifact = await addArtifact(app, writer, "media", "1", { blob: disk, variant: "attach" })
    for (const mediaType of BAD_MEDIA_TYPES) {
      const response = await app.request("POST", `${artifactsPath}/${artifact.id}/attachments`, {
        token: writer,
        json: { name: "meta", media_type: mediaType, blob_digest: meta.digest, blob_size_bytes: meta.size }
      })
      expect((await expectProblem(response, 400)).detail, JSON.stringify(mediaType)).toMatch(
        /media_type must be a media type/
      )
    }
    expect(await query(app, "SELECT id FROM artifact_attachments")).toEqual([])
  })
})

describe("a valid media type", () => {
  it("with parameters is accepted everywhere and served as declared", async () => {
    for (const [i, mediaType] of GOOD_MEDIA_TYPES.entries()) {
      const response = await app.request("POST", artifactsPath, {
        token: writer,
        json: { ...artifactBody(mediaType), variant: `good${i}` }
      })
      expect(response.status, mediaType).toBe(201)
      const bytes = new TextEncoder().encode(`hinted ${i}`)
      const begin = await app.request("POST", "/v1/uploads", {
        token: writer,
        json: {
          expected_digest: sha256Digest(bytes),
          expected_size_bytes: bytes.byteLength,
          media_type_hint: mediaType
        }
      })
      expect(begin.status, mediaType).toBe(201)
    }
    const blob = await seedBlob(app, new TextEncoder().encode("typed"), "text/plain; charset=utf-8")
    const download = await app.request("GET", `/v1/blobs/${blob.digest}`)
    expect(download.status).toBe(200)
    expect(download.headers.get("content-type")).toBe("text/plain; charset=utf-8")
  })
})

describe("a media type stored before validation existed", () => {
  let stderr = ""
  beforeEach(() => {
    stderr = ""
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk)
      return true
    })
  })
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it("is served as application/octet-stream by /v1/blobs (GET, HEAD, range), with a warning", async () => {
    const bytes = new TextEncoder().encode("bytes with a broken hint")
    const blob = await seedBlob(app, bytes, "text/plain\r\nX-Injected: 1")
    for (const method of ["GET", "HEAD"]) {
      const response = await app.request(method, `/v1/blobs/${blob.digest}`)
      expect(response.status, method).toBe(200)
      expect(response.headers.get("content-type")).toBe("application/octet-stream")
      expect(response.headers.get("x-injected")).toBeNull()
      expect(new Uint8Array(await response.arrayBuffer())).toEqual(method === "GET" ? bytes : new Uint8Array(0))
    }
    const ranged = await app.request("GET", `/v1/blobs/${blob.digest}`, { headers: { range: "bytes=0-4" } })
    expect(ranged.status).toBe(206)
    expect(await ranged.text()).toBe("bytes")
    expect(stderr).toContain("stored media type is not a valid Content-Type")
    expect(stderr).toContain("GET /v1/blobs/{digest}")
  })

  it("is served as application/octet-stream by published artifact and attachment downloads", async () => {
    const { artifacts } = await publishVersion(app, writer, {
      name: "legacy",
      version: "1",
      artifacts: [{ blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] }]
    })
    // A published version is immutable (PostgreSQL refuses the UPDATE), so the broken values
    // go into a draft that is then published, as a release made before validation would have.
    await createDraft(app, writer, "legacy", "2")
    const draft = await addArtifact(app, writer, "legacy", "2", { blob: disk })
    await query(app, "UPDATE release_artifacts SET primary_media_type = $1 WHERE id = $2", ["tëxt/plain", draft.id])
    const attachment = await app.request("POST", `/v1/images/legacy/versions/2/artifacts/${draft.id}/attachments`, {
      token: writer,
      json: { name: "sig", media_type: "text/plain", blob_digest: meta.digest, blob_size_bytes: meta.size }
    })
    const attachmentId = ((await attachment.json()) as { id: string }).id
    await query(app, "UPDATE artifact_attachments SET media_type = $1 WHERE id = $2", ["a/b\nc: d", attachmentId])
    const job = await app.request("POST", "/v1/images/legacy/versions/2/publish", { token: writer })
    expect(job.status).toBe(202)
    const base = "/v1/images/legacy/versions/2/artifacts"
    let download: Response | undefined
    for (let i = 0; i < 100; i++) {
      download = await app.request("GET", `${base}/${draft.id}/download`)
      if (download.status !== 404) break
      await download.arrayBuffer()
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(download!.status).toBe(200)
    expect(download!.headers.get("content-type")).toBe("application/octet-stream")
    expect(new Uint8Array(await download!.arrayBuffer())).toEqual(disk.bytes)
    const attached = await app.request("GET", `${base}/${draft.id}/attachments/${attachmentId}/download`)
    expect(attached.status).toBe(200)
    expect(attached.headers.get("content-type")).toBe("application/octet-stream")
    expect(await attached.text()).toBe("metadata bytes")
    // The sound version next to it is untouched.
    const sound = await app.request("GET", `/v1/images/legacy/versions/1/artifacts/${artifacts[0]!.id}/download`)
    expect(sound.headers.get("content-type")).toBe("application/x-qemu-disk")
    await sound.arrayBuffer()
  })
})
