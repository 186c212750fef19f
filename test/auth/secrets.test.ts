import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createBucket, createDatabase } from "../support/harness.js"
import { freePort, spawnImgsrv } from "../support/process.js"
import { sha256Digest } from "../support/uploads.js"
import { createTestCertificate, startTestIssuer, type TestCertificate, type TestIssuer } from "./oidc-issuer.js"

/**
 * Secrets never reach the output (spec/auth.md §4.3, §8.3; §9 items 70, 72): a real
 * imgsrv process at `--verbosity debug` on PostgreSQL and S3 goes through bootstrap,
 * auth management, uploads, catalog writes, publishing, downloads, OIDC logins and
 * refused credentials; afterwards no token plaintext (nor its secret part), JWT, S3
 * secret key or PostgreSQL password appears in stderr or stdout — except the bootstrap
 * token on the one banner line of stdout.
 */

const TOKEN = /imgsrv_at_[A-Za-z0-9_-]+/g

let certificate: TestCertificate
let issuer: TestIssuer
beforeAll(async () => {
  certificate = await createTestCertificate()
  issuer = await startTestIssuer(certificate)
})
afterAll(async () => {
  await issuer?.close()
  await certificate?.remove()
})

const secretOf = (token: string) => token.slice(token.lastIndexOf("_") + 1)

