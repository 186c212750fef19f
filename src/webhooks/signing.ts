import { createHmac, randomBytes } from "node:crypto"

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com/, "Signature scheme"):
 * the secret is `whsec_` + base64 of the key bytes; a signature is
 * `v1,` + base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")), and the
 * `webhook-signature` header lists one or more of them separated by spaces.
 */

const PREFIX = "whsec_"

/** A new signing secret: 32 random bytes (the standard asks for 24 to 64). */
export const generateSecret = (): string => `${PREFIX}${randomBytes(32).toString("base64")}`

const keyOf = (secret: string): Buffer =>
  Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, "base64")

export const sign = (secret: string, id: string, timestamp: number, body: string): string =>
  `v1,${createHmac("sha256", keyOf(secret)).update(`${id}.${timestamp}.${body}`).digest("base64")}`

/** The `webhook-signature` header value: one signature per secret, current first. */
export const signatureHeader = (
  secrets: ReadonlyArray<string>,
  id: string,
  timestamp: number,
  body: string
): string => secrets.map((secret) => sign(secret, id, timestamp, body)).join(" ")
