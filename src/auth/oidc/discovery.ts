import { Effect, Either } from "effect"
import { InvalidRequest } from "../../platform/http/problem.js"
import { IssuerDiscoveryFailed } from "../errors.js"
import { OidcHttp } from "./http.js"

/**
 * Outbound OpenID discovery, done when a provisioning rule is saved — never on a
 * request from an untrusted issuer (spec/auth.md §5.3).
 */

export const DISCOVERY_TIMEOUT = "10 seconds"
export const DISCOVERY_MAX_BYTES = 1024 * 1024

/**
 * Signature algorithms a JWT may use: asymmetric only. `none` and the HMAC family
 * are never accepted — an HS256 token "signed" with an issuer's public key must not verify.
 */
export const ASYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set([
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519"
])

/** What discovery tells us about an issuer. */
export interface DiscoveredIssuer {
  readonly issuer: string
  readonly jwksUrl: string
  /** Asymmetric algorithms the issuer signs with; `["RS256"]` when it does not say. */
  readonly algorithms: ReadonlyArray<string>
}

/** An absolute `https://host…` URL without surrounding whitespace, or the 400 detail. */
export const checkHttpsUrl = (value: string, field: string): Either.Either<URL, string> => {
  if (value.trim() === "") return Either.left(`${field} is required`)
  if (value !== value.trim()) return Either.left(`${field} must not have surrounding whitespace`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return Either.left(`${field} must be an absolute HTTPS URL`)
  }
  if (url.protocol !== "https:" || url.hostname === "") return Either.left(`${field} must be an absolute HTTPS URL`)
  if (url.username !== "" || url.password !== "") return Either.left(`${field} must not contain credentials`)
  return Either.right(url)
}

/** `<issuer without trailing slash>/.well-known/openid-configuration`, query and fragment dropped. */
export const discoveryUrl = (issuer: URL): string => {
  const base = new URL(issuer.toString())
  base.search = ""
  base.hash = ""
  base.pathname = `${base.pathname.replace(/\/+$/, "")}/.well-known/openid-configuration`
  return base.toString()
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The asymmetric algorithms among those an issuer advertises. Symmetric, `none` and
 * unknown names are dropped (many issuers list HS256 next to RS256); an issuer left
 * with none is refused.
 */
export const usableAlgorithms = (advertised: unknown): Either.Either<ReadonlyArray<string>, string> => {
  if (advertised === undefined || (Array.isArray(advertised) && advertised.length === 0)) {
    return Either.right(["RS256"])
  }
  if (!Array.isArray(advertised) || !advertised.every((a) => typeof a === "string")) {
    return Either.left("its id_token_signing_alg_values_supported is not a list of names")
  }
  const usable = [...new Set(advertised.filter((a) => ASYMMETRIC_ALGORITHMS.has(a)))]
  return usable.length > 0
    ? Either.right(usable)
    : Either.left("it advertises no supported asymmetric signing algorithm (none and HS* are never accepted)")
}

/**
 * Fetches and checks an issuer's discovery document: 10 s deadline, 1 MiB cap, the
 * document's `issuer` equal to `issuerUrl` exactly, an https `jwks_uri`, at least one
 * usable algorithm. An unreachable or unreadable document is a 502; a document that
 * makes the issuer unusable is a 400 (the operator named the wrong URL or issuer).
 */
export const discoverIssuer = (issuerUrl: string) =>
  Effect.gen(function*() {
    const url = yield* Either.match(checkHttpsUrl(issuerUrl, "issuer_url"), {
      onLeft: (detail) => Effect.fail(new InvalidRequest({ detail })),
      onRight: Effect.succeed
    })
    const http = yield* OidcHttp
    const document = yield* http.getJson(discoveryUrl(url), {
      timeout: DISCOVERY_TIMEOUT,
      maxBytes: DISCOVERY_MAX_BYTES
    }).pipe(Effect.mapError((failure) => new IssuerDiscoveryFailed({ issuer: issuerUrl, reason: failure.reason })))
    const unusable = (why: string) => new InvalidRequest({ detail: `issuer ${issuerUrl} cannot be trusted: ${why}` })
    if (!isRecord(document)) return yield* unusable("its discovery document is not a JSON object")
    if (document["issuer"] !== issuerUrl) {
      return yield* unusable(
        `its discovery document names issuer ${JSON.stringify(document["issuer"])}, not exactly issuer_url`
      )
    }
    const jwksUri = document["jwks_uri"]
    if (typeof jwksUri !== "string" || Either.isLeft(checkHttpsUrl(jwksUri, "jwks_uri"))) {
      return yield* unusable("its jwks_uri is missing or not an absolute HTTPS URL")
    }
    const algorithms = yield* Either.match(usableAlgorithms(document["id_token_signing_alg_values_supported"]), {
      onLeft: (why) => Effect.fail(unusable(why)),
      onRight: Effect.succeed
    })
    return { issuer: issuerUrl, jwksUrl: jwksUri, algorithms } satisfies DiscoveredIssuer
  }).pipe(Effect.withSpan("auth.oidc_discovery"))
