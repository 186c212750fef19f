import { Clock, Context, Data, Deferred, Duration, Effect, Layer, Option, Ref } from "effect"
import { type CryptoKey, decodeJwt, decodeProtectedHeader, importJWK, type JWK, jwtVerify } from "jose"
import { IdentityProviderUnavailable } from "../errors.js"
import { AuthRepository, type ProviderRow } from "../repository.js"
import { ASYMMETRIC_ALGORITHMS } from "./discovery.js"
import { OidcHttp } from "./http.js"

/**
 * Verifies a JWT presented as a bearer token against the trust record of its issuer
 * (spec/auth.md §5.5), with `jose`. Only issuers some provisioning rule trusted are
 * looked at; nothing else ever causes an outbound request.
 *
 * Keys come from our own fetch (https only, 5 s, 1 MiB) and cache (5 minutes,
 * concurrent misses share one fetch; failures are not cached). A token whose `kid`
 * is not in the cached set triggers one forced refetch, at most once per 30 s per
 * JWKS URL, so a key rotation is picked up at once while random kids cannot drive a
 * fetch storm.
 */

export const JWKS_TIMEOUT = "5 seconds"
export const JWKS_MAX_BYTES = 1024 * 1024
export const JWKS_TTL = Duration.minutes(5)
export const FORCED_REFRESH_INTERVAL = Duration.seconds(30)
/** Allowed clock difference for `exp`, `nbf` and `iat` between imgsrv and the issuer. */
export const CLOCK_SKEW_SECONDS = 30

/** A verified OIDC identity: issuer, raw `sub`, forwarded claims, `jti`. */
export interface VerifiedIdentity {
  readonly provider: string
  readonly subject: string
  readonly claims: Readonly<Record<string, unknown>>
  readonly credentialId: string
}

/** Why a JWT was refused (debug logs only; the client always sees one 401). */
export class JwtRejected extends Data.TaggedError("JwtRejected")<{ readonly reason: string }> {}

export class OidcVerifier extends Context.Tag("imgsrv/OidcVerifier")<OidcVerifier, {
  /** None when the credential is not a JWT at all. */
  readonly verify: (
    jwt: string
  ) => Effect.Effect<Option.Option<VerifiedIdentity>, JwtRejected | IdentityProviderUnavailable>
}>() {}

interface UsableKey {
  readonly kid: string | undefined
  readonly alg: string
  readonly key: CryptoKey | Uint8Array
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Only the public members of a JWK: a JWKS that leaks a private key still gives us a verify-only key. */
const publicPart = (jwk: Record<string, unknown>): JWK | undefined => {
  switch (jwk["kty"]) {
    case "RSA":
      return { kty: "RSA", n: jwk["n"] as string, e: jwk["e"] as string }
    case "EC":
      return { kty: "EC", crv: jwk["crv"] as string, x: jwk["x"] as string, y: jwk["y"] as string }
    case "OKP":
      return { kty: "OKP", crv: jwk["crv"] as string, x: jwk["x"] as string }
    default:
      return undefined // "oct" (symmetric) and unknown key types are never usable
  }
}

/**
 * The keys of a JWKS this provider may verify with: `use` absent or `sig`; `key_ops`
 * absent or containing `verify`; `alg` one of the provider's algorithms — or, without
 * `alg`, the provider's only algorithm. Keys that fail to import are dropped.
 */
export const usableKeys = (jwks: unknown, algorithms: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const keys = isRecord(jwks) && Array.isArray(jwks["keys"]) ? jwks["keys"] : undefined
    if (keys === undefined) return yield* Effect.fail("the JWKS is not a JSON object with a keys list")
    const usable: Array<UsableKey> = []
    for (const jwk of keys) {
      if (!isRecord(jwk)) continue
      if (jwk["use"] !== undefined && jwk["use"] !== "sig") continue
      if (jwk["key_ops"] !== undefined && !(Array.isArray(jwk["key_ops"]) && jwk["key_ops"].includes("verify"))) {
        continue
      }
      const declared = jwk["alg"]
      const alg = typeof declared === "string" ? declared : algorithms.length === 1 ? algorithms[0] : undefined
      if (alg === undefined || !algorithms.includes(alg) || !ASYMMETRIC_ALGORITHMS.has(alg)) continue
      const material = publicPart(jwk)
      if (material === undefined) continue
      const imported = yield* Effect.tryPromise(() => importJWK({ ...material, ext: true }, alg)).pipe(
        // Skipped like any unusable key, but an operator chasing "no usable signing key" can see why.
        Effect.tapError((error) =>
          Effect.logDebug("JWKS key skipped: import failed").pipe(
            Effect.annotateLogs({ kid: String(jwk["kid"] ?? ""), alg, error: error.message })
          )
        ),
        Effect.option
      )
      if (Option.isNone(imported)) continue
      usable.push({ kid: typeof jwk["kid"] === "string" ? jwk["kid"] : undefined, alg, key: imported.value })
    }
    if (usable.length === 0) return yield* Effect.fail("the JWKS holds no usable signing key")
    return usable as ReadonlyArray<UsableKey>
  })

