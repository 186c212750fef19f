import { Either } from "effect"
import { BlockList, isIP } from "node:net"

/**
 * Who a request came from. The direct peer is the TCP address; behind a reverse proxy that
 * is the proxy, and the client is in `X-Forwarded-For`, which anybody can also send. So the
 * header is believed only from the proxies the operator names (`--trusted-proxies`), and
 * only as far as it was written by them: reading from the right, each trusted hop vouches
 * for the hop before it, and the first address that is not a trusted proxy is the client
 * (the "right-most untrusted" rule). Whatever a client put further left is ignored.
 */

/** The proxies whose `X-Forwarded-For` is believed (addresses and CIDR ranges, IPv4 and IPv6). */
export interface TrustedProxies {
  /** As configured, for the start-up log. */
  readonly entries: ReadonlyArray<string>
  /** Whether the (normalised) address is one of the trusted proxies. */
  readonly contains: (address: string) => boolean
}

export const NO_TRUSTED_PROXIES: TrustedProxies = { entries: [], contains: () => false }

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i

/**
 * An address as it is logged and compared: IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a
 * dual-stack listener reports for IPv4 peers) becomes IPv4, IPv6 is lower case.
 */
export const normalizeAddress = (address: string): string => {
  const mapped = MAPPED_IPV4.exec(address)
  return mapped ? mapped[1]! : address.toLowerCase()
}

/**
 * The address of one `X-Forwarded-For` entry, which some proxies write with a port
 * (`10.0.0.1:5678`, `[2001:db8::1]:443`) or IPv6 in brackets; undefined when it is not one.
 */
const hopAddress = (entry: string): string | undefined => {
  let text = entry.trim()
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text)
  if (bracketed) text = bracketed[1]!
  else if (/^[\d.]+:\d+$/.test(text)) text = text.slice(0, text.lastIndexOf(":"))
  return isIP(text) === 0 ? undefined : normalizeAddress(text)
}

/**
 * Parses `--trusted-proxies`: comma-separated IP addresses and CIDR ranges
 * (`10.0.0.0/8, 192.168.1.10, fd00::/8`); empty trusts nobody. Left: the first bad entry.
 */
export const parseTrustedProxies = (text: string): Either.Either<TrustedProxies, string> => {
  const entries = text.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "")
  if (entries.length === 0) return Either.right(NO_TRUSTED_PROXIES)
  const list = new BlockList()
  for (const entry of entries) {
    const [address = "", prefix, ...extra] = entry.split("/")
    const family = isIP(address)
    if (family === 0 || extra.length > 0) return Either.left(entry)
    const type = family === 4 ? "ipv4" : "ipv6"
    if (prefix === undefined) {
      const normalized = normalizeAddress(address)
      list.addAddress(normalized, isIP(normalized) === 4 ? "ipv4" : "ipv6")
      continue
    }
    const bits = Number(prefix)
    if (!/^\d{1,3}$/.test(prefix) || bits > (family === 4 ? 32 : 128)) return Either.left(entry)
    list.addSubnet(address, bits, type)
  }
  return Either.right({
    entries,
    contains: (address) => {
      const family = isIP(address)
      return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6")
    }
  })
}

/**
 * The client address of a request whose TCP peer is `peer`: the peer itself, unless the
 * peer is a trusted proxy and the request carries `X-Forwarded-For`; then the right-most
 * hop that is not a trusted proxy (or the left-most hop when all of them are). A hop that
 * is not an address ends the walk at the last address a trusted proxy vouched for.
 */
export const clientAddressOf = (
  peer: string,
  forwardedFor: string | undefined,
  trusted: TrustedProxies
): string => {
  const direct = normalizeAddress(peer)
  if (forwardedFor === undefined || !trusted.contains(direct)) return direct
  const hops = forwardedFor.split(",")
  let client = direct
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hopAddress(hops[i]!)
    if (hop === undefined) return client
    client = hop
    if (!trusted.contains(hop)) return hop
  }
  return client
}