describe("secrets in logs", () => {
  it("a debug-level run with uploads, content writes, tokens, JWTs and storage keys logs none of them", async () => {
    const db = await createDatabase()
    const pgPassword = decodeURIComponent(new URL(db.url).password)
    expect(pgPassword).not.toBe("")
    const port = await freePort()
    const s3 = await createBucket()
    const proc = spawnImgsrv({
      args: ["--verbosity", "debug"],
      env: {
        IMGSRV_POSTGRES_URL: db.url,
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: "",
        IMGSRV_OIDC_CA_FILE: certificate.caFile,
        IMGSRV_S3_ENDPOINT: s3.endpoint,
        IMGSRV_S3_BUCKET: s3.bucket,
        IMGSRV_S3_ACCESS_KEY_ID: s3.accessKeyId,
        IMGSRV_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        IMGSRV_S3_PATH_STYLE: "true",
        IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms",
        IMGSRV_PUBLISH_WORKER_POLL_INTERVAL: "200ms"
      }
    })
    const secrets: Array<string> = [s3.secretAccessKey, pgPassword]
    let admin = ""
    try {
      await proc.waitFor(/http server listening/, 60_000)
      admin = proc.stdout().match(TOKEN)![0]
      secrets.push(admin, secretOf(admin))
      const base = `http://127.0.0.1:${port}`
      const call = (method: string, route: string, token?: string, body?: unknown) =>
        fetch(`${base}${route}`, {
          method,
          headers: token ? { authorization: `Bearer ${token}` } : {},
          ...(body === undefined ? {} : { body: body instanceof Uint8Array ? body : JSON.stringify(body) })
        })
      const expectStatus = async <T>(response: Promise<Response>, status: number): Promise<T> => {
        const r = await response
        const text = await r.text()
        expect(r.status, `${r.url}: ${text}`).toBe(status)
        return (text === "" ? {} : JSON.parse(text)) as T
      }

      // Auth management: a publisher principal with content-writer and two tokens.
      const principal = await expectStatus<{ id: string }>(
        call("POST", "/v1/auth/principals", admin, { kind: "service", display_name: "ci" }),
        201
      )
      await expectStatus(call("PUT", `/v1/auth/principals/${principal.id}/roles/content-writer`, admin), 204)
      const issue = async () => {
        const issued = await expectStatus<{ plaintext: string; id: string }>(
          call("POST", `/v1/auth/principals/${principal.id}/api-tokens`, admin, {
            name: "ci",
            expires_at: "2099-01-01T00:00:00Z"
          }),
          201
        )
        secrets.push(issued.plaintext, secretOf(issued.plaintext))
        return issued
      }
      const publisher = (await issue()).plaintext
      const doomed = await issue()

      // Uploads (begin, part, complete, promotion on S3) and the catalog writes of the tutorial.
      const upload = async (bytes: Uint8Array) => {
        const session = await expectStatus<{ id: string }>(
          call("POST", "/v1/uploads", publisher, {
            expected_digest: sha256Digest(bytes),
            expected_size_bytes: bytes.byteLength
          }),
          201
        )
        const part = await expectStatus<{ etag: string; size_bytes: number }>(
          call("PUT", `/v1/uploads/${session.id}/parts/1`, publisher, bytes),
          200
        )
        await expectStatus(
          call("POST", `/v1/uploads/${session.id}/complete`, publisher, {
            parts: [{ number: 1, etag: part.etag, size_bytes: part.size_bytes }]
          }),
          200
        )
        for (let state = ""; state !== "ready";) {
          state = (await expectStatus<{ state: string }>(call("GET", `/v1/uploads/${session.id}`, "bogus"), 200)).state
          expect(state).not.toBe("failed")
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        return { digest: sha256Digest(bytes), size: bytes.byteLength }
      }
      const diskBytes = randomBytes(256 * 1024)
      const disk = await upload(diskBytes)
      const meta = await upload(randomBytes(1024))
      await expectStatus(call("POST", "/v1/images", publisher, { name: "secrets" }), 201)
      await expectStatus(call("POST", "/v1/images/secrets/versions", publisher, { version: "1.0" }), 201)
      const artifact = await expectStatus<{ id: string }>(
        call("POST", "/v1/images/secrets/versions/1.0/artifacts", publisher, {
          operating_system: "linux",
          architecture: "amd64",
          format: "qcow2",
          primary_blob_digest: disk.digest,
          primary_blob_size_bytes: disk.size,
          primary_media_type: "application/x-qemu-disk"
        }),
        201
      )
      await expectStatus(
        call("POST", `/v1/images/secrets/versions/1.0/artifacts/${artifact.id}/attachments`, publisher, {
          name: "incus.tar.xz",
          media_type: "application/x-incus-metadata",
          blob_digest: meta.digest,
          blob_size_bytes: meta.size
        }),
        201
      )
      const job = await expectStatus<{ job_id: string }>(
        call("POST", "/v1/images/secrets/versions/1.0/publish", publisher),
        202
      )
      for (let state = ""; state !== "succeeded";) {
        state =
          (await expectStatus<{ state: string }>(call("GET", `/v1/publish-jobs/${job.job_id}`, publisher), 200)).state
        expect(state).not.toBe("failed")
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await expectStatus(call("PUT", "/v1/images/secrets/aliases/latest", publisher, { version: "1.0" }), 200)
      // Anonymous reads with a credential attached (ignored, and not logged either).
      const download = await call("GET", `/v1/images/secrets/versions/1.0/artifacts/${artifact.id}/download`, publisher)
      expect(download.status).toBe(200)
      expect(sha256Digest(new Uint8Array(await download.arrayBuffer()))).toBe(disk.digest)
      await expectStatus(call("GET", "/streams/v1/index.json", admin), 200)

      // Refused credentials: wrong action, revoked, tampered.
      await expectStatus(call("GET", "/v1/auth/roles", publisher), 403)
      await expectStatus(call("POST", "/v1/images", admin, { name: "refused" }), 403)
      await expectStatus(call("DELETE", `/v1/auth/api-tokens/${doomed.id}`, admin), 204)
      await expectStatus(call("POST", "/v1/uploads", doomed.plaintext, {}), 401)
      const tampered = `${admin.slice(0, -2)}AA`
      secrets.push(tampered)
      await expectStatus(call("GET", "/v1/auth/roles", tampered), 401)

      // OIDC: a provisioned publisher writes; the same JWT cannot manage auth.
      await expectStatus(
        call("POST", "/v1/auth/oidc-provisioning-rules", admin, {
          display_name: "ci",
          issuer_url: issuer.issuer,
          audience: "imgsrv-api",
          condition: "true"
        }),
        201
      )
      const jwt = await issuer.sign({ sub: "repo:secret-org/secret-repo:ref:refs/heads/main" })
      secrets.push(jwt, jwt.split(".")[2]!, "secret-org/secret-repo")
      await expectStatus(call("POST", "/v1/images", jwt, { name: "oidc-written" }), 201)
      await expectStatus(call("GET", "/v1/auth/roles", jwt), 403)
      await expectStatus(call("POST", "/v1/images", await issuer.sign({ aud: ["nobody"] }), { name: "x" }), 401)
    } finally {
      expect(await proc.stop()).toBe(0)
      await db.drop()
    }

    const logs = proc.stderr()
    // Debug logging really was on across the flow.
    expect(logs).toContain("level=debug msg=\"authentication failed\"")
    expect(logs).toContain("subject_hash=")
    expect(logs).toMatch(/level=debug msg="authorization allowed"[^\n]*action=content\.write/)
    expect(logs).toMatch(/msg="http request"[^\n]*route="PUT \/v1\/uploads\/\{upload_id\}\/parts\/\{part_number\}"/)
    expect(logs).toMatch(/msg="http request"[^\n]*route="POST \/v1\/images\/\{name\}\/versions\/\{version\}\/publish"/)
    for (const secret of secrets) expect(logs).not.toContain(secret)

    // stdout holds the banner and nothing secret besides the bootstrap token on its first line.
    const [bannerLine, ...rest] = proc.stdout().split("\n")
    expect(bannerLine).toBe(`imgsrv bootstrap token (one-time): ${admin}`)
    for (const secret of secrets) expect(rest.join("\n")).not.toContain(secret)
    expect(proc.stdout().match(TOKEN)).toEqual([admin])
  })
})
