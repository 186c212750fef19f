import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

/**
 * Code comments and tests cite the contract in docs/reference/ as `<page>.md §<number>`
 * (docs/reference/README.md): `api.md §2.3`, `spec/auth.md §2.3–2.6, §3; §9 items 1–7, 9`,
 * `streams.md §2.8 trap 9`. Every cited number must be a heading number of that page, and
 * every cited list item a numbered item of that section, so that a reader who follows a
 * citation finds what it names.
 */

const root = fileURLToPath(new URL("../../", import.meta.url))
const referenceDir = path.join(root, "docs", "reference")
const self = fileURLToPath(import.meta.url)

interface Section {
  readonly level: number
  /** The heading's lines up to the next heading of the same or a higher level. */
  readonly body: ReadonlyArray<string>
}

/** The numbered headings of a page (`### 2.3 …`, `## 5. …`), keyed by number. */
const sectionsOf = (markdown: string): ReadonlyMap<string, Section> => {
  const lines = markdown.split("\n")
  const headings: Array<{ readonly line: number; readonly level: number; readonly number: string | undefined }> = []
  let fenced = false
  lines.forEach((line, index) => {
    if (line.trimStart().startsWith("```")) fenced = !fenced
    if (fenced) return
    const heading = /^(#{1,6})\s+(.*)$/.exec(line)
    if (heading === null) return
    const number = /^(\d+(?:\.\d+)*)\.?(?:\s|$)/.exec(heading[2]!)?.[1]
    headings.push({ line: index, level: heading[1]!.length, number })
  })
  const sections = new Map<string, Section>()
  headings.forEach((heading, i) => {
    if (heading.number === undefined) return
    const next = headings.slice(i + 1).find((h) => h.level <= heading.level)
    sections.set(heading.number, {
      level: heading.level,
      body: lines.slice(heading.line + 1, next?.line ?? lines.length)
    })
  })
  return sections
}

interface Citation {
  readonly file: string
  readonly line: number
  readonly page: string
  readonly section: string
  /** Numbered list items cited in the section (`items 1–7, 9` → 1, 7, 9). */
  readonly items: ReadonlyArray<number>
  readonly text: string
}

const NUMBER = String.raw`\d+(?:\.\d+)*`
const ITEMS = String.raw`\s+(?:items?|steps?|traps?)\s+\d+(?:[–-]\d+)?(?:,\s*\d+(?:[–-]\d+)?)*`
const REFERENCE = String.raw`§${NUMBER}(?:[–-]${NUMBER})?(?:${ITEMS})?`
const CITATION = new RegExp(
  String.raw`\b(api|auth|config|domain|streams)\.md((?:[\s,;]*${REFERENCE})+)`,
  "g"
)

/** `2.5` to `8` in `§2.5–8` means 2.8: the end replaces the start's last components. */
const rangeEnd = (start: string, end: string): string => {
  const a = start.split(".")
  const b = end.split(".")
  return [...a.slice(0, Math.max(0, a.length - b.length)), ...b].join(".")
}

/** Every citation in `text`, one per cited section (both ends of a range). */
const citationsIn = (file: string, text: string): ReadonlyArray<Citation> => {
  const found: Array<Citation> = []
  for (const match of text.matchAll(CITATION)) {
    const line = text.slice(0, match.index).split("\n").length
    const page = match[1]!
    for (const reference of match[2]!.matchAll(new RegExp(REFERENCE, "g"))) {
      const parts = new RegExp(String.raw`^§(${NUMBER})(?:[–-](${NUMBER}))?(?:\s+\w+\s+(.*))?$`).exec(
        reference[0]
      )!
      const start = parts[1]!
      const items = (parts[3] ?? "").split(",").flatMap((range) => {
        const ends = range.trim().split(/[–-]/).filter((n) => n !== "")
        return ends.map(Number)
      })
      const sections = parts[2] === undefined ? [start] : [start, rangeEnd(start, parts[2])]
      sections.forEach((section, i) =>
        found.push({ file, line, page, section, items: i === 0 ? items : [], text: `${page}.md ${reference[0]}` })
      )
    }
  }
  return found
}

const sourceFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(full)
    return /\.(ts|mts|mjs|js|sql)$/.test(entry.name) && full !== self ? [full] : []
  })

const pages = new Map<string, ReadonlyMap<string, Section> | undefined>()
const pageSections = (page: string) => {
  if (!pages.has(page)) {
    let text: string | undefined
    try {
      text = readFileSync(path.join(referenceDir, `${page}.md`), "utf8")
    } catch {
      text = undefined
    }
    pages.set(page, text === undefined ? undefined : sectionsOf(text))
  }
  return pages.get(page)
}

/** What is wrong with a citation, or undefined when it resolves. */
const problemOf = (citation: Citation): string | undefined => {
  const sections = pageSections(citation.page)
  if (sections === undefined) return `docs/reference/${citation.page}.md does not exist`
  const section = sections.get(citation.section)
  if (section === undefined) return `${citation.page}.md has no heading numbered ${citation.section}`
  const listed = new Set(
    section.body.flatMap((line) => {
      const item = /^\s*(\d+)\.\s/.exec(line)
      return item === null ? [] : [Number(item[1])]
    })
  )
  const missing = citation.items.filter((n) => !listed.has(n))
  return missing.length > 0
    ? `${citation.page}.md §${citation.section} has no numbered item ${missing.join(", ")}`
    : undefined
}

describe("docs/reference citations", () => {
  const citations = ["src", "test", "migrations"].flatMap((dir) =>
    sourceFiles(path.join(root, dir)).flatMap((file) =>
      citationsIn(path.relative(root, file), readFileSync(file, "utf8"))
    )
  )

  it("are found in the code (the scan itself works)", () => {
    expect(citations.length).toBeGreaterThan(60)
    expect(citations.some((c) => c.page === "auth" && c.items.length > 0)).toBe(true)
  })

  it("every `<page>.md §N` in src/, test/ and migrations/ names a heading of docs/reference/<page>.md", () => {
    const broken = citations.flatMap((citation) => {
      const problem = problemOf(citation)
      return problem === undefined ? [] : [`${citation.file}:${citation.line} ${citation.text}: ${problem}`]
    })
    expect(broken).toEqual([])
  })
})

describe("the citation parser", () => {
  it("reads lists, ranges and numbered items", () => {
    const text = "x (spec/auth.md §2.3–2.6, §3; §9 items 1–7, 9) and domain.md §8.20–21 and api.md §2.3."
    expect(citationsIn("f", text).map((c) => `${c.page} ${c.section} [${c.items.join(",")}]`)).toEqual([
      "auth 2.3 []",
      "auth 2.6 []",
      "auth 3 []",
      "auth 9 [1,7,9]",
      "domain 8.20 []",
      "domain 8.21 []",
      "api 2.3 []"
    ])
  })

  it("finds numbered headings outside code fences only", () => {
    const sections = sectionsOf("## 1. One\n```\n## 9 not a heading\n```\n### 1.1 Sub\n1. first\n## 2 Two\n")
    expect([...sections.keys()]).toEqual(["1", "1.1", "2"])
    expect(sections.get("1.1")!.body).toContain("1. first")
  })

  it("reports a citation of a missing section", () => {
    expect(problemOf({ file: "f", line: 1, page: "api", section: "99.1", items: [], text: "" })).toMatch(
      /no heading numbered 99\.1/
    )
  })
})
