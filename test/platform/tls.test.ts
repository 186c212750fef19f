import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import * as https from "node:https"
import { tmpdir } from "node:os"
import * as path from "node:path"
import type { TLSSocket } from "node:tls"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort, type ImgsrvProcess, spawnImgsrv } from "../support/process.js"
import { issueServerCert, makeCa, type Pem } from "../support/tls.js"

/**
 * HTTPS served by imgsrv itself (`--tls-cert-file` / `--tls-key-file`), on the real
 * process (ops-only mode: no database needed to serve TLS): TLS 1.2 and 1.3, the
 * certificate reloaded on SIGHUP for new connections while an open connection carries
 * on, a failed reload keeping the current certificate, and one-line start-up errors.
 */

interface Answer {
  readonly status: number
  readonly body: string
  /** The certificate the server presented on the connection that answered. */
  readonly fingerprint256: string
  readonly protocol: string | null
  readonly reusedSocket: boolean
}

const get = (url: string, options: https.RequestOptions) =>
  new Promise<Answer>((resolve, reject) => {
    const request = https.get(url, options, (response) => {
      const socket = response.socket as TLSSocket
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          body,
          fingerprint256: socket.getPeerCertificate().fingerprint256,
          protocol: socket.getProtocol(),
          reusedSocket: request.reusedSocket
        }))
    })
    request.on("error", reject)
  })

const startOpsOnly = (port: number, env: Record<string, string>) =>
  spawnImgsrv({
    env: { IMGSRV_EMBEDDED: "false", IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "", ...env }
  })

describe("imgsrv serving HTTPS itself", () => {
  let dir: string
  let ca: Pem
  let first: Pem
  let second: Pem
  let proc: ImgsrvProcess
  let url: string
  const certFile = () => path.join(dir, "live.crt")
  const keyFile = () => path.join(dir, "live.key")
  const install = async (pem: Pem) => {
    await copyFile(pem.certFile, certFile())
    await copyFile(pem.keyFile, keyFile())
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "imgsrv-tls-"))
    ca = await makeCa(dir)
    first = await issueServerCert(ca, dir, "first")
    second = await issueServerCert(ca, dir, "second")
    await install(first)
    const port = await freePort()
    url = `https://127.0.0.1:${port}/healthz`
    proc = startOpsOnly(port, { IMGSRV_TLS_CERT_FILE: certFile(), IMGSRV_TLS_KEY_FILE: keyFile() })
    await proc.waitFor(/http server listening/)
  })
  afterAll(async () => {
    if (proc) expect(await proc.stop()).toBe(0)
    await rm(dir, { recursive: true, force: true })
  })

  it("serves the API over TLS 1.3 and TLS 1.2 with the configured certificate, and no plain HTTP", async () => {
    const ca_ = await readFile(ca.certFile)
    const modern = await get(url, { ca: ca_, agent: false })
    expect([modern.status, modern.protocol, modern.fingerprint256]).toEqual([204, "TLSv1.3", first.fingerprint256])
    const older = await get(url, { ca: ca_, agent: false, maxVersion: "TLSv1.2" })
    expect([older.status, older.protocol]).toEqual([204, "TLSv1.2"])
    await expect(get(url, { ca: ca_, agent: false, maxVersion: "TLSv1.1", minVersion: "TLSv1" })).rejects.toThrow()
    await expect(fetch(url.replace("https:", "http:"))).rejects.toThrow()
    expect(proc.stderr()).toContain("TLS certificate loaded")
  })

  it("reloads the certificate on SIGHUP for new connections while an open connection carries on", async () => {
    const ca_ = await readFile(ca.certFile)
    const kept = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca_ })
    try {
      const before = await get(url, { agent: kept })
      expect(before.fingerprint256).toBe(first.fingerprint256)

      await install(second)
      proc.child.kill("SIGHUP")
      await proc.waitFor(/TLS certificate reloaded/)

      const fresh = await get(url, { ca: ca_, agent: false })
      expect([fresh.status, fresh.fingerprint256]).toEqual([204, second.fingerprint256])
      // The connection opened before the reload is still up and still answers.
      const again = await get(url, { agent: kept })
      expect([again.status, again.reusedSocket, again.fingerprint256]).toEqual([204, true, first.fingerprint256])
    } finally {
      kept.destroy()
    }
  })

  it("keeps serving the current certificate when a reload finds bad files", async () => {
    await writeFile(keyFile(), "not a key\n")
    proc.child.kill("SIGHUP")
    await proc.waitFor(/TLS reload failed; keeping the current certificate/)
    const still = await get(url, { ca: await readFile(ca.certFile), agent: false })
    expect([still.status, still.fingerprint256]).toEqual([204, second.fingerprint256])
    expect(proc.child.exitCode).toBeNull()
  })
})

describe("TLS settings that cannot work", () => {
  let dir: string
  let ca: Pem
  let server: Pem

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "imgsrv-tls-bad-"))
    ca = await makeCa(dir)
    server = await issueServerCert(ca, dir, "server")
  })
  afterAll(async () => rm(dir, { recursive: true, force: true }))

  const startupError = async (env: Record<string, string>) => {
    const proc = startOpsOnly(await freePort(), env)
    expect(await proc.exited).not.toBe(0)
    const lines = proc.stderr().trim().split("\n").filter((line) => line.startsWith("imgsrv: "))
    expect(lines, proc.stderr()).toHaveLength(1)
    return lines[0]!
  }

  it("stop start-up with one line naming the problem and the setting", async () => {
    const missing = path.join(dir, "missing.crt")
    const [unreadable, mismatched, notACertificate, alone] = await Promise.all([
      startupError({ IMGSRV_TLS_CERT_FILE: missing, IMGSRV_TLS_KEY_FILE: server.keyFile }),
      // The CA's key does not belong to the server certificate.
      startupError({ IMGSRV_TLS_CERT_FILE: server.certFile, IMGSRV_TLS_KEY_FILE: ca.keyFile }),
      startupError({ IMGSRV_TLS_CERT_FILE: server.keyFile, IMGSRV_TLS_KEY_FILE: server.keyFile }),
      startupError({ IMGSRV_TLS_CERT_FILE: server.certFile })
    ])
    expect(unreadable).toBe(
      `imgsrv: invalid TLS certificate or key: cannot read --tls-cert-file (IMGSRV_TLS_CERT_FILE) ${missing}: ` +
        `ENOENT: no such file or directory, open '${missing}'`
    )
    expect(mismatched).toBe(
      `imgsrv: invalid TLS certificate or key: the key in --tls-key-file (IMGSRV_TLS_KEY_FILE) ${ca.keyFile} ` +
        `does not belong to the certificate in --tls-cert-file (IMGSRV_TLS_CERT_FILE) ${server.certFile}`
    )
    expect(notACertificate).toContain(
      `--tls-cert-file (IMGSRV_TLS_CERT_FILE) ${server.keyFile} holds no PEM certificate`
    )
    expect(alone).toBe(
      "imgsrv: invalid configuration: --tls-cert-file (IMGSRV_TLS_CERT_FILE) and --tls-key-file " +
        "(IMGSRV_TLS_KEY_FILE) go together"
    )
  })
})
