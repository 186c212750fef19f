import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Layer, Option, TestClock } from "effect"
import { exportJWK, generateKeyPair, generateSecret } from "jose"
import { checkHttpsUrl, discoverIssuer, discoveryUrl, usableAlgorithms } from "../../src/auth/oidc/discovery.js"
import { makeOidcHttp, OidcHttp } from "../../src/auth/oidc/http.js"
import { OidcVerifier, OidcVerifierLive, usableKeys } from "../../src/auth/oidc/verifier.js"
import { AuthRepositoryLive } from "../../src/auth/repository.js"
import { type Principal, PrincipalId } from "../../src/auth/schema.js"
import { AuthManagement, AuthManagementLive } from "../../src/auth/service.js"
import { FreshIds } from "../../src/platform/fresh-ids.js"
import { TestDatabaseLive } from "../support/harness.js"
import { createTestCertificate, startTestIssuer, type TestIssuer } from "./oidc-issuer.js"

/**
 * The JWT verifier and discovery as services, against a real HTTPS issuer and real
 * PostgreSQL, with Effect's TestClock for cache lifetimes and fetch deadlines
 * (spec/auth.md §5.3, §5.5; §9 items 44, 45, 66–68).
 */

const actor: Principal = {
  id: PrincipalId.make("principal_TEST"),
  kind: "service",
  displayName: "test",
  credential: "api-token",
  transient: false
}

const issuerFixture = Effect.gen(function*() {
  const certificate = yield* Effect.acquireRelease(
    Effect.promise(() => createTestCertificate()),
    (c) => Effect.promise(() => c.remove())
  )
  const issuer = yield* Effect.acquireRelease(
    Effect.promise(() => startTestIssuer(certificate)),
    (i) => Effect.promise(() => i.close())
  )
  const http = Layer.succeed(OidcHttp, makeOidcHttp([certificate.certPem]))
  const services = Layer.mergeAll(OidcVerifierLive, AuthManagementLive).pipe(
    Layer.provideMerge(http),
    Layer.provideMerge(AuthRepositoryLive),
    Layer.provideMerge(TestDatabaseLive)
  )
  return { issuer, http, services }
})

/**
 * Runs `body` against a fresh test issuer that one rule accepts unconditionally, with
 * the test clock set to now (so token lifetimes and cache lifetimes agree).
 */
const withAcceptingRule = <A, E>(
  body: (issuer: TestIssuer, verifier: OidcVerifier["Type"]) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const { issuer, services } = yield* issuerFixture
    yield* TestClock.setTime(Date.now())
    return yield* Effect.gen(function*() {
      const management = yield* AuthManagement
      yield* management.createRule({
        display_name: "r",
        issuer_url: issuer.issuer,
        audience: "imgsrv-api",
        condition: "true"
      }, actor)
      return yield* body(issuer, yield* OidcVerifier)
    }).pipe(Effect.provide(services))
  })

