import { FastCheck as fc } from "effect"
import { createHash } from "node:crypto"
import { describe, expect, it } from "vitest"
import { bootstrapBanner } from "../../src/auth/bootstrap.js"
import { PrincipalId } from "../../src/auth/schema.js"
import { parseRfc3339 } from "../../src/auth/service.js"
import {
  bearerCredential,
  hashSecret,
  mintToken,
  parseToken,
  secretMatches,
  TOKEN_PREFIX
} from "../../src/auth/tokens.js"

/** API token format, parsing and header rules (spec/auth.md §3, §9 items 2–4, 9, 11, 12). */

const BASE32 = /^[A-Z2-7]{26}$/

describe("minted API tokens", () => {
  it("are imgsrv_at_<ID>_<SECRET> with two independent 26-char base32 parts", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const token = mintToken()
      expect(token.plaintext).toBe(`${TOKEN_PREFIX}${token.id}_${token.secret}`)
      expect(token.plaintext).toMatch(/^imgsrv_at_[A-Za-z0-9_-]+$/)
      expect(token.plaintext).toHaveLength(63)
      const [id, secret, ...rest] = token.plaintext.slice(TOKEN_PREFIX.length).split("_")
      expect(rest).toEqual([])
      expect(id).toMatch(BASE32)
      expect(secret).toMatch(BASE32)
      expect(id).not.toBe(secret)
      seen.add(token.id)
    }
    expect(seen.size).toBe(200)
  })

  it("store SHA-256 of the secret only (32 bytes), not of the whole token", () => {
    const token = mintToken()
    expect(token.secretHash).toEqual(createHash("sha256").update(token.secret).digest())
    expect(token.secretHash).toHaveLength(32)
    expect(token.secretHash).not.toEqual(createHash("sha256").update(token.plaintext).digest())
  })

  it("round-trip through parseToken and match only their own secret", () => {
    fc.assert(
      fc.property(fc.constant(null), () => {
        const token = mintToken()
        expect(parseToken(token.plaintext)).toEqual({ id: token.id, secret: token.secret })
        expect(secretMatches(token.secret, token.secretHash)).toBe(true)
        expect(secretMatches(mintToken().secret, token.secretHash)).toBe(false)
      }),
      { numRuns: 50 }
    )
  })

  it("a secret differing in one character does not match", () => {
    const token = mintToken()
    const last = token.secret.at(-1) === "A" ? "B" : "A"
    expect(secretMatches(`${token.secret.slice(0, -1)}${last}`, token.secretHash)).toBe(false)
    expect(secretMatches(token.secret, hashSecret("other").subarray(0, 16))).toBe(false)
  })
})

describe("parseToken", () => {
  const { id, secret } = mintToken()
  it.each([
    ["wrong prefix", `ak_${id}_${secret}`],
    ["prefix case", `IMGSRV_AT_${id}_${secret}`],
    ["no separator", `imgsrv_at_${id}${secret}`],
    ["empty id", `imgsrv_at__${secret}`],
    ["empty secret", `imgsrv_at_${id}_`],
    ["extra separator", `imgsrv_at_${id}_${secret}_x`],
    ["lower-case id", `imgsrv_at_${id.toLowerCase()}_${secret}`],
    ["short secret", `imgsrv_at_${id}_${secret.slice(1)}`],
    ["a JWT", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"]
  ])("rejects %s", (_name, text) => {
    expect(parseToken(text)).toBeUndefined()
  })

  it("never throws on arbitrary input", () => {
    fc.assert(fc.property(fc.string(), (text) => {
      const parsed = parseToken(text)
      if (parsed) expect(text).toBe(`imgsrv_at_${parsed.id}_${parsed.secret}`)
    }))
  })
})

describe("bearerCredential", () => {
  it.each([
    ["Bearer abc", "abc"],
    ["bearer abc", "abc"],
    ["bEaReR abc", "abc"],
    ["Bearer   abc  ", "abc"]
  ])("accepts %j", (header, expected) => {
    expect(bearerCredential(header)).toBe(expected)
  })

  it.each([
    ["missing", undefined],
    ["basic", "Basic dXNlcjpwYXNz"],
    ["scheme only", "Bearer"],
    ["empty token", "Bearer "],
    ["extra field", "Bearer a b"],
    ["other scheme", "Token abc"]
  ])("rejects %s", (_name, header) => {
    expect(bearerCredential(header)).toBeUndefined()
  })
})

describe("timestamps", () => {
  it("parse RFC 3339 only", () => {
    expect(parseRfc3339("2099-01-01T00:00:00Z")?.toISOString()).toBe("2099-01-01T00:00:00.000Z")
    expect(parseRfc3339("2099-01-01T02:00:00+02:00")?.toISOString()).toBe("2099-01-01T00:00:00.000Z")
    expect(parseRfc3339("2099-01-01T00:00:00.123456789Z")?.toISOString()).toBe("2099-01-01T00:00:00.123Z")
    for (const bad of ["2099-01-01", "2099-01-01 00:00:00Z", "tomorrow", "2099-13-01T00:00:00Z", "1735689600", ""]) {
      expect(parseRfc3339(bad), bad).toBeUndefined()
    }
  })
})

describe("the bootstrap banner", () => {
  it("puts the token line first and names principal, token and expiry", () => {
    const token = mintToken()
    const banner = bootstrapBanner({
      principalId: PrincipalId.make("principal_X"),
      tokenId: token.id,
      expiresAt: new Date("2026-05-11T12:00:00Z"),
      plaintext: token.plaintext
    })
    expect(banner.split("\n")).toEqual([
      `imgsrv bootstrap token (one-time): ${token.plaintext}`,
      "principal_id: principal_X",
      `token_id: ${token.id}`,
      "expires_at: 2026-05-11T12:00:00Z",
      ""
    ])
    expect(/imgsrv_at_[A-Za-z0-9_-]+/.exec(banner)?.[0]).toBe(token.plaintext)
  })
})
