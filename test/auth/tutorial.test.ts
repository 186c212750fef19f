import { createHash, randomBytes } from "node:crypto"
import { rm } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, tempDir } from "../support/harness.js"
import { freePort, type ImgsrvProcess, spawnImgsrv, waitForStatus } from "../support/process.js"

/**
 * The tutorial's auth steps (spec/api.md §5, spec/auth.md §9 items 25, 73) exactly as
 * an operator runs them with curl and jq against a freshly started imgsrv process:
 *
 *   TOKEN=$(… | grep -o 'imgsrv_at_[A-Za-z0-9_-]*' | head -n1)
 *   PRINCIPAL=$(curl -H "Authorization: Bearer $TOKEN" -d '{"kind":"service",…}' …/v1/auth/principals | jq -r .id)
 *   ROLE=$(curl -H … …/v1/auth/roles | jq -r '.roles[] | select(.name == "content-writer") | .id')
 *   curl -X PUT -H … …/v1/auth/principals/$PRINCIPAL/roles/$ROLE            # 204
 *   PUBLISHER=$(curl -H … -d '{"name":"ci","expires_at":"2099-01-01T00:00:00Z"}' \
 *     …/v1/auth/principals/$PRINCIPAL/api-tokens | jq -r .plaintext)
 *
 * and then that $PUBLISHER can write (upload, image) while $TOKEN cannot (403).
 */

const TOKEN_PATTERN = /imgsrv_at_[A-Za-z0-9_-]+/g

/**
 * What curl sends for `curl [-X METHOD] [-H "Authorization: Bearer T"] [-d DATA | --data-binary @file] URL`:
 * `-d` makes it a POST with `Content-Type: application/x-www-form-urlencoded` (the tutorial
 * never sets a JSON content type), and curl's own User-Agent and Accept headers.
 */
