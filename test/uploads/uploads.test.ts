/**
 * The upload flow through the real HTTP API (api.md §2.3, §3.1), on the filesystem store
 * and on S3 over HTTP (s3rver), against real PostgreSQL. Where s3rver lacks an S3
 * feature the test is declared `fails` on it, naming the feature (fixtures.ts).
 */
import { createHash } from "node:crypto"
import * as http from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { query } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  beginUpload,
  completeUpload,
  getUpload,
  MiB,
  putPart,
  sha256Digest,
  testBytes,
  uploadBlob,
  type UploadSessionBody,
  waitForUploadState
} from "../support/uploads.js"
import { expireSession, filesystemMultipartExists, itOn, sleep, storeOf, STORES } from "./fixtures.js"

const json = async <T>(response: Response): Promise<T> => (await response.json()) as T
const problem = (response: Response) => json<{ status: number; title: string; detail: string; type: string }>(response)

for (const store of STORES) {
  describe(`uploads over HTTP (${store} store)`, () => {
    let app: TestApp
    let token: string
    let objects: ReturnType<typeof storeOf>

    beforeAll(async () => {
      app = await startTestApp({ store })
      token = await app.tokenFor("content-writer")
      objects = storeOf(app)
    })
    afterAll(async () => {
      await objects?.dispose()
      await app?.close()
    })

    const begin = (body: unknown, auth: string | null = token) =>
      app.request("POST", "/v1/uploads", { ...(auth === null ? {} : { token: auth }), json: body })
    const complete = (id: string, body: unknown) =>
      app.request("POST", `/v1/uploads/${id}/complete`, { token, json: body })
    const put = (id: string, n: number | string, bytes: Uint8Array) =>
      app.request("PUT", `/v1/uploads/${id}/parts/${n}`, { token, body: bytes })
    const newUpload = async (bytes: Uint8Array, extra: Record<string, unknown> = {}) =>
      (await beginUpload(app, token, {
        expected_digest: sha256Digest(bytes),
        expected_size_bytes: bytes.length,
        ...extra
      }))
        .session

    describe("happy path", () => {
      it("two parts (5 MiB + tail) become ready and the blob downloads byte-identical", async () => {
        const bytes = testBytes(5 * MiB + 12345, 11)
        const digest = sha256Digest(bytes)
        const begun = await begin({
          expected_digest: digest,
          expected_size_bytes: bytes.length,
          media_type_hint: "application/x-qemu-disk",
          filename_hint: "disk.qcow2"
        })
        expect(begun.status).toBe(201)
        const session = await json<UploadSessionBody>(begun)
        expect(session).toMatchObject({
          expected_digest: digest,
          expected_size_bytes: bytes.length,
          state: "created",
          media_type_hint: "application/x-qemu-disk",
          filename_hint: "disk.qcow2",
          min_part_size_bytes: 5 * MiB,
          max_part_size_bytes: 5 * 1024 * MiB,
          recommended_part_size_bytes: 64 * MiB
        })
        expect(session.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
        expect(session.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/)
        const ttl = Date.parse(session.expires_at) - Date.now()
        expect(ttl).toBeGreaterThan(23 * 3600_000)
        expect(ttl).toBeLessThanOrEqual(24 * 3600_000)
        expect(session).not.toHaveProperty("failure_reason")
        expect(begun.headers.get("content-type")).toContain("application/json")

        const part1 = await putPart(app, token, session.id, 1, bytes.subarray(0, 5 * MiB))
        expect(part1).toMatchObject({ upload_id: session.id, part_number: 1, size_bytes: 5 * MiB })
        // Bare and hex-like on every store, so a shell script can splice it into a JSON string:
        // S3's MD5, the filesystem store's opaque fingerprint (no extra pass over the bytes).
        expect(part1.etag).toMatch(/^[0-9a-f]{32}$/)
        if (store === "s3") expect(part1.etag).toBe(createHash("md5").update(bytes.subarray(0, 5 * MiB)).digest("hex"))
        else expect(part1.etag).not.toBe(createHash("md5").update(bytes.subarray(0, 5 * MiB)).digest("hex"))
        expect((await getUpload(app, session.id)).state).toBe("uploading")
        const part2 = await putPart(app, token, session.id, 2, bytes.subarray(5 * MiB))

        const status = await getUpload(app, session.id)
        expect(status.parts).toEqual([
          { number: 1, etag: part1.etag, size_bytes: 5 * MiB },
          { number: 2, etag: part2.etag, size_bytes: 12345 }
        ])

        // Client order is irrelevant: the server sorts the list; an ETag in S3's quoted form is accepted too.
        const completed = await completeUpload(app, token, session.id, [{ ...part2, etag: `"${part2.etag}"` }, part1])
        expect(["completed", "ingesting", "ready"]).toContain(completed.state)
        const ready = await waitForUploadState(app, session.id, ["ready", "failed"])
        expect(ready.state).toBe("ready")

        const download = await app.request("GET", `/v1/blobs/${digest}`)
        expect(download.status).toBe(200)
        expect(download.headers.get("content-type")).toBe("application/x-qemu-disk")
        expect(download.headers.get("etag")).toBe(`"${digest}"`)
        expect(Buffer.from(await download.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true)
        // Promotion consumed the staging object.
        expect(await objects.stagingSize(session.id)).toBeUndefined()
        expect(await objects.casSize(digest)).toBe(bytes.length)
      })

      it("a single zero-byte part makes an empty blob", async () => {
        const result = await uploadBlob(app, token, new Uint8Array(0))
        expect(result.session.state).toBe("ready")
        const download = await app.request("GET", `/v1/blobs/${result.digest}`)
        expect([download.status, download.headers.get("content-length"), await download.text()]).toEqual([200, "0", ""])
      })

      it("a re-PUT of a part number replaces the earlier bytes (last write wins)", async () => {
        const bytes = testBytes(1000, 12)
        const session = await newUpload(bytes)
        await putPart(app, token, session.id, 1, testBytes(1000, 99))
        const replacement = await putPart(app, token, session.id, 1, bytes)
        expect((await getUpload(app, session.id)).parts).toEqual([{
          number: 1,
          etag: replacement.etag,
          size_bytes: 1000
        }])
        await completeUpload(app, token, session.id, [replacement])
        expect((await waitForUploadState(app, session.id, ["ready", "failed"])).state).toBe("ready")
      })
    })

    describe("begin", () => {
      it("an already trusted digest answers 200 with a new session that is ready; a size mismatch is 412", async () => {
        const bytes = testBytes(2000, 21)
        const first = await uploadBlob(app, token, bytes)
        const again = await begin({
          expected_digest: first.digest,
          expected_size_bytes: bytes.length,
          filename_hint: "x"
        })
        expect(again.status).toBe(200)
        const session = await json<UploadSessionBody>(again)
        expect(session).toMatchObject({ state: "ready", expected_digest: first.digest, filename_hint: "x" })
        expect(session.id).not.toBe(first.uploadId)
        expect(await objects.stagingSize(session.id)).toBeUndefined()
        expect(
          (await query(app, "SELECT count(*)::int AS n FROM cas_ingest_jobs WHERE upload_id = $1", [session.id]))[0]
        )
          .toEqual({ n: 0 })
        // Complete of a ready session is a harmless 200.
        expect((await complete(session.id, { parts: [] })).status).toBe(200)

        const mismatch = await begin({ expected_digest: first.digest, expected_size_bytes: bytes.length + 1 })
        expect(mismatch.status).toBe(412)
        expect(mismatch.headers.get("content-type")).toBe("application/problem+json")
        expect(await problem(mismatch)).toMatchObject({
          type: "about:blank",
          title: "Precondition Failed",
          status: 412
        })
      })

      it("rejects malformed digests, sizes, hints and unknown members with 400", async () => {
        const digest = sha256Digest(testBytes(10, 22))
        for (
          const body of [
            { expected_digest: digest.toUpperCase().replace("SHA256", "sha256"), expected_size_bytes: 1 },
            { expected_digest: "sha256:abc", expected_size_bytes: 1 },
            { expected_digest: digest, expected_size_bytes: -1 },
            { expected_digest: digest, expected_size_bytes: 1.5 },
            { expected_digest: digest, expected_size_bytes: "1" },
            { expected_digest: digest, expected_size_bytes: 10000 * 5 * 1024 * MiB + 1 },
            { expected_digest: digest, expected_size_bytes: 1, media_type_hint: "  " },
            { expected_digest: digest, expected_size_bytes: 1, filename_hint: "" },
            { expected_digest: digest, expected_size_bytes: 1, extra: true }
          ]
        ) {
          const response = await begin(body)
          expect(response.status, JSON.stringify(body)).toBe(400)
          expect((await problem(response)).detail).toMatch(/^invalid JSON request body: /)
        }
        // null optional members mean "absent"
        expect((await begin({ expected_digest: digest, expected_size_bytes: 10, media_type_hint: null })).status).toBe(
          201
        )
      })

      it("is protected: 401 without a credential (even with a bad body), 403 without content.write", async () => {
        const unauthenticated = await begin({ nonsense: true }, null)
        expect(unauthenticated.status).toBe(401)
        expect(unauthenticated.headers.get("www-authenticate")).toBe("Bearer")
        const manager = await app.tokenFor("auth-manager")
        const forbidden = await begin(
          { expected_digest: sha256Digest(new Uint8Array(1)), expected_size_bytes: 1 },
          manager
        )
        expect(forbidden.status).toBe(403)
        expect((await app.request("PUT", `/v1/uploads/${crypto.randomUUID()}/parts/1`, { body: "x" })).status).toBe(401)
        expect((await app.request("POST", `/v1/uploads/${crypto.randomUUID()}/complete`, { json: {} })).status).toBe(
          401
        )
        expect((await app.request("POST", `/v1/uploads/${crypto.randomUUID()}/abort`)).status).toBe(401)
      })
    })

    describe("parts", () => {
      it("checks part number, Content-Length and size in order, then existence, state and expiry", async () => {
        const session = await newUpload(testBytes(10, 31))
        const tiny = new Uint8Array([1])
        const expect400 = async (response: Response, detail: RegExp) => {
          expect(response.status).toBe(400)
          expect((await problem(response)).detail).toMatch(detail)
        }
        await expect400(await put("not-a-uuid", 1, tiny), /upload id must be a UUID/)
        await expect400(await put(session.id, "abc", tiny), /part number must be an integer/)
        await expect400(await put(session.id, 0, tiny), /between 1 and 10000/)
        await expect400(await put(session.id, 10001, tiny), /between 1 and 10000/)
        // A chunked body has no Content-Length.
        await expect400(
          await rawPut(app, token, session.id, 1, { "transfer-encoding": "chunked" }, tiny),
          /content length is required/
        )
        await expect400(
          await rawPut(app, token, session.id, 1, { "content-length": String(5 * 1024 * MiB + 1) }),
          /at most 5368709120/
        )
        expect((await put(crypto.randomUUID(), 1, tiny)).status).toBe(404)
        // Nothing was recorded by the refused requests.
        expect((await getUpload(app, session.id)).parts).toEqual([])
      })

      it("a 0-byte part is accepted at PUT", async () => {
        const session = await newUpload(testBytes(10, 32))
        const part = await putPart(app, token, session.id, 3, new Uint8Array(0))
        expect(part.size_bytes).toBe(0)
      })

      it("an expired session refuses parts and complete with 412", async () => {
        const bytes = testBytes(100, 33)
        const session = await newUpload(bytes)
        const part = await putPart(app, token, session.id, 1, bytes)
        await expireSession(app, session.id)
        const late = await put(session.id, 2, bytes)
        expect(late.status).toBe(412)
        const completion = await complete(session.id, { parts: [{ number: 1, etag: part.etag, size_bytes: 100 }] })
        expect(completion.status).toBe(412)
      })

      it("a part body cut short (client closes early) is not recorded, and a correct re-PUT completes the upload", async () => {
        const bytes = testBytes(3 * MiB, 34)
        const session = await newUpload(bytes)
        await truncatedPut(app, token, session.id, 1, bytes, MiB)
        // The server drops the request when the socket closes; give it a moment.
        await sleep(200)
        const status = await getUpload(app, session.id)
        expect(status.parts).toEqual([])
        expect(status.state).toBe("created")
        const part = await putPart(app, token, session.id, 1, bytes)
        await completeUpload(app, token, session.id, [part])
        expect((await waitForUploadState(app, session.id, ["ready", "failed"])).state).toBe("ready")
        const download = await app.request("GET", `/v1/blobs/${sha256Digest(bytes)}`)
        expect(Buffer.from(await download.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true)
      })
    })

    describe("complete", () => {
      it("validates the part list: empty, range, duplicates, blank ETag, sizes, 5 MiB minimum → 400", async () => {
        const session = await newUpload(testBytes(10 * MiB, 41))
        const p = (number: number, size_bytes = 5 * MiB, etag = "\"e\"") => ({ number, etag, size_bytes })
        for (
          const [parts, detail] of [
            [[], /parts must not be empty/],
            [[p(0, 10 * MiB)], /between 1 and 10000/],
            [[p(10001, 10 * MiB)], /between 1 and 10000/],
            [[p(1), p(1)], /more than once/],
            [[p(1, 10 * MiB, "  ")], /etag must not be blank/],
            [[p(1, -1), p(2, 10 * MiB + 1)], /size_bytes must be between/],
            [[p(1, 5 * 1024 * MiB + 1)], /size_bytes must be between/],
            // part 1 is not the last and smaller than 5 MiB
            [[p(2, 5 * MiB + 1), p(1, 5 * MiB - 1)], /at least 5242880 bytes/]
          ] as const
        ) {
          const response = await complete(session.id, { parts })
          expect(response.status, JSON.stringify(parts)).toBe(400)
          expect((await problem(response)).detail).toMatch(detail)
        }
        expect((await complete(session.id, { parts: [{ number: 1.5, etag: "x", size_bytes: 1 }] })).status).toBe(400)
        expect((await complete(session.id, { parts: [], unknown: 1 })).status).toBe(400)
        expect((await complete("nope", { parts: [] })).status).toBe(400)
        expect((await complete(crypto.randomUUID(), { parts: [] })).status).toBe(404)
        expect((await getUpload(app, session.id)).state).toBe("created")
      })

      it("a total that differs from expected_size_bytes is 412", async () => {
        const bytes = testBytes(100, 42)
        const session = await newUpload(bytes)
        const part = await putPart(app, token, session.id, 1, bytes)
        const response = await complete(session.id, { parts: [{ number: 1, etag: part.etag, size_bytes: 99 }] })
        expect(response.status).toBe(412)
        expect((await getUpload(app, session.id)).state).toBe("uploading")
      })

      itOn(store, "partEtagValidation")("storage rejecting an ETag is 400, nothing changes", async () => {
        const bytes = testBytes(100, 43)
        const session = await newUpload(bytes)
        await putPart(app, token, session.id, 1, bytes)
        const wrongEtag = await complete(session.id, {
          parts: [{ number: 1, etag: "\"0123456789abcdef0123456789abcdef\"", size_bytes: 100 }]
        })
        expect(wrongEtag.status).toBe(400)
        expect((await problem(wrongEtag)).detail).toMatch(/storage rejected the part list/)
        expect((await getUpload(app, session.id)).state).toBe("uploading")
      })

      it("retried 3× at once: every call 200, one staged object, one job, one promotion", async () => {
        const bytes = testBytes(6 * MiB, 44)
        const session = await newUpload(bytes)
        const part = await putPart(app, token, session.id, 1, bytes)
        const body = { parts: [{ number: 1, etag: part.etag, size_bytes: part.size_bytes }] }
        const responses = await Promise.all([
          complete(session.id, body),
          complete(session.id, body),
          complete(session.id, body)
        ])
        expect(responses.map((r) => r.status)).toEqual([200, 200, 200])
        // A later retry with a sloppy body is still a 200: the state is checked first.
        expect((await complete(session.id, { parts: [] })).status).toBe(200)
        expect((await waitForUploadState(app, session.id, ["ready", "failed"])).state).toBe("ready")
        const jobs = await query<{ attempt_count: number; state: string }>(
          app,
          "SELECT attempt_count, state FROM cas_ingest_jobs WHERE upload_id = $1",
          [session.id]
        )
        expect(jobs).toEqual([{ attempt_count: 1, state: "succeeded" }])
        expect((await complete(session.id, body)).status).toBe(200)
      })

      it("wrong digest: complete succeeds, promotion fails the session with digest_mismatch", async () => {
        const bytes = testBytes(1000, 45)
        const claimed = sha256Digest(testBytes(1000, 46))
        const session = (await beginUpload(app, token, { expected_digest: claimed, expected_size_bytes: 1000 })).session
        const part = await putPart(app, token, session.id, 1, bytes)
        await completeUpload(app, token, session.id, [part])
        const failed = await waitForUploadState(app, session.id, ["ready", "failed"])
        expect(failed).toMatchObject({ state: "failed", failure_reason: "digest_mismatch" })
        expect(await objects.stagingSize(session.id)).toBeUndefined()
        expect((await app.request("GET", `/v1/blobs/${claimed}`)).status).toBe(404)
        // Terminal: no revival, complete and abort are 412.
        expect((await complete(session.id, { parts: [] })).status).toBe(412)
        expect((await app.request("POST", `/v1/uploads/${session.id}/abort`, { token })).status).toBe(412)
      })

      it("a part larger than declared at complete fails promotion with size_mismatch", async () => {
        const bytes = testBytes(120, 47)
        const session = (await beginUpload(app, token, {
          expected_digest: sha256Digest(bytes.subarray(0, 100)),
          expected_size_bytes: 100
        }))
          .session
        const part = await putPart(app, token, session.id, 1, bytes)
        await completeUpload(app, token, session.id, [{ ...part, size_bytes: 100 }])
        expect(await waitForUploadState(app, session.id, ["ready", "failed"])).toMatchObject({
          state: "failed",
          failure_reason: "size_mismatch"
        })
      })
    })

    describe("abort", () => {
      itOn(store, "abortMultipartUpload")("aborting twice answers 200 both times and discards the parts", async () => {
        const bytes = testBytes(100, 51)
        const session = await newUpload(bytes)
        await putPart(app, token, session.id, 1, bytes)
        const first = await app.request("POST", `/v1/uploads/${session.id}/abort`, { token, body: "ignored" })
        expect(first.status).toBe(200)
        expect(await json<UploadSessionBody>(first)).toMatchObject({ id: session.id, state: "aborted" })
        const second = await app.request("POST", `/v1/uploads/${session.id}/abort`, { token })
        expect(second.status).toBe(200)
        expect((await json<UploadSessionBody>(second)).state).toBe("aborted")
        const [row] = await query<{ storage_upload_id: string }>(
          app,
          "SELECT storage_upload_id FROM upload_sessions WHERE id = $1",
          [session.id]
        )
        if (store === "filesystem") expect(filesystemMultipartExists(app, row!.storage_upload_id)).toBe(false)
        expect((await put(session.id, 2, bytes)).status).toBe(412)
        expect((await complete(session.id, { parts: [{ number: 1, etag: "\"x\"", size_bytes: 100 }] })).status).toBe(
          412
        )
      })

      it("abort answers 400 for a bad id, 404 for an unknown one, 412 once completed", async () => {
        expect((await app.request("POST", "/v1/uploads/xyz/abort", { token })).status).toBe(400)
        expect((await app.request("POST", `/v1/uploads/${crypto.randomUUID()}/abort`, { token })).status).toBe(404)
        const done = await uploadBlob(app, token, testBytes(10, 52))
        expect((await app.request("POST", `/v1/uploads/${done.uploadId}/abort`, { token })).status).toBe(412)
      })
    })

    describe("status", () => {
      it("is anonymous (a bogus token is ignored), 400 for a bad id, 404 for an unknown one", async () => {
        const session = await newUpload(testBytes(10, 61))
        const anonymous = await app.request("GET", `/v1/uploads/${session.id}`, { token: "garbage" })
        expect(anonymous.status).toBe(200)
        const body = await json<UploadSessionBody>(anonymous)
        expect(body).toMatchObject({ id: session.id, state: "created", parts: [] })
        expect(body).not.toHaveProperty("media_type_hint")
        const bad = await app.request("GET", "/v1/uploads/123")
        expect([bad.status, (await problem(bad)).detail]).toEqual([400, "upload id must be a UUID"])
        expect((await app.request("GET", `/v1/uploads/${crypto.randomUUID()}`)).status).toBe(404)
        expect((await app.request("HEAD", `/v1/uploads/${session.id}`)).status).toBe(200)
      })
    })

    describe("raw blobs", () => {
      let digest = ""
      let verifiedAt = new Date(0)
      const bytes = testBytes(4096, 71)

      beforeAll(async () => {
        digest = (await uploadBlob(app, token, bytes)).digest
        const [row] = await query<{ verified_at: Date }>(app, "SELECT verified_at FROM cas_blobs WHERE digest = $1", [
          digest
        ])
        verifiedAt = row!.verified_at
      })

      const get = (headers: Record<string, string> = {}, method = "GET") =>
        app.request(method, `/v1/blobs/${digest}`, { headers })

      it("GET 200 with ETag, caching headers, octet-stream by default and Last-Modified = verified_at", async () => {
        const response = await get({ authorization: "Bearer bogus" })
        expect(response.status).toBe(200)
        expect(response.headers.get("etag")).toBe(`"${digest}"`)
        expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
        expect(response.headers.get("accept-ranges")).toBe("bytes")
        expect(response.headers.get("content-type")).toBe("application/octet-stream")
        expect(response.headers.get("content-length")).toBe("4096")
        expect(response.headers.get("last-modified")).toBe(
          new Date(Math.floor(verifiedAt.getTime() / 1000) * 1000).toUTCString()
        )
        expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true)
      })

      it("HEAD carries the full Content-Length and no body", async () => {
        const head = await get({}, "HEAD")
        expect([head.status, head.headers.get("content-length"), (await head.arrayBuffer()).byteLength])
          .toEqual([200, "4096", 0])
        const partial = await get({ range: "bytes=100-" }, "HEAD")
        expect([partial.status, partial.headers.get("content-range"), partial.headers.get("content-length")])
          .toEqual([206, "bytes 100-4095/4096", "3996"])
      })

      it("Range → 206 with Content-Range; unsatisfiable or multi-range → 416 with bytes */size", async () => {
        const first = await get({ range: "bytes=0-0" })
        expect([first.status, first.headers.get("content-range")]).toEqual([206, "bytes 0-0/4096"])
        expect(new Uint8Array(await first.arrayBuffer())).toEqual(bytes.subarray(0, 1))
        const middle = await get({ range: "bytes=1000-1999" })
        expect(new Uint8Array(await middle.arrayBuffer())).toEqual(bytes.subarray(1000, 2000))
        const suffix = await get({ range: "bytes=-10" })
        expect([suffix.status, suffix.headers.get("content-range")]).toEqual([206, "bytes 4086-4095/4096"])
        expect(new Uint8Array(await suffix.arrayBuffer())).toEqual(bytes.subarray(4086))
        for (const range of ["bytes=4096-", "bytes=0-1,5-6", "bytes=abc", "lines=1-2"]) {
          const response = await get({ range })
          expect([response.status, response.headers.get("content-range")], range).toEqual([416, "bytes */4096"])
          expect(response.headers.get("content-type")).toBe("application/problem+json")
        }
      })

      it("conditional: If-None-Match → 304 without body, type or length; a stale If-Range → 200 full", async () => {
        const notModified = await get({ "if-none-match": `W/"${digest}"` })
        expect(notModified.status).toBe(304)
        expect(notModified.headers.get("etag")).toBe(`"${digest}"`)
        expect(notModified.headers.get("content-type")).toBeNull()
        expect(notModified.headers.get("content-length")).toBeNull()
        expect((await get({ "if-none-match": "*" }, "HEAD")).status).toBe(304)
        expect((await get({ "if-modified-since": new Date(Date.now() + 60_000).toUTCString() })).status).toBe(304)
        const ignoredRange = await get({ range: "bytes=0-9", "if-range": "\"sha256:other\"" })
        expect([ignoredRange.status, (await ignoredRange.arrayBuffer()).byteLength]).toEqual([200, 4096])
      })

      it("400 for a malformed digest (upper case too), 404 for an unknown one, media type from the upload's hint", async () => {
        const bad = await app.request("GET", `/v1/blobs/${digest.toUpperCase()}`)
        expect(bad.status).toBe(400)
        expect((await app.request("GET", "/v1/blobs/sha256:1234")).status).toBe(400)
        expect((await app.request("GET", `/v1/blobs/${sha256Digest(testBytes(5, 72))}`)).status).toBe(404)
        const hinted = await uploadBlob(app, token, testBytes(50, 73), { mediaTypeHint: "application/x-tar" })
        expect((await app.request("HEAD", `/v1/blobs/${hinted.digest}`)).headers.get("content-type")).toBe(
          "application/x-tar"
        )
        // A session in flight is not a blob.
        const pending = await newUpload(testBytes(50, 74))
        expect((await app.request("GET", `/v1/blobs/${pending.expected_digest}`)).status).toBe(404)
      })
    })
  })
}

/**
 * PUT with hand-made headers: no body at all (an absurd Content-Length the server must refuse
 * first), or `chunked` bytes (sent with Transfer-Encoding: chunked, so no Content-Length).
 */
const rawPut = (
  app: TestApp,
  token: string,
  uploadId: string,
  n: number,
  headers: Record<string, string>,
  chunked?: Uint8Array
) =>
  new Promise<Response>((resolve, reject) => {
    const url = new URL(`${app.baseUrl}/v1/uploads/${uploadId}/parts/${n}`)
    const request = http.request(url, { method: "PUT", headers: { ...headers, authorization: `Bearer ${token}` } })
    request.on("response", (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => {
        request.destroy()
        resolve(new Response(Buffer.concat(chunks), { status: response.statusCode ?? 0 }))
      })
    })
    request.on("error", reject)
    if (chunked === undefined) request.flushHeaders()
    else request.end(chunked)
  })

/** Sends `sent` bytes of a part declared as `bytes.length` long, then drops the connection. */
const truncatedPut = (app: TestApp, token: string, uploadId: string, n: number, bytes: Uint8Array, sent: number) =>
  new Promise<void>((resolve) => {
    const url = new URL(`${app.baseUrl}/v1/uploads/${uploadId}/parts/${n}`)
    const request = http.request(url, {
      method: "PUT",
      headers: { "content-length": String(bytes.length), authorization: `Bearer ${token}` }
    })
    request.on("error", () => resolve())
    request.on("response", () => resolve())
    request.write(bytes.subarray(0, sent), () => {
      setTimeout(() => {
        request.destroy()
        resolve()
      }, 100)
    })
  })
