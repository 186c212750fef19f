import { Context, Data, Duration, Effect, Layer, Option } from "effect"
import { readFile } from "node:fs/promises"
import * as https from "node:https"
import * as tls from "node:tls"
import { AppConfig } from "../../platform/config/config.js"

/**
 * The only outbound HTTP imgsrv's auth does: OIDC discovery documents and JWKS.
 * HTTPS only, a deadline for the whole exchange, a byte cap on the body, at most a
 * few https→https redirects, and JSON out. Extra trusted CAs come from
 * `--oidc-ca-file` (issuers behind a private CA; the tests' local issuer).
 */

/** Why a fetch failed, in words fit for an operator (no internal detail). */
export class OidcFetchFailed extends Data.TaggedError("OidcFetchFailed")<{
  readonly url: string
  readonly reason: string
}> {}

export interface FetchJsonOptions {
  readonly timeout: Duration.DurationInput
  readonly maxBytes: number
}

export class OidcHttp extends Context.Tag("imgsrv/OidcHttp")<OidcHttp, {
  readonly getJson: (url: string, options: FetchJsonOptions) => Effect.Effect<unknown, OidcFetchFailed>
}>() {}

/** The CA file named by `--oidc-ca-file` could not be read or holds no certificate. */
export class OidcCaFileInvalid extends Data.TaggedError("OidcCaFileInvalid")<{
  readonly file: string
  readonly reason: string
}> {
  override get message() {
    return `invalid --oidc-ca-file (IMGSRV_OIDC_CA_FILE) ${this.file}: ${this.reason}`
  }
}

const MAX_REDIRECTS = 3

interface Exchange {
  readonly status: number
  readonly location?: string
  readonly body?: Buffer
}

const describeError = (error: unknown): string => {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    return typeof code === "string" && !error.message.includes(code) ? `${error.message} (${code})` : error.message
  }
  return String(error)
}

export const makeOidcHttp = (extraCa: ReadonlyArray<string>) => {
  // Passing `ca` replaces the default trust store, so keep the system roots too.
  const ca = extraCa.length > 0 ? [...tls.rootCertificates, ...extraCa] : undefined

  const exchange = (url: URL, maxBytes: number) =>
    Effect.async<Exchange, OidcFetchFailed>((resume) => {
      let settled = false
      const settle = (effect: Effect.Effect<Exchange, OidcFetchFailed>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      const fail = (reason: string) => settle(Effect.fail(new OidcFetchFailed({ url: url.toString(), reason })))
      const request = https.request(url, {
        method: "GET",
        headers: { accept: "application/json", "user-agent": "imgsrv" },
        ...(ca ? { ca } : {})
      }, (response) => {
        const status = response.statusCode ?? 0
        if (status >= 300 && status < 400 && typeof response.headers.location === "string") {
          response.resume()
          return settle(Effect.succeed({ status, location: response.headers.location }))
        }
        if (status < 200 || status >= 300) {
          response.resume()
          return fail(`unexpected status ${status}`)
        }
        const declared = Number(response.headers["content-length"] ?? "0")
        if (declared > maxBytes) {
          request.destroy()
          return fail(`response exceeds ${maxBytes} bytes`)
        }
        const chunks: Array<Buffer> = []
        let size = 0
        response.on("data", (chunk: Buffer) => {
          size += chunk.length
          if (size > maxBytes) {
            request.destroy()
            fail(`response exceeds ${maxBytes} bytes`)
          } else {
            chunks.push(chunk)
          }
        })
        response.on("end", () => settle(Effect.succeed({ status, body: Buffer.concat(chunks) })))
        response.on("error", (error) => fail(describeError(error)))
      })
      request.on("error", (error) => fail(describeError(error)))
      request.end()
      return Effect.sync(() => request.destroy())
    })

  const getJson = (url: string, options: FetchJsonOptions) =>
    Effect.gen(function*() {
      let target = new URL(url)
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        if (target.protocol !== "https:") {
          return yield* new OidcFetchFailed({ url, reason: "only https URLs are fetched" })
        }
        const result = yield* exchange(target, options.maxBytes)
        if (result.location !== undefined) {
          target = new URL(result.location, target)
          continue
        }
        try {
          return JSON.parse((result.body ?? Buffer.alloc(0)).toString("utf8")) as unknown
        } catch {
          return yield* new OidcFetchFailed({ url, reason: "response is not valid JSON" })
        }
      }
      return yield* new OidcFetchFailed({ url, reason: "too many redirects" })
    }).pipe(
      Effect.timeoutFail({
        duration: options.timeout,
        onTimeout: () =>
          new OidcFetchFailed({ url, reason: `no answer within ${Duration.format(Duration.decode(options.timeout))}` })
      }),
      Effect.withSpan("auth.oidc_fetch", { attributes: { "url.full": url } })
    )

  return OidcHttp.of({ getJson })
}

/** Reads `--oidc-ca-file` once at start-up; an unreadable or empty file stops start-up. */
export const OidcHttpLive = Layer.effect(
  OidcHttp,
  Effect.gen(function*() {
    const config = yield* AppConfig
    if (Option.isNone(config.oidcCaFile)) return makeOidcHttp([])
    const file = config.oidcCaFile.value
    const text = yield* Effect.tryPromise({
      try: () => readFile(file, "utf8"),
      catch: (error) => new OidcCaFileInvalid({ file, reason: describeError(error) })
    })
    const certificates = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
    if (certificates.length === 0) {
      return yield* new OidcCaFileInvalid({ file, reason: "no PEM certificate found" })
    }
    yield* Effect.logInfo("extra OIDC CA certificates loaded").pipe(
      Effect.annotateLogs({ file, certificates: certificates.length })
    )
    return makeOidcHttp(certificates)
  })
)