const cacheKey = (provider: ProviderRow) => JSON.stringify([provider.jwksUrl, effectiveAlgorithms(provider)])

/** The provider's algorithms; an issuer that advertised none signs with RS256. */
const effectiveAlgorithms = (provider: ProviderRow): ReadonlyArray<string> =>
  provider.supportedSigningAlgorithms.length === 0 ? ["RS256"] : provider.supportedSigningAlgorithms

/** The forwarded claims present in `payload`, deep-copied (always `aud` when present). */
export const forwardedClaims = (payload: Record<string, unknown>, names: ReadonlyArray<string>) => {
  const claims: Record<string, unknown> = {}
  for (const name of new Set([...names, "aud"])) {
    if (Object.hasOwn(payload, name) && payload[name] !== undefined) {
      claims[name] = JSON.parse(JSON.stringify(payload[name])) as unknown
    }
  }
  return claims
}

export const OidcVerifierLive = Layer.scoped(
  OidcVerifier,
  Effect.gen(function*() {
    const repo = yield* AuthRepository
    const http = yield* OidcHttp

    const fetchKeys = (key: string) =>
      Effect.gen(function*() {
        const [jwksUrl, algorithms] = JSON.parse(key) as [string, ReadonlyArray<string>]
        const document = yield* http.getJson(jwksUrl, { timeout: JWKS_TIMEOUT, maxBytes: JWKS_MAX_BYTES }).pipe(
          Effect.mapError((failure) => failure.reason)
        )
        return yield* usableKeys(document, algorithms)
      })

    // The key cache. Only successes are kept (a failed fetch is retried by the next
    // request). Concurrent misses share one fetch, which runs in the layer's scope,
    // not in a request's fiber: a client hanging up cannot cancel it for the others.
    const scope = yield* Effect.scope
    const cached = new Map<string, { readonly keys: ReadonlyArray<UsableKey>; readonly fetchedAt: number }>()
    const inFlight = new Map<string, Deferred.Deferred<ReadonlyArray<UsableKey>, string>>()

    const fetchShared = (key: string) =>
      Effect.gen(function*() {
        const pending = inFlight.get(key)
        if (pending) return yield* Deferred.await(pending)
        const deferred = yield* Deferred.make<ReadonlyArray<UsableKey>, string>()
        inFlight.set(key, deferred)
        yield* fetchKeys(key).pipe(
          Effect.tap((keys) => Effect.map(Clock.currentTimeMillis, (now) => cached.set(key, { keys, fetchedAt: now }))),
          Effect.exit,
          Effect.flatMap((exit) =>
            Effect.sync(() => inFlight.delete(key)).pipe(Effect.zipRight(Deferred.done(deferred, exit)))
          ),
          Effect.forkIn(scope)
        )
        return yield* Deferred.await(deferred)
      })

    const cachedKeys = (key: string) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const entry = cached.get(key)
        if (entry && now - entry.fetchedAt < Duration.toMillis(JWKS_TTL)) return entry.keys
        return yield* fetchShared(key)
      })

    const lastForcedRefresh = yield* Ref.make(new Map<string, number>())

    /** The client sees a generic 503; the operator's log says which issuer and why. */
    const unavailable = (provider: ProviderRow) => (reason: string) =>
      Effect.logWarning("OIDC signing keys unavailable").pipe(
        Effect.annotateLogs({ identity_provider: provider.issuer, jwks_url: provider.jwksUrl, reason }),
        Effect.zipRight(Effect.fail(new IdentityProviderUnavailable({ issuer: provider.issuer, reason })))
      )

    const keysFor = (provider: ProviderRow) =>
      cachedKeys(cacheKey(provider)).pipe(Effect.catchAll(unavailable(provider)))

    /** Refetches the JWKS unless that happened less than 30 s ago; true when it refetched. */
    const forceRefresh = (provider: ProviderRow) =>
      Effect.gen(function*() {
        const key = cacheKey(provider)
        const now = yield* Clock.currentTimeMillis
        const allowed = yield* Ref.modify(lastForcedRefresh, (map) => {
          const last = map.get(key)
          if (last !== undefined && now - last < Duration.toMillis(FORCED_REFRESH_INTERVAL)) return [false, map]
          return [true, new Map(map).set(key, now)]
        })
        if (!allowed) return false
        yield* Effect.logDebug("refreshing OIDC signing keys for an unknown kid").pipe(
          Effect.annotateLogs({ identity_provider: provider.issuer })
        )
        yield* fetchShared(key).pipe(Effect.catchAll(unavailable(provider)))
        return true
      })

    const reject = (reason: string) => Effect.fail(new JwtRejected({ reason }))

    const selectKey = (provider: ProviderRow, alg: string, kid: string | undefined) =>
      Effect.gen(function*() {
        for (let attempt = 0; attempt < 2; attempt++) {
          const keys = yield* keysFor(provider)
          const candidates = keys.filter((k) => k.alg === alg && (kid === undefined || k.kid === kid))
          if (candidates.length === 1) return candidates[0]!
          if (kid === undefined) {
            return yield* reject(
              candidates.length === 0 ? "no key for the token's algorithm" : "token has no kid and several keys match"
            )
          }
          if (candidates.length > 1) return yield* reject("several keys share the token's kid")
          if (keys.some((k) => k.kid === kid)) return yield* reject("the token's kid names a key of another algorithm")
          if (attempt === 0 && (yield* forceRefresh(provider))) continue
          return yield* reject("unknown kid")
        }
        return yield* reject("unknown kid")
      })

    const verify = (jwt: string) =>
      Effect.gen(function*() {
        let issuer: unknown
        let header: ReturnType<typeof decodeProtectedHeader>
        try {
          issuer = decodeJwt(jwt).iss
          header = decodeProtectedHeader(jwt)
        } catch {
          return Option.none<VerifiedIdentity>()
        }
        if (typeof issuer !== "string" || issuer === "") return yield* reject("no iss claim")
        const found = yield* repo.findProvider(issuer)
        if (Option.isNone(found)) return yield* reject("issuer is not trusted")
        const provider = found.value
        const algorithms = effectiveAlgorithms(provider)
        const alg = header.alg
        if (typeof alg !== "string" || !algorithms.includes(alg) || !ASYMMETRIC_ALGORITHMS.has(alg)) {
          return yield* reject(`algorithm ${JSON.stringify(alg)} is not allowed`)
        }
        const key = yield* selectKey(provider, alg, typeof header.kid === "string" ? header.kid : undefined)
        const now = yield* Clock.currentTimeMillis
        const verified = yield* Effect.tryPromise({
          try: () =>
            jwtVerify(jwt, key.key, {
              issuer: provider.issuer,
              audience: [...provider.audiences],
              algorithms: [alg],
              requiredClaims: ["sub", "exp", "aud"],
              clockTolerance: CLOCK_SKEW_SECONDS,
              currentDate: new Date(now)
            }),
          catch: (error) => new JwtRejected({ reason: error instanceof Error ? error.message : "verification failed" })
        })
        const payload = verified.payload as Record<string, unknown>
        const subject = payload["sub"]
        if (typeof subject !== "string" || subject === "") return yield* reject("sub is empty")
        const iat = payload["iat"]
        if (typeof iat === "number" && iat > now / 1000 + CLOCK_SKEW_SECONDS) {
          return yield* reject("iat is in the future")
        }
        const jti = payload["jti"]
        return Option.some<VerifiedIdentity>({
          provider: provider.issuer,
          subject,
          claims: forwardedClaims(payload, provider.forwardedClaims),
          credentialId: typeof jti === "string" ? jti : ""
        })
      }).pipe(Effect.withSpan("auth.oidc_verify"))

    return OidcVerifier.of({ verify })
  })
)
