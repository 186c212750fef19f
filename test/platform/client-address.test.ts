import { Either, FastCheck } from "effect"
import { describe, expect, it } from "vitest"
import {
  clientAddressOf,
  NO_TRUSTED_PROXIES,
  normalizeAddress,
  parseTrustedProxies
} from "../../src/platform/http/client-address.js"

/** The client address rules (client-address.ts): which X-Forwarded-For hop is believed. */

const trusted = (text: string) => Either.getOrThrow(parseTrustedProxies(text))

describe("parseTrustedProxies", () => {
  it("takes addresses and CIDR ranges of both families, and trusts nobody when empty", () => {
    const proxies = trusted(" 10.0.0.0/8, 192.168.1.10 ,fd00::/8, ::1, ::ffff:172.16.0.1")
    expect(proxies.entries).toEqual(["10.0.0.0/8", "192.168.1.10", "fd00::/8", "::1", "::ffff:172.16.0.1"])
    for (const inside of ["10.255.0.1", "192.168.1.10", "fd12:3456::1", "::1", "172.16.0.1"]) {
      expect(proxies.contains(inside), inside).toBe(true)
    }
    for (const outside of ["11.0.0.1", "192.168.1.11", "fe80::1", "2001:db8::1", "", "not-an-ip"]) {
      expect(proxies.contains(outside), outside).toBe(false)
    }
    expect(trusted("").entries).toEqual([])
    expect(trusted(" , ").contains("127.0.0.1")).toBe(false)
  })

  it("refuses anything that is not an address or a range, naming the entry", () => {
    for (const bad of ["localhost", "10.0.0.0/33", "fd00::/129", "10.0.0.1/8/1", "10.0.0.0/", "10.0.0.0/x", "1.2.3"]) {
      expect(parseTrustedProxies(`127.0.0.1, ${bad}`), bad).toEqual(Either.left(bad))
    }
  })
})

describe("clientAddressOf", () => {
  const proxies = trusted("127.0.0.1, 10.0.0.0/8")

  it("is the peer when it is not a trusted proxy, whatever X-Forwarded-For says", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.ipV4().filter((peer) => !proxies.contains(peer)),
        FastCheck.array(FastCheck.oneof(FastCheck.ipV4(), FastCheck.ipV6(), FastCheck.string())),
        (peer, hops) =>
          clientAddressOf(peer, hops.join(", "), NO_TRUSTED_PROXIES) === peer &&
          clientAddressOf(peer, hops.join(", "), proxies) === peer
      )
    )
  })

  it("behind trusted proxies, is the right-most hop that is not one of them", () => {
    expect(clientAddressOf("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.1.1.1", proxies)).toBe("198.51.100.7")
    expect(clientAddressOf("127.0.0.1", "198.51.100.7", proxies)).toBe("198.51.100.7")
    expect(clientAddressOf("::ffff:127.0.0.1", "198.51.100.7", proxies)).toBe("198.51.100.7")
    expect(clientAddressOf("127.0.0.1", "10.0.0.9, 10.0.0.8", proxies)).toBe("10.0.0.9")
    expect(clientAddressOf("127.0.0.1", undefined, proxies)).toBe("127.0.0.1")
    expect(clientAddressOf("127.0.0.1", "[2001:DB8::5]:8443, 10.0.0.1:9000", proxies)).toBe("2001:db8::5")
    expect(clientAddressOf("127.0.0.1", "::ffff:198.51.100.7", proxies)).toBe("198.51.100.7")
    // A hop that is not an address: stop at the last one a trusted proxy wrote.
    expect(clientAddressOf("127.0.0.1", "198.51.100.7, , 10.0.0.2", proxies)).toBe("10.0.0.2")
    expect(clientAddressOf("127.0.0.1", "unknown", proxies)).toBe("127.0.0.1")
  })

  it("never returns an address the client wrote to the left of an untrusted hop", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.ipV4(), { maxLength: 3 }),
        FastCheck.ipV4().filter((a) => !proxies.contains(a)),
        FastCheck.array(FastCheck.constantFrom("10.0.0.1", "10.2.3.4", "127.0.0.1"), { maxLength: 3 }),
        (spoofed, client, proxyHops) =>
          clientAddressOf("127.0.0.1", [...spoofed, client, ...proxyHops].join(", "), proxies) === client
      )
    )
  })
})

describe("normalizeAddress", () => {
  it("turns IPv4-mapped IPv6 into IPv4 and lower-cases IPv6", () => {
    expect(normalizeAddress("::ffff:10.1.2.3")).toBe("10.1.2.3")
    expect(normalizeAddress("::FFFF:10.1.2.3")).toBe("10.1.2.3")
    expect(normalizeAddress("2001:DB8::1")).toBe("2001:db8::1")
    expect(normalizeAddress("127.0.0.1")).toBe("127.0.0.1")
  })
})
