import { Context, Effect } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { freshUuid } from "../platform/fresh-ids.js"
import { PrincipalId, RuleId, TokenId } from "./schema.js"

/**
 * API tokens are `imgsrv_at_<ID>_<SECRET>`: ID and SECRET are 26 characters of
 * RFC 4648 base32 (A–Z, 2–7) from 130 random bits each. ID is the public lookup
 * key; only SHA-256(SECRET) is stored (spec/auth.md §3).
 */
export const TOKEN_PREFIX = "imgsrv_at_"

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
/** Both parts of a token. */
const TOKEN_PART = /^[A-Z2-7]{26}$/

/** 26 base32 characters from a CSPRNG (5 bits each, rejection-free: 32 divides 256). */
export const randomBase32 = (length = 26): string => {
  const bytes = randomBytes(length)
  let out = ""
  for (let i = 0; i < length; i++) out += BASE32[bytes[i]! & 31]
  return out
}

export const hashSecret = (secret: string): Buffer => createHash("sha256").update(secret, "utf8").digest()

export interface MintedToken {
  readonly id: TokenId
  readonly secret: string
  readonly plaintext: string
  readonly secretHash: Buffer
}

export const mintToken = (): MintedToken => {
  const id = TokenId.make(randomBase32())
  const secret = randomBase32()
  return { id, secret, plaintext: `${TOKEN_PREFIX}${id}_${secret}`, secretHash: hashSecret(secret) }
}

/**
 * Where auth gets fresh randomness: principal ids, default rule ids (a UUID, from
 * `FreshIds`) and API tokens. A Reference, so production needs no wiring while a test can
 * provide fixed values.
 */
export class AuthIds extends Context.Reference<AuthIds>()("imgsrv/AuthIds", {
  defaultValue: () => ({
    principalId: Effect.sync(() => PrincipalId.make(`principal_${randomBase32()}`)),
    ruleId: Effect.map(freshUuid, RuleId.make),
    token: Effect.sync(mintToken)
  })
}) {}

/** Splits a presented token into id and secret, or undefined when it is not an imgsrv API token. */
export const parseToken = (presented: string): { readonly id: TokenId; readonly secret: string } | undefined => {
  if (!presented.startsWith(TOKEN_PREFIX)) return undefined
  const rest = presented.slice(TOKEN_PREFIX.length)
  const separator = rest.indexOf("_")
  if (separator <= 0) return undefined
  const id = rest.slice(0, separator)
  const secret = rest.slice(separator + 1)
  if (secret === "" || secret.includes("_")) return undefined
  if (!TOKEN_PART.test(id) || !TOKEN_PART.test(secret)) return undefined
  return { id: TokenId.make(id), secret }
}

/** Constant-time comparison of SHA-256(secret) with the stored hash. */
export const secretMatches = (secret: string, storedHash: Uint8Array): boolean => {
  const presented = hashSecret(secret)
  return storedHash.length === presented.length && timingSafeEqual(presented, storedHash)
}

/**
 * The bearer credential of an `Authorization` header: exactly two whitespace-separated
 * fields, the first `Bearer` in any case (spec/auth.md §3.4). Anything else → undefined.
 */
export const bearerCredential = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  const fields = header.trim().split(/\s+/)
  if (fields.length !== 2 || fields[0]!.toLowerCase() !== "bearer" || fields[1] === "") return undefined
  return fields[1]
}
