import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose"
import { execFile } from "node:child_process"
import { createHmac } from "node:crypto"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import type { ServerResponse } from "node:http"
import * as https from "node:https"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

/**
 * A real OIDC issuer for tests, on 127.0.0.1 over HTTPS with a self-signed
 * certificate made for this run (`openssl`). imgsrv trusts it the way an operator
 * trusts a private CA: `--oidc-ca-file` names the certificate. It serves a discovery
 * document and a JWKS, signs tokens with keys made by `jose`, and can misbehave on
 * demand (hang, fail, lie about its issuer, rotate keys).
 */

export interface SigningKey {
  readonly kid: string
  readonly alg: string
  readonly privateKey: CryptoKey
  readonly publicJwk: JWK
}

export interface TestIssuer {
  /** `https://127.0.0.1:<port>` — also the `iss` of every token it signs. */
  readonly issuer: string
  /** PEM file to pass as `--oidc-ca-file`. */
  readonly caFile: string
  readonly caPem: string
  /** Keys published in the JWKS (the first signs by default). */
  readonly keys: Array<SigningKey>
  /** Counts of requests per path. */
  readonly hits: Map<string, number>
  /** Overrides of the discovery document's members (e.g. `{ issuer: "https://elsewhere" }`). */
  discoveryOverrides: Record<string, unknown>
  /** "hang": never answer; a number: answer with that status. */
  discoveryMode: "ok" | "hang" | number
  jwksMode: "ok" | "hang" | number
  /** Real milliseconds the JWKS answer is held back. */
  jwksDelayMs: number
  /** Extra raw JWKs published after the signing keys (e.g. `use: "enc"` keys). */
  extraJwks: Array<JWK>
  readonly newKey: (alg?: "RS256" | "PS256" | "ES256") => Promise<SigningKey>
  /** A token with the default claims of spec/auth.md §9 "OIDC end-to-end", merged with `claims`. */
  readonly sign: (
    claims?: Record<string, unknown>,
    options?: { readonly key?: SigningKey; readonly kid?: string | null; readonly omit?: ReadonlyArray<string> }
  ) => Promise<string>
  readonly close: () => Promise<void>
}

const run = promisify(execFile)

let keyCounter = 0

export const makeKey = async (alg: "RS256" | "PS256" | "ES256" = "RS256"): Promise<SigningKey> => {
  const { privateKey, publicKey } = await generateKeyPair(alg)
  const kid = `key-${++keyCounter}-${alg.toLowerCase()}`
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } }
}

export const defaultClaims = (issuer: string): JWTPayload & Record<string, unknown> => {
  const now = Math.floor(Date.now() / 1000)
  return {
    iss: issuer,
    sub: "subject-1",
    aud: ["imgsrv-api", "other-api"],
    exp: now + 300,
    nbf: now - 60,
    iat: now,
    scope: "openid profile imgsrv.write"
  }
}

export interface TestCertificate {
  /** PEM file of the certificate, to pass as `--oidc-ca-file`. */
  readonly caFile: string
  readonly certPem: string
  readonly keyPem: string
  readonly remove: () => Promise<void>
}

/** A self-signed certificate for 127.0.0.1 (one per test file; every local issuer may share it). */
export const createTestCertificate = async (): Promise<TestCertificate> => {
  const dir = await mkdtemp(path.join(tmpdir(), "imgsrv-issuer-"))
  const keyFile = path.join(dir, "key.pem")
  const caFile = path.join(dir, "cert.pem")
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    caFile,
    "-days",
    "1",
    "-subj",
    "/CN=imgsrv test issuer",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost"
  ])
  return {
    caFile,
    certPem: await readFile(caFile, "utf8"),
    keyPem: await readFile(keyFile, "utf8"),
    remove: () => rm(dir, { recursive: true, force: true })
  }
}

export const startTestIssuer = async (certificate?: TestCertificate): Promise<TestIssuer> => {
  const ownCertificate = certificate === undefined
  const tls = certificate ?? await createTestCertificate()
  const caFile = tls.caFile
  const caPem = tls.certPem
  const hanging = new Set<ServerResponse>()

  const state: Pick<TestIssuer, "discoveryOverrides" | "discoveryMode" | "jwksMode" | "jwksDelayMs" | "extraJwks"> = {
    discoveryOverrides: {},
    discoveryMode: "ok",
    jwksMode: "ok",
    jwksDelayMs: 0,
    extraJwks: []
  }
  const keys: Array<SigningKey> = [await makeKey()]
  const hits = new Map<string, number>()
  let issuer = ""

  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    const url = req.url ?? "/"
    hits.set(url, (hits.get(url) ?? 0) + 1)
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" })
      res.end(JSON.stringify(body))
    }
    if (url === "/.well-known/openid-configuration") {
      if (state.discoveryMode === "hang") {
        hanging.add(res)
        return
      }
      if (typeof state.discoveryMode === "number") return json(state.discoveryMode, { error: "unavailable" })
      return json(200, {
        issuer,
        jwks_uri: `${issuer}/jwks`,
        id_token_signing_alg_values_supported: ["RS256"],
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        ...state.discoveryOverrides
      })
    }
    if (url === "/jwks") {
      if (state.jwksMode === "hang") {
        hanging.add(res)
        return
      }
      if (typeof state.jwksMode === "number") return json(state.jwksMode, { error: "unavailable" })
      const body = { keys: [...keys.map((k) => k.publicJwk), ...state.extraJwks] }
      if (state.jwksDelayMs > 0) return void setTimeout(() => json(200, body), state.jwksDelayMs)
      return json(200, body)
    }
    json(404, { error: "not found" })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  issuer = `https://127.0.0.1:${port}`

  const sign: TestIssuer["sign"] = async (claims = {}, options = {}) => {
    const key = options.key ?? keys[0]!
    const payload: Record<string, unknown> = { ...defaultClaims(issuer), ...claims }
    for (const name of options.omit ?? []) delete payload[name]
    const header: { alg: string; kid?: string } = { alg: key.alg }
    if (options.kid !== null) header.kid = options.kid ?? key.kid
    return new SignJWT(payload as JWTPayload).setProtectedHeader(header).sign(key.privateKey)
  }

  // The returned object IS the mutable state the server reads on every request.
  const self: TestIssuer = Object.assign(state, {
    issuer,
    caFile,
    caPem,
    keys,
    hits,
    newKey: makeKey,
    sign,
    close: async () => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      if (ownCertificate) await tls.remove()
    }
  })
  return self
}

const base64url = (input: string | Buffer) => Buffer.from(input).toString("base64url")

/** An unsigned token (`alg: none`) with the given claims. */
export const unsignedToken = (claims: Record<string, unknown>) =>
  `${base64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${base64url(JSON.stringify(claims))}.`

/**
 * The classic key-confusion forgery: HS256 "signed" with the issuer's public key
 * (its JWK JSON as the HMAC secret) — must never verify.
 */
export const hs256WithPublicKey = (claims: Record<string, unknown>, publicJwk: JWK, kid?: string) => {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT", ...(kid ? { kid } : {}) }))
  const payload = base64url(JSON.stringify(claims))
  const signature = createHmac("sha256", JSON.stringify(publicJwk)).update(`${header}.${payload}`).digest("base64url")
  return `${header}.${payload}.${signature}`
}
