import { Brand } from "effect"
import { digestHex, type Sha256Digest } from "../../../contract/digest.js"
import { CANONICAL_UUID, UUID_PATTERN } from "../../../contract/params.js"

/**
 * A bucket-relative object key. Keys are only ever built by the two constructors
 * below, from a canonical UUID or a validated digest, so `..`, absolute paths and
 * other traversal tricks cannot be expressed at all.
 */
export type StorageKey = string & Brand.Brand<"StorageKey">
const StorageKey = Brand.nominal<StorageKey>()

export { CANONICAL_UUID }

/** `staging/uploads/<upload_id>` — where a multipart upload is assembled before verification. */
export const stagingKey = (uploadId: string): StorageKey => {
  if (!CANONICAL_UUID.test(uploadId)) {
    throw new Error(`staging key needs a canonical lower-case UUID, got ${JSON.stringify(uploadId)}`)
  }
  return StorageKey(`staging/uploads/${uploadId}`)
}

/** `cas/sha256/<hex[0:2]>/<hex[2:4]>/<hex>` — the immutable home of a verified blob. */
export const casKey = (digest: Sha256Digest): StorageKey => {
  const hex = digestHex(digest)
  return StorageKey(`cas/sha256/${hex.slice(0, 2)}/${hex.slice(2, 4)}/${hex}`)
}

const KEY_SHAPE = new RegExp(`^(staging/uploads/${UUID_PATTERN}|cas/sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64})$`)

/** True for the only two key shapes imgsrv writes (used by drivers as a last line of defence). */
export const isWellFormedKey = (key: string): key is StorageKey => KEY_SHAPE.test(key)
