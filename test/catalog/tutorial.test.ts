import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Alias } from "../../src/catalog/schema.js"
import type { PublishJob } from "../../src/publishing/schema.js"
import { sha256Hex } from "../support/blobs.js"
import { startTestApp, type StoreKind, type TestApp } from "../support/harness.js"
import { beginUpload, completeUpload, putPart, sha256Digest, waitForUploadState } from "../support/uploads.js"
import { expectStatus, waitForJob } from "./fixtures.js"

/**
 * The tutorial "Publish your first image" (api.md §5) as one end-to-end flow through
 * HTTP, on real PostgreSQL and both stores: bootstrap token → publisher principal and
 * token → blobs → image, draft, artifact, incus.tar.xz attachment → publish (`.job_id`)
 * → job succeeded → alias → anonymous alias read and byte-identical download.
 */

/**
 * The tutorial's upload: begin (`.id`), one single-part PUT (`.etag`, `.size_bytes`),
 * complete, then poll until the promotion worker (on by default) makes it `ready`.
 */
const upload = async (app: TestApp, token: string, bytes: Uint8Array) => {
  const digest = sha256Digest(bytes)
  const begun = await beginUpload(app, token, { expected_digest: digest, expected_size_bytes: bytes.length })
  expect(begun.status).toBe(201)
  const part = await putPart(app, token, begun.session.id, 1, bytes)
  expect(part.etag).not.toBe("")
  expect(part.size_bytes).toBe(bytes.length)
  expect((await completeUpload(app, token, begun.session.id, [part])).state).toBe("completed")
  expect((await waitForUploadState(app, begun.session.id, ["ready", "failed"])).state).toBe("ready")
  return { digest, size: bytes.length }
}

for (const store of ["filesystem", "s3"] as const satisfies ReadonlyArray<StoreKind>) {
  describe(`the tutorial flow (${store} store)`, () => {
    let app: TestApp
    beforeAll(async () => {
      app = await startTestApp({ store })
    })
    afterAll(async () => app?.close())

    it("publishes an image anyone can resolve by alias and download byte for byte", async () => {
      expect((await app.request("GET", "/healthz")).status).toBe(204)
      const admin = app.bootstrapToken()
      const call = <T>(method: string, path: string, token: string, json: unknown, status: number) =>
        app.request(method, path, { token, ...(json === undefined ? {} : { json }) }).then((r) =>
          expectStatus<T>(r, status)
        )

      // A publisher principal with content-writer and its API token.
      const principal = await call<{ id: string }>("POST", "/v1/auth/principals", admin, {
        kind: "service",
        display_name: "tutorial publisher"
      }, 201)
      const roles = await call<{ roles: ReadonlyArray<{ id: string; name: string }> }>(
        "GET",
        "/v1/auth/roles",
        admin,
        undefined,
        200
      )
      const writerRole = roles.roles.find((r) => r.name === "content-writer")
      expect(writerRole?.id).toBe("content-writer")
      expect(
        (await app.request("PUT", `/v1/auth/principals/${principal.id}/roles/${writerRole!.id}`, { token: admin }))
          .status
      ).toBe(204)
      const issued = await call<{ plaintext: string }>(
        "POST",
        `/v1/auth/principals/${principal.id}/api-tokens`,
        admin,
        {
          name: "tutorial",
          expires_at: new Date(Date.now() + 3_600_000).toISOString()
        },
        201
      )
      const token = issued.plaintext

      const diskBytes = randomBytes(10 * 1024 * 1024)
      const metaBytes = new TextEncoder().encode("tutorial incus metadata")
      const disk = await upload(app, token, diskBytes)
      const meta = await upload(app, token, metaBytes)

      await call("POST", "/v1/images", token, { name: "tutorial" }, 201)
      await call("POST", "/v1/images/tutorial/versions", token, { version: "0.1.0" }, 201)
      const artifact = await call<{ id: string }>("POST", "/v1/images/tutorial/versions/0.1.0/artifacts", token, {
        operating_system: "linux",
        architecture: "amd64",
        format: "qcow2",
        primary_blob_digest: disk.digest,
        primary_blob_size_bytes: disk.size,
        primary_media_type: "application/x-qemu-disk"
      }, 201)
      await call("POST", `/v1/images/tutorial/versions/0.1.0/artifacts/${artifact.id}/attachments`, token, {
        name: "incus.tar.xz",
        media_type: "application/x-incus-metadata",
        blob_digest: meta.digest,
        blob_size_bytes: meta.size
      }, 201)
      const published = await call<PublishJob>(
        "POST",
        "/v1/images/tutorial/versions/0.1.0/publish",
        token,
        undefined,
        202
      )
      expect(published.job_id).toBe(published.id)
      expect((await waitForJob(app, token, published.job_id)).state).toBe("succeeded")

      await call<Alias>("PUT", "/v1/images/tutorial/aliases/latest", token, { version: "0.1.0" }, 200)
      const alias = await app.request("GET", "/v1/images/tutorial/aliases/latest").then((r) =>
        expectStatus<Alias>(r, 200)
      )
      expect(alias).toMatchObject({ alias: "latest", version: "0.1.0" })

      const download = await app.request("GET", `/v1/images/tutorial/versions/0.1.0/artifacts/${artifact.id}/download`)
      expect(download.status).toBe(200)
      expect(download.headers.get("etag")).toBe(`"${disk.digest}"`)
      expect(sha256Hex(new Uint8Array(await download.arrayBuffer()))).toBe(sha256Hex(diskBytes))
      const index = await app.request("GET", "/streams/v1/index.json").then((r) => r.json()) as {
        index: { images: { products: ReadonlyArray<string> } }
      }
      expect(index.index.images.products).toEqual(["tutorial:0.1.0:amd64:default"])
    })
  })
}
