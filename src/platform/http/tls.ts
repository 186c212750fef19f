import { Data, Effect, Option, Runtime } from "effect"
import type { Scope } from "effect"
import { X509Certificate } from "node:crypto"
import { readFile } from "node:fs/promises"
import * as http from "node:http"
import * as https from "node:https"
import * as tls from "node:tls"
import type { TlsFiles } from "../config/config.js"

/**
 * HTTPS on the API listener itself (`--tls-cert-file` / `--tls-key-file`): Incus and LXD
 * accept Simple Streams remotes only over https, so a single imgsrv can be a remote
 * without a proxy. TLS 1.2 and 1.3 (LXD's client insists on 1.3). SIGHUP re-reads both
 * files and swaps the certificate for new connections; open connections keep theirs.
 */

/** The certificate and key files cannot be used: start-up stops with this one line. */
export class TlsFilesInvalid extends Data.TaggedError("TlsFilesInvalid")<{ readonly reason: string }> {
  override get message() {
    return `invalid TLS certificate or key: ${this.reason}`
  }
}

interface Credentials {
  readonly options: tls.SecureContextOptions
  /** What the log says about the certificate: subject, expiry, SHA-256 fingerprint. */
  readonly summary: Record<string, string>
}

const describeError = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return typeof code === "string" && !error.message.includes(code) ? `${error.message} (${code})` : error.message
}

const readPem = (file: string, flag: string, env: string) =>
  Effect.tryPromise({
    try: () => readFile(file),
    catch: (error) => new TlsFilesInvalid({ reason: `cannot read --${flag} (${env}) ${file}: ${describeError(error)}` })
  })

/** Reads and checks both files: a PEM certificate, a PEM key, and the key belonging to the certificate. */
export const loadCredentials = (files: TlsFiles): Effect.Effect<Credentials, TlsFilesInvalid> =>
  Effect.gen(function*() {
    const cert = yield* readPem(files.certFile, "tls-cert-file", "IMGSRV_TLS_CERT_FILE")
    const key = yield* readPem(files.keyFile, "tls-key-file", "IMGSRV_TLS_KEY_FILE")
    const certificate = yield* Effect.try({
      try: () => new X509Certificate(cert),
      catch: () =>
        new TlsFilesInvalid({
          reason: `--tls-cert-file (IMGSRV_TLS_CERT_FILE) ${files.certFile} holds no PEM certificate`
        })
    })
    const options: tls.SecureContextOptions = { cert, key, minVersion: "TLSv1.2", maxVersion: "TLSv1.3" }
    yield* Effect.try({
      try: () => tls.createSecureContext(options),
      catch: (error) => {
        const code = (error as { code?: unknown }).code
        return new TlsFilesInvalid({
          reason: code === "ERR_OSSL_X509_KEY_VALUES_MISMATCH"
            ? `the key in --tls-key-file (IMGSRV_TLS_KEY_FILE) ${files.keyFile} does not belong to the ` +
              `certificate in --tls-cert-file (IMGSRV_TLS_CERT_FILE) ${files.certFile}`
            : `--tls-key-file (IMGSRV_TLS_KEY_FILE) ${files.keyFile} holds no usable PEM private key ` +
              `(${describeError(error)})`
        })
      }
    })
    return {
      options,
      summary: {
        subject: certificate.subject.replace(/\n/g, ", "),
        valid_to: certificate.validTo,
        fingerprint256: certificate.fingerprint256
      }
    }
  })

/**
 * The API's Node server: plain HTTP, or HTTPS with the configured files. With TLS, the
 * returned scope-bound SIGHUP handler reloads the files; a failed reload is logged and
 * keeps the current certificate (the process never dies of a bad file on disk).
 */
export const makeApiNodeServer = (
  files: Option.Option<TlsFiles>,
  options: http.ServerOptions
): Effect.Effect<http.Server, TlsFilesInvalid, Scope.Scope> =>
  Effect.gen(function*() {
    if (Option.isNone(files)) return http.createServer(options)
    const loaded = yield* loadCredentials(files.value)
    const server = https.createServer({ ...options, ...loaded.options })
    yield* Effect.logInfo("TLS certificate loaded: the API listener serves HTTPS").pipe(
      Effect.annotateLogs(loaded.summary)
    )

    const reloads = yield* Effect.makeSemaphore(1)
    const reload = loadCredentials(files.value).pipe(
      Effect.tap((fresh) =>
        Effect.sync(() => server.setSecureContext(fresh.options)).pipe(
          Effect.zipRight(Effect.logInfo("TLS certificate reloaded").pipe(Effect.annotateLogs(fresh.summary)))
        )
      ),
      Effect.catchTag("TlsFilesInvalid", (error) =>
        Effect.logError("TLS reload failed; keeping the current certificate").pipe(
          Effect.annotateLogs({ reason: error.reason })
        )),
      reloads.withPermits(1)
    )
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const onHangup = () =>
      void runFork(reload)
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        process.on("SIGHUP", onHangup)
      ),
      () => Effect.sync(() => process.off("SIGHUP", onHangup))
    )
    return server
  })
