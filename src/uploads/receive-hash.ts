import { Context, Layer } from "effect"
import { createHash, type Hash } from "node:crypto"
import { digestFromHex, type Sha256Digest } from "../contract/digest.js"
import type { UploadId } from "./schema.js"

/**
 * Hash while receiving: when every part of an upload arrives on this process in order
 * (1, 2, 3, … one at a time), the SHA-256 of the assembled object is computed as the bytes
 * stream to storage, so promotion does not have to read the object back. Anything else —
 * a re-PUT of an earlier part, a gap, two parts at once, parts sent to another replica, a
 * restart — simply leaves no chain, and promotion falls back to its streaming pass.
 *
 * The chain is only an optimisation and never trusted blindly: complete uses it only when
 * the listed parts are exactly the ones hashed (numbers, ETags, sizes), and the worker uses
 * it only while the staged object still has the ETag the completion produced. That the
 * assembled object is made of exactly the listed parts is the store's promise at completion
 * (S3 and the filesystem driver refuse a part whose ETag does not match; s3rver, a test
 * server, does not check them).
 *
 * Memory is constant per upload (a hash state and a fingerprint of the parts, not a list),
 * and the registry keeps at most `MAX_CHAINS` uploads, dropping the least recently used.
 */

const MAX_CHAINS = 10_000

interface Chain {
  /** SHA-256 over the bytes of parts 1..nextPart-1, in order. */
  hash: Hash
  bytes: number
  nextPart: number
  /** SHA-256 over `number\netag\nsize\n` of every hashed part, to compare with complete's list. */
  parts: Hash
  /** A part of this upload is being received now. */
  busy: boolean
}

/** What complete learns when the chain covers exactly the listed parts. */
export interface ReceivedDigest {
  readonly digest: Sha256Digest
  readonly sizeBytes: number
}

/** Receives one part: feed it the bytes, then commit (part stored and recorded) or abandon. */
export interface PartHasher {
  readonly update: (bytes: Uint8Array) => void
  readonly commit: (part: { readonly etag: string; readonly sizeBytes: number }) => void
  readonly abandon: () => void
}

const partLine = (number: number, etag: string, sizeBytes: number) => `${number}\n${etag}\n${sizeBytes}\n`

export class ReceivedHashes extends Context.Tag("imgsrv/uploads/ReceivedHashes")<ReceivedHashes, {
  /** A hasher for part `partNumber`, if it continues (or starts) an in-order chain. */
  readonly beginPart: (uploadId: UploadId, partNumber: number) => PartHasher | undefined
  /** The digest of the assembled object, if the chain covers exactly `parts` (sorted by number). */
  readonly digestFor: (
    uploadId: UploadId,
    parts: ReadonlyArray<{ readonly number: number; readonly etag: string; readonly sizeBytes: number }>
  ) => ReceivedDigest | undefined
  readonly forget: (uploadId: UploadId) => void
}>() {}

export const makeReceivedHashes = (): ReceivedHashes["Type"] => {
  // A Map iterates in insertion order; re-inserting on every touch makes it an LRU.
  const chains = new Map<UploadId, Chain>()

  const touch = (uploadId: UploadId, chain: Chain) => {
    chains.delete(uploadId)
    chains.set(uploadId, chain)
    if (chains.size > MAX_CHAINS) {
      const oldest = chains.keys().next()
      if (!oldest.done) chains.delete(oldest.value)
    }
  }

  const beginPart = (uploadId: UploadId, partNumber: number): PartHasher | undefined => {
    let chain = chains.get(uploadId)
    if (chain?.busy === true) {
      // Two parts at once: the order of the bytes in the object is not the order seen here.
      chains.delete(uploadId)
      return undefined
    }
    if (partNumber === 1) {
      chain = { hash: createHash("sha256"), bytes: 0, nextPart: 1, parts: createHash("sha256"), busy: false }
    } else if (chain === undefined || chain.nextPart !== partNumber) {
      chains.delete(uploadId)
      return undefined
    }
    const current = chain
    touch(uploadId, current)
    current.busy = true
    // The chain advances only once the part is stored and recorded; a failed part leaves it
    // where it was, so sending the same part again still continues it.
    const tentative = current.hash.copy()
    return {
      update: (bytes) => {
        tentative.update(bytes)
      },
      commit: (part) => {
        if (chains.get(uploadId) !== current) return
        current.hash = tentative
        current.bytes += part.sizeBytes
        current.parts.update(partLine(partNumber, part.etag, part.sizeBytes))
        current.nextPart = partNumber + 1
        current.busy = false
      },
      abandon: () => {
        current.busy = false
      }
    }
  }

  const digestFor: ReceivedHashes["Type"]["digestFor"] = (uploadId, parts) => {
    const chain = chains.get(uploadId)
    if (chain === undefined || chain.busy || parts.length !== chain.nextPart - 1) return undefined
    const listed = createHash("sha256")
    for (const [index, part] of parts.entries()) {
      if (part.number !== index + 1) return undefined
      listed.update(partLine(part.number, part.etag, part.sizeBytes))
    }
    if (listed.digest("hex") !== chain.parts.copy().digest("hex")) return undefined
    return { digest: digestFromHex(chain.hash.copy().digest("hex")), sizeBytes: chain.bytes }
  }

  return ReceivedHashes.of({ beginPart, digestFor, forget: (uploadId) => void chains.delete(uploadId) })
}

export const ReceivedHashesLive = Layer.sync(ReceivedHashes, makeReceivedHashes)
