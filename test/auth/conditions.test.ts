import { Either, FastCheck as fc } from "effect"
import { describe, expect, it } from "vitest"
import { canonicalJson, linkSubject, subjectHash } from "../../src/auth/oidc/authenticator.js"
import {
  checkCondition,
  checkGuardedCondition,
  compileCondition,
  guardedCondition,
  hasAny,
  hasToken,
  unguardedCondition
} from "../../src/auth/oidc/conditions.js"
import { forwardedClaims } from "../../src/auth/oidc/verifier.js"

/** CEL conditions, the audience guard, claim fingerprints (spec/auth.md §5.4, §5.6; §9 items 42, 43, 46–48, 61, 64, 71). */

const identity = {
  provider: "https://issuer.example",
  subject: "repo:meigma/imgsrv:ref:refs/heads/main",
  credential_id: ""
}

const left = (result: Either.Either<unknown, string>) => Either.isLeft(result) ? result.left : undefined

describe("checkCondition", () => {
  it("refuses a condition that does not produce bool", () => {
    expect(left(checkCondition("claims.repository_id"))).toMatch(/condition must produce bool/)
    expect(left(checkCondition("identity.subject"))).toMatch(/condition must produce bool/)
  })

  it("refuses empty, oversized, invalid and undeclared-variable conditions with a 400 detail", () => {
    expect(left(checkCondition("   "))).toBe("condition is required")
    expect(left(checkCondition(`claims.a == "${"x".repeat(4100)}"`))).toBe("condition exceeds 4096 bytes")
    expect(left(checkCondition("claims.a ==")))?.toMatch(/^condition is invalid: /)
    expect(left(checkCondition("request.user == 'x'"))).toMatch(/^condition is invalid: /)
    expect(left(checkCondition("1 + \"a\" == 2"))).toMatch(/^condition is invalid: /)
  })

  it("counts bytes, not characters, against the 4096 limit", () => {
    const multiByte = `claims.a == "${"é".repeat(2050)}"`
    expect(multiByte.length).toBeLessThan(4096)
    expect(left(checkCondition(multiByte))).toBe("condition exceeds 4096 bytes")
  })

  it("refuses nested comprehensions (no runtime cost limit in the library)", () => {
    expect(left(checkCondition("claims.a.exists(x, claims.b.all(y, y == x))"))).toMatch(/too expensive/)
    expect(Either.isRight(checkCondition("claims.groups.exists(g, g.startsWith(\"pub\"))"))).toBe(true)
  })

  it("accepts the reference's example conditions", () => {
    for (
      const condition of [
        "claims.repository == \"meigma/imgsrv\" && claims.ref == \"refs/heads/master\"",
        "identity.subject == \"repo:meigma/imgsrv:ref:refs/heads/main\" && claims.repository_id == \"123456789\" && " +
        "claims.workflow_ref == \"meigma/imgsrv/.github/workflows/publish.yml@refs/heads/main\"",
        "hasToken(claims.scope, \"imgsrv.write\") && hasAny(claims.groups, [\"publishers\"])",
        "has(claims.environment) && claims.environment in [\"prod\", \"staging\"]"
      ]
    ) {
      expect(Either.isRight(checkCondition(condition)), condition).toBe(true)
    }
  })
})

describe("the audience guard", () => {
  it("is stored as hasAny(claims.aud, [aud]) && (condition) and read back as the original", () => {
    const stored = guardedCondition("imgsrv-api", "hasToken(claims.scope, \"imgsrv.write\")")
    expect(stored).toBe("hasAny(claims.aud, [\"imgsrv-api\"]) && (hasToken(claims.scope, \"imgsrv.write\"))")
    expect(unguardedCondition("imgsrv-api", stored)).toBe("hasToken(claims.scope, \"imgsrv.write\")")
  })

  it("quotes any audience safely", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (audience) => {
        const result = checkGuardedCondition(audience, "true")
        expect(Either.isRight(result)).toBe(true)
        const matches = compileCondition(guardedCondition(audience, "true")).matches
        expect(matches({ identity, claims: { aud: [audience] } })).toBe(true)
        expect(matches({ identity, claims: { aud: [`${audience}x`] } })).toBe(false)
      }),
      { numRuns: 100 }
    )
  })

  it("cannot be escaped by a condition that closes the parenthesis", () => {
    for (const attack of ["true) || (true", "false) || true || (false", "true // comment"]) {
      expect(Either.isLeft(checkGuardedCondition("imgsrv-api", attack)), attack).toBe(true)
    }
  })

  it("matches only identities whose aud holds the rule audience, other conditions equal", () => {
    const matches = compileCondition(guardedCondition("imgsrv-api", "claims.scope == \"x\"")).matches
    expect(matches({ identity, claims: { aud: ["imgsrv-api", "other"], scope: "x" } })).toBe(true)
    expect(matches({ identity, claims: { aud: "imgsrv-api", scope: "x" } })).toBe(true)
    expect(matches({ identity, claims: { aud: ["other"], scope: "x" } })).toBe(false)
    expect(matches({ identity, claims: { scope: "x" } })).toBe(false)
  })
})

