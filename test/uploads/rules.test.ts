/** Pure rules of uploads: part-list normalisation, part-number parsing, part-size advice, timestamps. */
import { Effect, Either, FastCheck } from "effect"
import { describe, expect, it } from "vitest"
import { formatTimestamp } from "../../src/contract/timestamp.js"
import { parsePartLength, parsePartNumber } from "../../src/uploads/http.js"
import {
  MAX_PART_NUMBER,
  MAX_PART_SIZE_BYTES,
  MAX_UPLOAD_SIZE_BYTES,
  MIN_PART_SIZE_BYTES,
  recommendedPartSize
} from "../../src/uploads/schema.js"
import { normalizeParts } from "../../src/uploads/service.js"

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runSync(Effect.either(effect))

describe("normalizeParts", () => {
  it("sorts by number and accepts a small last part", () => {
    const result = run(normalizeParts([
      { number: 3, etag: "c", sizeBytes: 1 },
      { number: 1, etag: "a", sizeBytes: MIN_PART_SIZE_BYTES },
      { number: 2, etag: "b", sizeBytes: MAX_PART_SIZE_BYTES }
    ]))
    expect(Either.getOrThrow(result).map((p) => p.number)).toEqual([1, 2, 3])
  })

  it("takes an ETag bare (as part PUTs return it) or quoted (S3's form) and hands it on bare", () => {
    const result = run(normalizeParts([
      { number: 2, etag: "\"0123456789abcdef0123456789abcdef\"", sizeBytes: 1 },
      { number: 1, etag: "fedcba9876543210fedcba9876543210", sizeBytes: MIN_PART_SIZE_BYTES }
    ]))
    expect(Either.getOrThrow(result).map((p) => p.etag)).toEqual([
      "fedcba9876543210fedcba9876543210",
      "0123456789abcdef0123456789abcdef"
    ])
    // Quotes around nothing are a blank ETag.
    expect(Either.isLeft(run(normalizeParts([{ number: 1, etag: "\"\"", sizeBytes: 1 }])))).toBe(true)
  })

  it("accepts exactly the lists that satisfy every rule", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(
          FastCheck.record({
            number: FastCheck.integer({ min: -2, max: MAX_PART_NUMBER + 2 }),
            etag: FastCheck.constantFrom("\"e\"", "e", "\"\"", " ", ""),
            sizeBytes: FastCheck.oneof(
              FastCheck.constantFrom(
                -1,
                0,
                MIN_PART_SIZE_BYTES - 1,
                MIN_PART_SIZE_BYTES,
                MAX_PART_SIZE_BYTES,
                MAX_PART_SIZE_BYTES + 1
              ),
              FastCheck.integer({ min: 0, max: 10 * MIN_PART_SIZE_BYTES })
            )
          }),
          { maxLength: 6 }
        ),
        (parts) => {
          const sorted = [...parts].sort((a, b) => a.number - b.number)
          const valid = sorted.length > 0 &&
            sorted.every((p, i) =>
              p.number >= 1 && p.number <= MAX_PART_NUMBER &&
              (i === 0 || sorted[i - 1]!.number !== p.number) &&
              p.etag.replaceAll("\"", "").trim() !== "" &&
              p.sizeBytes >= 0 && p.sizeBytes <= MAX_PART_SIZE_BYTES &&
              (i === sorted.length - 1 || p.sizeBytes >= MIN_PART_SIZE_BYTES)
            )
          const result = run(normalizeParts(parts))
          return Either.isRight(result) === valid &&
            (Either.isLeft(result) ||
              result.right.every((p, i) => p.etag === "e" && (i === 0 || result.right[i - 1]!.number < p.number)))
        }
      )
    )
  })
})

describe("part path and header parsing", () => {
  it("part numbers: integers 1..10000 only, with distinct messages", () => {
    expect(run(parsePartNumber("1"))).toEqual(Either.right(1))
    expect(run(parsePartNumber("10000"))).toEqual(Either.right(10000))
    for (const bad of ["abc", "1.5", "", "1e3", " 1"]) {
      expect(Either.getLeft(run(parsePartNumber(bad))).pipe((e) => e._tag === "Some" && e.value.message)).toMatch(
        /must be an integer/
      )
    }
    for (const out of ["0", "-1", "10001"]) {
      expect(Either.getLeft(run(parsePartNumber(out))).pipe((e) => e._tag === "Some" && e.value.message)).toMatch(
        /between 1 and 10000/
      )
    }
  })

  it("Content-Length: required digits, at most 5 GiB", () => {
    expect(run(parsePartLength("0"))).toEqual(Either.right(0))
    expect(run(parsePartLength(String(MAX_PART_SIZE_BYTES)))).toEqual(Either.right(MAX_PART_SIZE_BYTES))
    for (const bad of [undefined, "", "-1", "abc"]) expect(Either.isLeft(run(parsePartLength(bad)))).toBe(true)
    expect(Either.isLeft(run(parsePartLength(String(MAX_PART_SIZE_BYTES + 1))))).toBe(true)
  })
})

describe("recommendedPartSize", () => {
  it("is 64 MiB for ordinary sizes and always lets the object fit in 10000 parts within the bounds", () => {
    expect(recommendedPartSize(0)).toBe(64 * 1024 * 1024)
    expect(recommendedPartSize(10 * 1024 ** 3)).toBe(64 * 1024 * 1024)
    FastCheck.assert(
      FastCheck.property(FastCheck.integer({ min: 0, max: MAX_UPLOAD_SIZE_BYTES }), (size) => {
        const part = recommendedPartSize(size)
        return part >= MIN_PART_SIZE_BYTES && part <= MAX_PART_SIZE_BYTES && Math.ceil(size / part) <= MAX_PART_NUMBER
      })
    )
  })
})

describe("formatTimestamp", () => {
  it("is RFC 3339 UTC with trimmed fractional seconds", () => {
    expect(formatTimestamp(new Date("2026-05-14T09:12:03.481Z"))).toBe("2026-05-14T09:12:03.481Z")
    expect(formatTimestamp(new Date("2026-05-14T09:12:03.480Z"))).toBe("2026-05-14T09:12:03.48Z")
    expect(formatTimestamp(new Date("2026-05-14T09:12:03.000Z"))).toBe("2026-05-14T09:12:03Z")
    FastCheck.assert(
      FastCheck.property(
        FastCheck.date({ min: new Date(0), max: new Date("2999-12-31T00:00:00Z"), noInvalidDate: true }),
        (d) => {
          const text = formatTimestamp(d)
          return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/.test(text) && new Date(text).getTime() === d.getTime()
        }
      )
    )
  })
})
