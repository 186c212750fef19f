import { Schema } from "effect"

/**
 * `sha256:` + 64 lower-case hex characters — the only digest form imgsrv accepts
 * anywhere (api.md §1.6). Upper-case hex is rejected so that one blob has exactly
 * one spelling, which keeps CAS keys and ETags canonical.
 */
export const Sha256Digest = Schema.String.pipe(
  Schema.pattern(/^sha256:[0-9a-f]{64}$/, {
    message: () => "digest must match ^sha256:[0-9a-f]{64}$"
  }),
  Schema.brand("Sha256Digest")
).annotations({ identifier: "Sha256Digest", description: "sha256:<64 lower-case hex>" })
export type Sha256Digest = typeof Sha256Digest.Type

/** The bare 64-hex part of a digest (what Simple Streams and CAS keys use). */
export const digestHex = (digest: Sha256Digest): string => digest.slice("sha256:".length)

export const digestFromHex = (hex: string): Sha256Digest => Schema.decodeSync(Sha256Digest)(`sha256:${hex}`)