describe("evaluation", () => {
  it("fails closed: a missing claim or an error is false, never a match", () => {
    const matches = compileCondition(guardedCondition("a", "claims.repository == \"x\"")).matches
    expect(matches({ identity, claims: { aud: "a" } })).toBe(false)
    expect(compileCondition("this is not CEL").matches({ identity, claims: {} })).toBe(false)
  })

  it("sees identity.subject and forwarded claims", () => {
    const matches = compileCondition(guardedCondition(
      "imgsrv-github",
      "identity.subject == \"repo:meigma/imgsrv:ref:refs/heads/main\" && claims.repository_id == \"123456789\""
    )).matches
    expect(matches({ identity, claims: { aud: "imgsrv-github", repository_id: "123456789" } })).toBe(true)
    expect(
      matches({
        identity: { ...identity, subject: "repo:meigma/imgsrv:pull_request" },
        claims: { aud: "imgsrv-github", repository_id: "123456789" }
      })
    )
      .toBe(false)
  })

  it("hasAny and hasToken follow the reference semantics", () => {
    expect(hasAny("a", ["a", "b"])).toBe(true)
    expect(hasAny(["x", "b"], ["a", "b"])).toBe(true)
    expect(hasAny(["x"], ["a"])).toBe(false)
    expect(hasAny("a", [])).toBe(false)
    expect(hasAny(42, ["42"])).toBe(false)
    expect(hasToken("openid profile imgsrv.write", "imgsrv.write")).toBe(true)
    expect(hasToken("openid profile", "imgsrv.write")).toBe(false)
    expect(hasToken(["openid", "a imgsrv.write"], "imgsrv.write")).toBe(true)
    expect(hasToken("imgsrv.writer", "imgsrv.write")).toBe(false)
  })
})

describe("claim fingerprints and subject hashes", () => {
  it("link a subject with claims as <sub>#claims:<sha256 of sub NUL canonical claims>", () => {
    const subject = linkSubject({ subject: "subject-1", claims: { scope: "x", aud: ["a"] } })
    expect(subject).toMatch(/^subject-1#claims:[0-9a-f]{64}$/)
    expect(linkSubject({ subject: "subject-1", claims: { aud: ["a"], scope: "x" } })).toBe(subject)
    expect(linkSubject({ subject: "subject-1", claims: { aud: ["a"], scope: "y" } })).not.toBe(subject)
    expect(linkSubject({ subject: "subject-1", claims: {} })).toBe("subject-1")
  })

  it("canonical JSON sorts keys recursively without whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: "x" } })).toBe(
      "{\"a\":{\"c\":\"x\",\"d\":[1,{\"y\":2,\"z\":1}]},\"b\":1}"
    )
  })

  it("subject_hash is 64 hex characters, stable, and does not contain the subject", () => {
    const hash = subjectHash("https://token.actions.githubusercontent.com", "repo:meigma/imgsrv:ref:refs/heads/main")
    expect(hash).toMatch(/^[0-9a-f]{64}$/)
    expect(subjectHash("https://token.actions.githubusercontent.com", "repo:meigma/imgsrv:ref:refs/heads/main")).toBe(
      hash
    )
    expect(hash).not.toContain("meigma")
  })

  it("forwarded claims are the named ones present in the token, plus aud, deep-copied", () => {
    const payload = { sub: "s", aud: ["a"], scope: "x", groups: ["g"], secret_claim: "no" }
    const claims = forwardedClaims(payload, ["scope", "groups", "missing"])
    expect(claims).toEqual({ scope: "x", groups: ["g"], aud: ["a"] })
    ;(claims["groups"] as Array<string>).push("h")
    expect(payload.groups).toEqual(["g"])
  })
})
