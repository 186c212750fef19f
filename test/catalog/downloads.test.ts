import { randomBytes } from "node:crypto"
import { readdirSync, readlinkSync } from "node:fs"
import * as http from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { casKey } from "../../src/platform/storage/blob-store/keys.js"
import { describeBlob, seedBlob, type SeededBlob, sha256Hex } from "../support/blobs.js"
import { startTestApp, type StoreKind, type TestApp } from "../support/harness.js"
import { addArtifact, createDraft, createImage, expectProblem, publishVersion } from "./fixtures.js"

/**
 * Downloads of published artifacts and attachments (api.md §2.8), end to end through
 * the catalog routes on both stores: lookup rules, headers, the range matrix,
 * conditional requests, HEAD, and release of the store stream on disconnect.
 */

for (const store of ["filesystem", "s3"] as const satisfies ReadonlyArray<StoreKind>) {
  describe(`catalog downloads (${store} store)`, () => {
    let app: TestApp
    let token: string
    let disk: SeededBlob
    let meta: SeededBlob
    let empty: SeededBlob
    /** Each download under both of its routes: `…/download` and `…/download/<file name>`. */
    const routes = {
      plain: { artifact: "", attachment: "", empty: "", artifactFile: "" },
      named: { artifact: "", attachment: "", empty: "", artifactFile: "" }
    }

    beforeAll(async () => {
      app = await startTestApp({ store })
      token = await app.tokenFor("content-writer")
      // Larger than loopback socket buffers, so a paused client really holds the stream open.
      disk = await seedBlob(app, randomBytes(24 * 1024 * 1024 + 17))
      meta = await seedBlob(app, new TextEncoder().encode("0123456789"))
      empty = await seedBlob(app, new Uint8Array(0))
      const published = await publishVersion(app, token, {
        name: "dl",
        version: "1.0+build:7",
        artifacts: [
          { blob: disk, attachments: [{ name: "incus.tar.xz", blob: meta }] },
          { blob: empty, format: "raw", media_type: "application/octet-stream" }
        ]
      })
      const base = "/v1/images/dl/versions/1.0+build:7/artifacts"
      const [qcow, raw] = published.artifacts
      for (
        const [form, names] of [["plain", ["", "", ""]], ["named", [
          "/disk.qcow2",
          "/incus.tar.xz",
          "/disk.raw"
        ]]] as const
      ) {
        routes[form].artifact = `${base}/${qcow!.id}/download${names[0]}`
        routes[form].attachment = `${base}/${qcow!.id}/attachments/${qcow!.attachments[0]}/download${names[1]}`
        routes[form].empty = `${base}/${raw!.id}/download${names[2]}`
      }
    })
    afterAll(async () => app?.close())

    const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
      app.request(method, path, { headers })

    it("answers the same requests identically on both routes (status, headers, bytes)", async () => {
      const requests: ReadonlyArray<[keyof typeof routes.plain, Record<string, string>, string]> = [
        ["artifact", {}, "GET"],
        ["artifact", {}, "HEAD"],
        ["attachment", { range: "bytes=2-5" }, "GET"],
        ["attachment", { range: "bytes=-3" }, "HEAD"],
        ["attachment", { range: "bytes=20-" }, "GET"],
        ["attachment", { "if-none-match": `"${meta.digest}"` }, "GET"],
        ["artifact", { "if-none-match": "*" }, "HEAD"],
        ["attachment", { range: "bytes=0-1", "if-range": "\"other\"" }, "GET"],
        ["empty", {}, "GET"]
      ]
      const seen = async (path: string, headers: Record<string, string>, method: string) => {
        const res = await get(path, headers, method)
        // Per-response values aside, every header must match.
        const { date: _date, "x-request-id": _id, ...rest } = Object.fromEntries(res.headers)
        return { status: res.status, headers: rest, sha256: sha256Hex(new Uint8Array(await res.arrayBuffer())) }
      }
      for (const [what, headers, method] of requests) {
        const plain = await seen(routes.plain[what], headers, method)
        expect(await seen(routes.named[what], headers, method), `${method} ${what} ${JSON.stringify(headers)}`)
          .toEqual(plain)
      }
    })

    it("answers 404 naming the served file for any other file name, and keeps the draft rule", async () => {
      const wrong = await expectProblem(await get(routes.plain.artifact + "/incus.tar.xz"), 404)
      expect(wrong.detail).toBe("catalog not found: no file incus.tar.xz here (this download is disk.qcow2)")
      const wrongAttachment = await expectProblem(await get(routes.plain.attachment + "/disk.qcow2"), 404)
      expect(wrongAttachment.detail).toContain("(this download is incus.tar.xz)")
      await expectProblem(await get(routes.plain.empty + "/disk.qcow2"), 404)
      // Validation and lookups come first, exactly as on `…/download`.
      const badId = await expectProblem(
        await get("/v1/images/dl/versions/1.0+build:7/artifacts/nope/download/disk.qcow2"),
        400
      )
      expect(badId.detail).toBe("artifact id must be a UUID")
    })

    for (const form of ["plain", "named"] as const) {
      describe(form === "plain" ? "…/download" : "…/download/{file_name}", () => {
        let artifactPath = ""
        let attachmentPath = ""
        let emptyPath = ""
        const suffix = form === "plain" ? "" : "/disk.qcow2"
        beforeAll(() => {
          ;({ artifact: artifactPath, attachment: attachmentPath, empty: emptyPath } = routes[form])
        })

        it("streams the exact bytes with the declared media type and immutable caching headers", async () => {
          const res = await get(artifactPath, { authorization: "Bearer not-a-token" })
          expect(res.status).toBe(200)
          expect(res.headers.get("content-type")).toBe("application/x-qemu-disk")
          expect(res.headers.get("content-length")).toBe(String(disk.size))
          expect(res.headers.get("etag")).toBe(`"${disk.digest}"`)
          expect(res.headers.get("accept-ranges")).toBe("bytes")
          expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
          expect(res.headers.get("last-modified")).toMatch(
            /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/
          )
          expect(sha256Hex(new Uint8Array(await res.arrayBuffer()))).toBe(disk.hex)

          const attachment = await get(attachmentPath)
          expect(attachment.headers.get("content-type")).toBe("application/x-incus-metadata")
          expect(await attachment.text()).toBe("0123456789")
        })

        it("HEAD carries the headers GET would, with the full or ranged Content-Length, and no body", async () => {
          const head = await get(artifactPath, {}, "HEAD")
          expect(head.status).toBe(200)
          expect(head.headers.get("content-length")).toBe(String(disk.size))
          expect(head.headers.get("etag")).toBe(`"${disk.digest}"`)
          expect((await head.arrayBuffer()).byteLength).toBe(0)
          const ranged = await get(attachmentPath, { range: "bytes=-4" }, "HEAD")
          expect([ranged.status, ranged.headers.get("content-range"), ranged.headers.get("content-length")])
            .toEqual([206, "bytes 6-9/10", "4"])
        })

        it("serves the range matrix: first byte, suffix, open-ended, clamped, beyond size, multi-range, empty blob", async () => {
          const first = await get(attachmentPath, { range: "bytes=0-0" })
          expect([first.status, first.headers.get("content-range"), await first.text()]).toEqual([
            206,
            "bytes 0-0/10",
            "0"
          ])
          const suffix = await get(attachmentPath, { range: "bytes=-4" })
          expect([suffix.status, await suffix.text()]).toEqual([206, "6789"])
          const longSuffix = await get(attachmentPath, { range: "bytes=-400" })
          expect([longSuffix.status, longSuffix.headers.get("content-range")]).toEqual([206, "bytes 0-9/10"])
          await longSuffix.arrayBuffer()
          const open = await get(attachmentPath, { range: "bytes=7-" })
          expect([open.status, await open.text()]).toEqual([206, "789"])
          const clamped = await get(attachmentPath, { range: "bytes=8-100" })
          expect([clamped.status, clamped.headers.get("content-range"), await clamped.text()])
            .toEqual([206, "bytes 8-9/10", "89"])
          const middle = await get(artifactPath, { range: "bytes=1048576-2097151" })
          expect(sha256Hex(new Uint8Array(await middle.arrayBuffer()))).toBe(
            sha256Hex(disk.bytes.subarray(1048576, 2097152))
          )
          for (const range of ["bytes=10-", "bytes=0-1,4-5", "bytes=5-4", "bytes=-0", "items=0-1"]) {
            const res = await get(attachmentPath, { range })
            expect(res.headers.get("content-range"), range).toBe("bytes */10")
            await expectProblem(res, 416)
          }
          const emptyRange = await get(emptyPath, { range: "bytes=0-" })
          expect([emptyRange.status, emptyRange.headers.get("content-range")]).toEqual([416, "bytes */0"])
          await emptyRange.arrayBuffer()
          const emptyFull = await get(emptyPath)
          expect([emptyFull.status, emptyFull.headers.get("content-length"), await emptyFull.text()]).toEqual([
            200,
            "0",
            ""
          ])
        })

        it("answers conditional requests: If-None-Match and If-Modified-Since give 304, If-Range gates the range", async () => {
          const etag = `"${meta.digest}"`
          const lastModified = (await get(attachmentPath, {}, "HEAD")).headers.get("last-modified")!
          for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
            const res = await get(attachmentPath, { "if-none-match": inm })
            expect(res.status, inm).toBe(304)
            expect(res.headers.get("etag")).toBe(etag)
            expect(res.headers.get("content-type")).toBeNull()
            expect(res.headers.get("content-length")).toBeNull()
            expect(await res.text()).toBe("")
          }
          expect((await get(attachmentPath, { "if-none-match": etag }, "HEAD")).status).toBe(304)
          expect((await get(attachmentPath, { "if-modified-since": lastModified })).status).toBe(304)
          const older = new Date(Date.parse(lastModified) - 1000).toUTCString()
          const changed = await get(attachmentPath, { "if-modified-since": older })
          expect([changed.status, await changed.text()]).toEqual([200, "0123456789"])
          // A present, non-matching If-None-Match disables If-Modified-Since.
          const noMatch = await get(attachmentPath, { "if-none-match": "\"x\"", "if-modified-since": lastModified })
          expect([noMatch.status, await noMatch.text()]).toEqual([200, "0123456789"])
          const rangeKept = await get(attachmentPath, { range: "bytes=0-1", "if-range": etag })
          expect([rangeKept.status, await rangeKept.text()]).toEqual([206, "01"])
          const byDate = await get(attachmentPath, { range: "bytes=0-1", "if-range": lastModified })
          expect([byDate.status, await byDate.text()]).toEqual([206, "01"])
          for (const ifRange of [`W/${etag}`, "\"other\"", older]) {
            const ignored = await get(attachmentPath, { range: "bytes=0-1", "if-range": ifRange })
            expect([ignored.status, await ignored.text()], ifRange).toEqual([200, "0123456789"])
          }
        })

        it("serves only published versions and validates parameters first", async () => {
          const draftDisk = describeBlob(new TextEncoder().encode("draft"))
          const draft = `dl-draft-${form}`
          await createImage(app, token, draft)
          await createDraft(app, token, draft, "1")
          const artifact = await addArtifact(app, token, draft, "1", { blob: draftDisk })
          await expectProblem(
            await get(`/v1/images/${draft}/versions/1/artifacts/${artifact.id}/download${suffix}`),
            404
          )
          const artifactId = artifactPath.split("/")[7]
          // An artifact id under another image or version is not found.
          await expectProblem(
            await get(`/v1/images/${draft}/versions/1/artifacts/${artifactId}/download${suffix}`),
            404
          )
          await expectProblem(await get(artifactPath.replace(artifactId!, "6f1c5a6e-0000-4000-8000-000000000000")), 404)
          const unknownAttachment = attachmentPath.replace(
            /attachments\/[^/]+/,
            "attachments/6f1c5a6e-0000-4000-8000-000000000000"
          )
          await expectProblem(await get(unknownAttachment), 404)
          const badId = await expectProblem(await get(artifactPath.replace(artifactId!, "nope")), 400)
          expect(badId.detail).toBe("artifact id must be a UUID")
          const badAttachment = await expectProblem(
            await get(attachmentPath.replace(/attachments\/[^/]+/, "attachments/x")),
            400
          )
          expect(badAttachment.detail).toBe("attachment id must be a UUID")
          await expectProblem(
            await get(`/v1/images/DL/versions/1.0/artifacts/6f1c5a6e-0000-4000-8000-000000000000/download${suffix}`),
            400
          )
          // Percent-encoded `+` and `:` resolve like the literal characters (and `+` is not a space).
          const encoded = await get(artifactPath.replace("1.0+build:7", "1.0%2Bbuild%3A7"), {}, "HEAD")
          expect(encoded.status).toBe(200)
        })

        it("a client that disconnects mid-download releases the store stream", async () => {
          const openHandles = () =>
            readdirSync("/proc/self/fd").filter((fd) => {
              try {
                return readlinkSync(`/proc/self/fd/${fd}`).endsWith(casKey(disk.digest))
              } catch {
                return false
              }
            }).length
          const fds = () => readdirSync("/proc/self/fd").length
          const waitUntil = async (condition: () => boolean) => {
            const deadline = Date.now() + 3000
            while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
          }
          const before = fds()
          for (let i = 0; i < 3; i++) {
            // Read the first chunk, stop reading (the server is now mid-stream), then drop the connection.
            const request = await new Promise<http.ClientRequest>((resolve, reject) => {
              const req = http.get(`${app.baseUrl}${artifactPath}`, (response) => {
                response.once("data", () => {
                  response.pause()
                  resolve(req)
                })
              })
              req.on("error", (error) => (req.destroyed ? undefined : reject(error)))
            })
            if (store === "filesystem") {
              await new Promise((resolve) => setTimeout(resolve, 50))
              expect(openHandles(), "the blob is open while the client holds the download").toBe(1)
            }
            request.destroy()
            await waitUntil(() => openHandles() === 0)
          }
          await waitUntil(() => fds() <= before + 2)
          expect(openHandles()).toBe(0)
          expect(fds()).toBeLessThanOrEqual(before + 2)
          expect((await get(attachmentPath)).status).toBe(200)
        })
      })
    }
  })
}