const curl = (
  url: string,
  options: { readonly method?: string; readonly token?: string; readonly data?: string | Uint8Array } = {}
) =>
  fetch(url, {
    method: options.method ?? (options.data === undefined ? "GET" : "POST"),
    headers: {
      "user-agent": "curl/8.5.0",
      "accept": "*/*",
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(options.data === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" })
    },
    ...(options.data === undefined ? {} : { body: options.data })
  })

/** `curl … | jq …`: the status (for the assertion message) and the parsed body. */
const curlJson = async <T>(url: string, options: Parameters<typeof curl>[1], status: number): Promise<T> => {
  const response = await curl(url, options)
  const text = await response.text()
  expect(response.status, `${options?.method ?? "POST/GET"} ${url}: ${text}`).toBe(status)
  return JSON.parse(text) as T
}

let proc: ImgsrvProcess
let base: string
let dropDatabase: () => Promise<void>
let dataDir: string

beforeAll(async () => {
  const db = await createDatabase()
  dropDatabase = db.drop
  dataDir = await tempDir("imgsrv-auth-tutorial-")
  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  proc = spawnImgsrv({
    env: {
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms"
    }
  })
  await waitForStatus(`${base}/healthz`, 204, 60_000)
})
afterAll(async () => {
  if (proc) expect(await proc.stop()).toBe(0)
  await dropDatabase?.()
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
})

describe("the tutorial's auth steps with curl", () => {
  it("bootstrap token → principal → content-writer → token → the token writes; the bootstrap token cannot", async () => {
    // `imgsrv 2>&1 | grep -o … | head -n1`: the first match in the combined output is the
    // bootstrap token, and it is printed exactly once, on stdout, in the documented line.
    await proc.waitFor(/imgsrv_at_/)
    const combined = `${proc.stdout()}\n${proc.stderr()}`
    const matches = combined.match(TOKEN_PATTERN) ?? []
    expect(matches).toHaveLength(1)
    const token = matches[0]!
    expect(proc.stdout().split("\n")[0]).toBe(`imgsrv bootstrap token (one-time): ${token}`)
    const bootstrapPrincipal = /^principal_id: (\S+)$/m.exec(proc.stdout())![1]!

    expect((await curl(`${base}/healthz`)).status).toBe(204)

    const principal = await curlJson<{ id: string }>(`${base}/v1/auth/principals`, {
      token,
      data: "{\"kind\":\"service\",\"display_name\":\"tutorial publisher\"}"
    }, 201)
    expect(principal.id).toMatch(/^principal_[A-Z2-7]{26}$/)

    const roles = await curlJson<{ roles: ReadonlyArray<{ id: string; name: string }> }>(`${base}/v1/auth/roles`, {
      token
    }, 200)
    // jq -r '.roles[] | select(.name == "content-writer") | .id'
    const role = roles.roles.filter((r) => r.name === "content-writer").map((r) => r.id)
    expect(role).toEqual(["content-writer"])

    const assigned = await curl(`${base}/v1/auth/principals/${principal.id}/roles/${role[0]}`, { method: "PUT", token })
    expect(assigned.status).toBe(204)
    expect(await assigned.text()).toBe("")

    const issued = await curlJson<{ plaintext: string; id: string }>(
      `${base}/v1/auth/principals/${principal.id}/api-tokens`,
      {
        token,
        data: "{\"name\":\"ci\",\"expires_at\":\"2099-01-01T00:00:00Z\"}"
      },
      201
    )
    const publisher = issued.plaintext
    expect(publisher).toMatch(/^imgsrv_at_[A-Z2-7]{26}_[A-Z2-7]{26}$/)
    expect(publisher.startsWith(`imgsrv_at_${issued.id}_`)).toBe(true)

    // The publisher token uploads: begin (201), one part, complete, promoted to ready.
    const bytes = randomBytes(64 * 1024)
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`
    const begin = JSON.stringify({ expected_digest: digest, expected_size_bytes: bytes.byteLength })
    const upload = await curlJson<{ id: string }>(`${base}/v1/uploads`, { token: publisher, data: begin }, 201)
    const part = await curlJson<{ etag: string; size_bytes: number }>(`${base}/v1/uploads/${upload.id}/parts/1`, {
      method: "PUT",
      token: publisher,
      data: bytes
    }, 200)
    expect(part.size_bytes).toBe(bytes.byteLength)
    await curlJson(`${base}/v1/uploads/${upload.id}/complete`, {
      token: publisher,
      data: JSON.stringify({ parts: [{ number: 1, etag: part.etag, size_bytes: part.size_bytes }] })
    }, 200)
    const deadline = Date.now() + 30_000
    let state = ""
    while (state !== "ready" && Date.now() < deadline) {
      state = (await curlJson<{ state: string }>(`${base}/v1/uploads/${upload.id}`, {}, 200)).state
      if (state === "failed") break
      if (state !== "ready") await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(state).toBe("ready")

    // … and creates an image.
    const image = await curlJson<{ name: string }>(`${base}/v1/images`, {
      token: publisher,
      data: "{\"name\":\"tutorial\"}"
    }, 201)
    expect(image.name).toBe("tutorial")

    // The bootstrap token manages auth but cannot write content.
    for (const [path, data] of [["/v1/uploads", begin], ["/v1/images", "{\"name\":\"bootstrap-image\"}"]] as const) {
      const refused = await curl(`${base}${path}`, { token, data })
      expect(refused.status, path).toBe(403)
      expect(((await refused.json()) as { detail: string }).detail).toBe(
        "principal is not authorized for action content.write"
      )
    }

    // The management handlers saw the resolved bootstrap principal (the audit trail names it),
    // and neither token reached the log.
    const audit = proc.stderr().split("\n").filter((line) => line.includes("msg=\"principal created\""))
    expect(audit).toHaveLength(1)
    expect(audit[0]).toContain(`actor_principal_id=${bootstrapPrincipal}`)
    expect(proc.stderr()).not.toContain(token)
    expect(proc.stderr()).not.toContain(publisher)
    expect(proc.stdout().match(TOKEN_PATTERN)).toEqual([token])
  })
})