/** Lets forked fibers reach their first real I/O before the test clock moves. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 150)))

const longLived = () => ({ exp: Math.floor(Date.now() / 1000) + 3600 })

describe("JWKS caching", () => {
  it.scoped("keeps keys for 5 minutes, then fetches them again", () =>
    withAcceptingRule((issuer, verifier) =>
      Effect.gen(function*() {
        const token = yield* Effect.promise(() => issuer.sign(longLived()))
        expect(Option.isSome(yield* verifier.verify(token))).toBe(true)
        yield* verifier.verify(token)
        yield* TestClock.adjust("4 minutes")
        yield* verifier.verify(token)
        expect(issuer.hits.get("/jwks")).toBe(1)
        yield* TestClock.adjust("61 seconds")
        yield* verifier.verify(token)
        expect(issuer.hits.get("/jwks")).toBe(2)
      })
    ))

  it.scoped("refetches for an unknown kid at most once per 30 seconds", () =>
    withAcceptingRule((issuer, verifier) =>
      Effect.gen(function*() {
        yield* verifier.verify(yield* Effect.promise(() => issuer.sign(longLived())))
        const stranger = yield* Effect.promise(() => issuer.newKey())
        const unknownKid = yield* Effect.promise(() => issuer.sign(longLived(), { key: stranger }))
        const rejected = yield* Effect.flip(verifier.verify(unknownKid))
        expect(rejected).toMatchObject({ _tag: "JwtRejected", reason: "unknown kid" })
        expect(issuer.hits.get("/jwks")).toBe(2)
        yield* Effect.flip(verifier.verify(unknownKid))
        yield* TestClock.adjust("29 seconds")
        yield* Effect.flip(verifier.verify(unknownKid))
        expect(issuer.hits.get("/jwks")).toBe(2)
        yield* TestClock.adjust("2 seconds")
        issuer.keys.push(stranger)
        expect(Option.isSome(yield* verifier.verify(unknownKid))).toBe(true)
        expect(issuer.hits.get("/jwks")).toBe(3)
      })
    ))

  it.scoped("shares one fetch between concurrent requests, and a caller hanging up does not cancel it for the others", () =>
    withAcceptingRule((issuer, verifier) =>
      Effect.gen(function*() {
        issuer.jwksDelayMs = 300
        const token = yield* Effect.promise(() => issuer.sign(longLived()))
        const leaving = yield* Effect.fork(verifier.verify(token))
        const staying = yield* Effect.fork(verifier.verify(token))
        yield* settle
        yield* Fiber.interrupt(leaving)
        const verified = yield* Fiber.join(staying)
        expect(Option.isSome(verified)).toBe(true)
        expect(issuer.hits.get("/jwks")).toBe(1)
      })
    ))

  it.scoped("gives up on a hanging JWKS after 5 seconds with an operational error", () =>
    withAcceptingRule((issuer, verifier) =>
      Effect.gen(function*() {
        issuer.jwksMode = "hang"
        const fiber = yield* Effect.fork(verifier.verify(yield* Effect.promise(() => issuer.sign(longLived()))))
        yield* settle
        yield* TestClock.adjust("5 seconds")
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("IdentityProviderUnavailable")
      })
    ))
})

describe("discovery", () => {
  it.scoped("fails within its 10 second deadline when the issuer hangs (502 with the reason)", () =>
    Effect.gen(function*() {
      const { issuer, http } = yield* issuerFixture
      issuer.discoveryMode = "hang"
      const fiber = yield* Effect.fork(discoverIssuer(issuer.issuer).pipe(Effect.provide(http)))
      yield* settle
      yield* TestClock.adjust("9 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const failure = yield* Effect.flip(Fiber.join(fiber))
      expect(failure).toMatchObject({ _tag: "IssuerDiscoveryFailed", reason: "no answer within 10s" })
    }))

  it.scoped("reads issuer, jwks_uri and algorithms from the document", () =>
    Effect.gen(function*() {
      const { issuer, http } = yield* issuerFixture
      issuer.discoveryOverrides = { id_token_signing_alg_values_supported: ["HS256", "RS256", "ES256", "none"] }
      const discovered = yield* discoverIssuer(issuer.issuer).pipe(Effect.provide(http))
      expect(discovered).toEqual({
        issuer: issuer.issuer,
        jwksUrl: `${issuer.issuer}/jwks`,
        algorithms: ["RS256", "ES256"]
      })
    }))

  it("builds the discovery URL from the issuer without trailing slash, query or fragment", () => {
    expect(discoveryUrl(new URL("https://issuer.example"))).toBe(
      "https://issuer.example/.well-known/openid-configuration"
    )
    expect(discoveryUrl(new URL("https://issuer.example/realms/x/?a=1#f")))
      .toBe("https://issuer.example/realms/x/.well-known/openid-configuration")
  })

  it("accepts only absolute https URLs without credentials or surrounding whitespace", () => {
    expect(Either.isRight(checkHttpsUrl("https://token.actions.githubusercontent.com", "issuer_url"))).toBe(true)
    for (
      const bad of [
        "",
        "http://issuer.example",
        "issuer.example",
        "/path",
        " https://issuer.example",
        "https://u:p@x.example",
        "ftp://x"
      ]
    ) {
      expect(Either.isLeft(checkHttpsUrl(bad, "issuer_url")), bad).toBe(true)
    }
  })

  it("keeps asymmetric algorithms only; RS256 when none are advertised", () => {
    expect(usableAlgorithms(undefined)).toEqual(Either.right(["RS256"]))
    expect(usableAlgorithms([])).toEqual(Either.right(["RS256"]))
    expect(usableAlgorithms(["HS256", "PS256"])).toEqual(Either.right(["PS256"]))
    expect(Either.isLeft(usableAlgorithms(["HS256", "HS512", "none", "XYZ"]))).toBe(true)
    expect(Either.isLeft(usableAlgorithms("RS256"))).toBe(true)
  })
})

describe("usable keys", () => {
  it.effect("drop enc, non-verify, other-algorithm, symmetric and alg-less keys (unless one algorithm), and strip private parts", () =>
    Effect.gen(function*() {
      const rsa = yield* Effect.promise(() => generateKeyPair("RS256", { extractable: true }))
      const ec = yield* Effect.promise(() => generateKeyPair("ES256"))
      const secret = yield* Effect.promise(() => generateSecret("HS256", { extractable: true }))
      const rsaPrivate = yield* Effect.promise(() => exportJWK(rsa.privateKey))
      const rsaPublic = yield* Effect.promise(() => exportJWK(rsa.publicKey))
      const ecPublic = yield* Effect.promise(() => exportJWK(ec.publicKey))
      const oct = yield* Effect.promise(() => exportJWK(secret))
      const jwks = {
        keys: [
          { ...rsaPublic, kid: "sig", alg: "RS256", use: "sig" },
          { ...rsaPublic, kid: "enc", alg: "RS256", use: "enc" },
          { ...rsaPublic, kid: "ops", alg: "RS256", key_ops: ["encrypt"] },
          { ...rsaPublic, kid: "ops-ok", alg: "RS256", key_ops: ["verify"] },
          { ...rsaPrivate, kid: "leaked-private", alg: "RS256" },
          { ...ecPublic, kid: "es", alg: "ES256" },
          { ...rsaPublic, kid: "no-alg" },
          { ...oct, kid: "hmac", alg: "HS256" },
          "not a key"
        ]
      }
      const onlyRs = yield* usableKeys(jwks, ["RS256"])
      expect(onlyRs.map((k) => k.kid)).toEqual(["sig", "ops-ok", "leaked-private", "no-alg"])
      for (const key of onlyRs) {
        expect((key.key as { type?: string }).type).toBe("public")
      }
      const both = yield* usableKeys(jwks, ["RS256", "ES256"])
      expect(both.map((k) => k.kid)).toEqual(["sig", "ops-ok", "leaked-private", "es"])
      expect(yield* Effect.flip(usableKeys({ keys: [{ ...oct, alg: "HS256" }] }, ["RS256"]))).toMatch(
        /no usable signing key/
      )
      expect(yield* Effect.flip(usableKeys({ nope: [] }, ["RS256"]))).toMatch(/keys list/)
    }))
})

describe("provisioning rule ids", () => {
  it.scoped("a rule created without an id gets a fresh UUID from FreshIds, so a test can fix it", () =>
    Effect.gen(function*() {
      const { issuer, services } = yield* issuerFixture
      const fixed = "00000000-0000-4000-8000-000000000007"
      const view = yield* Effect.flatMap(AuthManagement, (management) =>
        management.createRule({
          display_name: "r",
          issuer_url: issuer.issuer,
          audience: "imgsrv-api",
          condition: "true"
        }, actor)).pipe(
          Effect.provideService(FreshIds, { uuid: Effect.succeed(fixed) }),
          Effect.provide(services)
        )
      expect(view.id).toBe(fixed)
    }))
})
