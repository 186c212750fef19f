import { execFile } from "node:child_process"
import { X509Certificate } from "node:crypto"
import { readFile, writeFile } from "node:fs/promises"
import * as https from "node:https"
import * as path from "node:path"
import { promisify } from "node:util"
import type { ApiClient } from "./harness.js"

/**
 * Throwaway certificates for TLS tests, made with the `openssl` binary: a CA, and
 * server certificates it signs for `localhost` / `127.0.0.1` (what real clients verify).
 */

const run = promisify(execFile)

export interface Pem {
  readonly certFile: string
  readonly keyFile: string
  /** SHA-256 fingerprint as Node's `X509Certificate.fingerprint256` prints it. */
  readonly fingerprint256: string
}

const fingerprintOf = async (certFile: string) => new X509Certificate(await readFile(certFile)).fingerprint256

/** A self-signed CA in `dir` (`<name>.crt`, `<name>.key`). */
export const makeCa = async (dir: string, name = "ca"): Promise<Pem> => {
  const certFile = path.join(dir, `${name}.crt`)
  const keyFile = path.join(dir, `${name}.key`)
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=imgsrv test ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout",
    keyFile,
    "-out",
    certFile
  ])
  return { certFile, keyFile, fingerprint256: await fingerprintOf(certFile) }
}

/** A server certificate for localhost and 127.0.0.1, signed by `ca` (`<name>.crt`, `<name>.key`). */
export const issueServerCert = async (ca: Pem, dir: string, name: string): Promise<Pem> => {
  const certFile = path.join(dir, `${name}.crt`)
  const keyFile = path.join(dir, `${name}.key`)
  const csr = path.join(dir, `${name}.csr`)
  const extensions = path.join(dir, `${name}.ext`)
  await writeFile(
    extensions,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
  )
  await run("openssl", [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    keyFile,
    "-out",
    csr
  ])
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    extensions,
    "-out",
    certFile
  ])
  return { certFile, keyFile, fingerprint256: await fingerprintOf(certFile) }
}

/**
 * An `ApiClient` for an imgsrv (or a proxy) serving HTTPS with a certificate from `ca`:
 * `fetch` cannot be given a CA, so this speaks through `node:https` and hands back a
 * `Response` like the other clients do.
 */
export const httpsApiClient = (baseUrl: string, ca: Buffer): ApiClient => {
  const agent = new https.Agent({ ca, keepAlive: true })
  return {
    request: (method, pathAndQuery, init = {}) =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = { ...init.headers }
        if (init.token !== undefined) headers["authorization"] = `Bearer ${init.token}`
        let body: Uint8Array | undefined
        if (init.json !== undefined) {
          body = new TextEncoder().encode(JSON.stringify(init.json))
          headers["content-type"] ??= "application/json"
        } else if (init.body instanceof Uint8Array) {
          body = init.body
        } else if (init.body !== undefined && init.body !== null) {
          return reject(new Error("httpsApiClient sends JSON or bytes only"))
        }
        if (body !== undefined) headers["content-length"] = String(body.byteLength)
        const request = https.request(new URL(pathAndQuery, baseUrl), { method, headers, agent }, (response) => {
          const chunks: Array<Buffer> = []
          response.on("data", (chunk: Buffer) => chunks.push(chunk))
          response.on("error", reject)
          response.on("end", () => {
            const status = response.statusCode ?? 0
            const responseHeaders = new Headers()
            for (const [name, value] of Object.entries(response.headers)) {
              for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
                responseHeaders.append(name, v)
              }
            }
            const noBody = status === 204 || status === 304 || method === "HEAD"
            resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, headers: responseHeaders }))
          })
        })
        request.on("error", reject)
        request.end(body)
      })
  }
}
