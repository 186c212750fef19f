import { Data } from "effect"
import type { ListenAddress } from "../config/config.js"

/** What the common bind failures mean, in the words an operator searches for. */
const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EACCES: "permission denied",
  EADDRNOTAVAIL: "address not available on this host"
}

/** `host:port` as configured (`:port` for every interface; IPv6 hosts in brackets). */
export const formatListenAddress = (address: ListenAddress): string => {
  const host = address.host === undefined ? "" : address.host.includes(":") ? `[${address.host}]` : address.host
  return `${host}:${address.port}`
}

/** A listener could not bind its address: start-up stops with one line naming it and why. */
export class ListenFailed extends Data.TaggedError("ListenFailed")<{
  readonly address: ListenAddress
  /** Not `cause`: the message already says what it means, which main.ts would repeat. */
  readonly error: unknown
}> {
  override get message() {
    const code = typeof this.error === "object" && this.error !== null
      ? (this.error as { code?: unknown }).code
      : undefined
    const reason = (typeof code === "string" ? REASONS[code] : undefined) ??
      (this.error instanceof Error ? this.error.message : String(this.error))
    return `listen ${formatListenAddress(this.address)}: ${reason}`
  }
}
