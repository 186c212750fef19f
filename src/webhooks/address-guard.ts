import { Effect, Either } from "effect"
import type { LookupAddress, LookupAllOptions, LookupOneOptions } from "node:dns"
import { lookup as dnsLookup } from "node:dns"
import { BlockList, isIP } from "node:net"
import { WebhookUrlRefused } from "./errors.js"

/**
 * SSRF safety of webhook targets (issue 14 §5). A subscription's URL is user input that
 * makes imgsrv send requests from inside its network, so by default:
 * - only `http:` and `https:` URLs, without credentials in them, are accepted;
 * - loopback, private, shared (CGNAT), link-local (cloud metadata lives there), multicast
 *   and reserved addresses are refused — when the subscription is created (every address
 *   the host resolves to) and again when a delivery connects: the connection's own DNS
 *   lookup goes through `guardedLookup`, so the address checked is the address connected
 *   to and a name that re-binds to 127.0.0.1 after creation is still refused.
 * `--webhook-allow-private-networks=true` turns the address checks off (internal
 * receivers; the tests).
 */

const RANGES: ReadonlyArray<readonly [label: string, network: string, prefix: number]> = [
  ["unspecified", "0.0.0.0", 8],
  ["unspecified", "::", 128],
  ["loopback", "127.0.0.0", 8],
  ["loopback", "::1", 128],
  ["private", "10.0.0.0", 8],
  ["private", "172.16.0.0", 12],
  ["private", "192.168.0.0", 16],
  // fd00:ec2::254 (AWS metadata over IPv6) is in here.
  ["private", "fc00::", 7],
  // 100.100.100.200 (Alibaba Cloud metadata) is in here.
  ["shared (carrier-grade NAT)", "100.64.0.0", 10],
  // 169.254.169.254 (AWS, GCP, Azure, OpenStack metadata) is in here.
  ["link-local", "169.254.0.0", 16],
  ["link-local", "fe80::", 10],
  ["multicast", "224.0.0.0", 4],
  ["multicast", "ff00::", 8],
  ["reserved", "240.0.0.0", 4],
  ["reserved", "192.0.0.0", 24],
  ["reserved", "198.18.0.0", 15],
  ["documentation", "192.0.2.0", 24],
  ["documentation", "198.51.100.0", 24],
  ["documentation", "203.0.113.0", 24],
  ["documentation", "2001:db8::", 32],
  // IPv6 forms that reach IPv4 addresses through a translator (IPv4-mapped ::ffff:0:0/96
  // is matched against the IPv4 ranges by BlockList itself).
  ["IPv4 translation", "64:ff9b::", 96],
  ["IPv4 translation", "64:ff9b:1::", 48],
  ["IPv4 translation", "2002::", 16]
]

const blockLists: ReadonlyArray<readonly [string, BlockList]> = (() => {
  const byLabel = new Map<string, BlockList>()
  for (const [label, network, prefix] of RANGES) {
    const list = byLabel.get(label) ?? new BlockList()
    list.addSubnet(network, prefix, isIP(network) === 6 ? "ipv6" : "ipv4")
    byLabel.set(label, list)
  }
  return [...byLabel.entries()]
})()

/** The kind of range an IP address is refused for, or undefined when it is a public address. */
export const refusedRange = (address: string): string | undefined => {
  const family = isIP(address)
  if (family === 0) return "not an IP address"
  const type = family === 6 ? "ipv6" : "ipv4"
  for (const [label, list] of blockLists) {
    if (list.check(address, type)) return label
  }
  return undefined
}

/** `[::1]` (URL host syntax) → `::1`. */
const bareHost = (hostname: string) => hostname.replace(/^\[(.*)\]$/, "$1")

/** The URL, when it is one imgsrv may call (scheme, host, no credentials); else why not. */
export const parseTargetUrl = (text: string): Either.Either<URL, string> => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Either.left("not an absolute URL")
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return Either.left("only http and https URLs")
  if (url.username !== "" || url.password !== "") {
    return Either.left("credentials in the URL are not accepted (authenticate with the signature)")
  }
  if (url.hostname === "") return Either.left("the URL has no host")
  return Either.right(url)
}

/** Every address `host` resolves to (or the host itself when it is an IP literal). */
const resolveAll = (host: string): Effect.Effect<ReadonlyArray<string>, WebhookUrlRefused> =>
  isIP(host) !== 0
    ? Effect.succeed([host])
    : Effect.async<ReadonlyArray<string>, WebhookUrlRefused>((resume) => {
      dnsLookup(host, { all: true, verbatim: true }, (error, addresses) => {
        if (error) resume(Effect.fail(new WebhookUrlRefused({ reason: `host ${host} does not resolve` })))
        else resume(Effect.succeed(addresses.map((a) => a.address)))
      })
    }).pipe(
      // A resolver that does not answer must not hold the request for its own (long) timeouts.
      Effect.timeoutFail({
        duration: "5 seconds",
        onTimeout: () => new WebhookUrlRefused({ reason: `host ${host} did not resolve within 5 seconds` })
      })
    )

/**
 * The check at creation (and on a URL change): a valid http(s) URL whose host resolves
 * only to addresses imgsrv may call (unless private networks are allowed).
 */
export const checkTargetUrl = (
  text: string,
  allowPrivateNetworks: boolean
): Effect.Effect<URL, WebhookUrlRefused> =>
  Effect.gen(function*() {
    const url = yield* Either.match(parseTargetUrl(text), {
      onLeft: (reason) => Effect.fail(new WebhookUrlRefused({ reason })),
      onRight: Effect.succeed
    })
    if (allowPrivateNetworks) return url
    const host = bareHost(url.hostname)
    for (const address of yield* resolveAll(host)) {
      const range = refusedRange(address)
      if (range !== undefined) {
        return yield* new WebhookUrlRefused({
          reason: address === host
            ? `${address} is a ${range} address`
            : `${host} resolves to ${address}, a ${range} address`
        })
      }
    }
    return url
  })

/** The connection was refused by the address check (reported as a `refused` attempt). */
export class RefusedAddress extends Error {
  readonly code = "EIMGSRV_REFUSED_ADDRESS"
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | Array<LookupAddress>,
  family?: number
) => void

/**
 * A `lookup` for `http.request`: resolves like the default, then refuses the connection
 * when any address is in a refused range — the check and the connection use the same
 * answer, so DNS cannot change in between.
 */
export const guardedLookup = (
  hostname: string,
  options: LookupOneOptions | LookupAllOptions,
  callback: LookupCallback
): void => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, [])
    for (const { address } of addresses) {
      const range = refusedRange(address)
      if (range !== undefined) {
        return callback(new RefusedAddress(`${hostname} resolves to ${address}, a ${range} address`), [])
      }
    }
    if (options.all === true) return callback(null, addresses)
    const first = addresses[0]
    if (first === undefined) return callback(new RefusedAddress(`${hostname} has no address`), [])
    callback(null, first.address, first.family)
  })
}

/** The connect-time check of an IP-literal host (the lookup is not consulted for those). */
export const literalHostRefusal = (url: URL): string | undefined => {
  const host = bareHost(url.hostname)
  if (isIP(host) === 0) return undefined
  const range = refusedRange(host)
  return range === undefined ? undefined : `${host} is a ${range} address`
}
