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
 *
 * The looser forms older comments use are held to the same rule rather than ignored: any
 * page name (`lifecycle.md §2` must name an existing page), `<page> spec §7.2`, a bare page
 * (`spec/config.md`, `docs/reference/auth.md`) and a section named by its title
 * (`spec README "deliberate improvements"`).
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
  /** The cited heading number; undefined when the whole page (or a titled heading) is cited. */
  readonly section: string | undefined
  /** A heading cited by its title instead of its number. */
  readonly title?: string | undefined
  /** Numbered list items cited in the section (`items 1–7, 9` → 1, 7, 9). */
  readonly items: ReadonlyArray<number>
  readonly text: string
}

const NUMBER = String.raw`\d+(?:\.\d+)*`
const ITEMS = String.raw`\s+(?:items?|steps?|traps?)\s+\d+(?:[–-]\d+)?(?:,\s*\d+(?:[–-]\d+)?)*`
const REFERENCE = String.raw`§${NUMBER}(?:[–-]${NUMBER})?(?:${ITEMS})?`
const REFERENCES = String.raw`((?:[\s,;]*${REFERENCE})+)`
/** `api.md §2.3`, `spec/lifecycle.md §1`: any page name, so a citation of a missing page is caught. */
const CITATION = new RegExp(String.raw`(?<![\w-])([A-Za-z][\w-]*)\.md${REFERENCES}`, "g")
/** `domain spec §7.2`: the page named before the word "spec". */
const SPEC_CITATION = new RegExp(String.raw`\b([a-z]+) spec${REFERENCES}`, "g")
/** `spec/config.md`, `docs/reference/auth.md` with no `§`: the page itself must exist. */
const PAGE_CITATION = /\b(?:spec|docs\/reference)\/([\w-]+)\.md\b(?![\s,;]*§)/g
/** `spec README "deliberate improvements"`: a heading named by its title. */
const TITLE_CITATION = /\bspec(?:\/| )(README|[\w-]+\.md)(?:\s+"([^"]+)")?/g

/** `2.5` to `8` in `§2.5–8` means 2.8: the end replaces the start's last components. */
const rangeEnd = (start: string, end: string): string => {
  const a = start.split(".")
  const b = end.split(".")
  return [...a.slice(0, Math.max(0, a.length - b.length)), ...b].join(".")
}

/** Every citation in `text`, one per cited section (both ends of a range). */
const citationsIn = (file: string, text: string): ReadonlyArray<Citation> => {
  const found: Array<Citation> = []
  const lineOf = (index: number | undefined) => text.slice(0, index).split("\n").length
  for (const match of text.matchAll(PAGE_CITATION)) {
    found.push({ file, line: lineOf(match.index), page: match[1]!, section: undefined, items: [], text: match[0] })
  }
  for (const match of text.matchAll(TITLE_CITATION)) {
    const page = match[1]!.replace(/\.md$/, "")
    // `spec/auth.md §3` is a numbered citation, read below; only the README and titles are new here.
    if (page !== "README" && match[2] === undefined) continue
    found.push({
      file,
      line: lineOf(match.index),
      page,
      section: undefined,
      title: match[2],
      items: [],
      text: match[0]
    })
  }
  for (const match of [...text.matchAll(CITATION), ...text.matchAll(SPEC_CITATION)]) {
    const line = lineOf(match.index)
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
const headingTitles = new Map<string, ReadonlyArray<string>>()
const pageSections = (page: string) => {
  if (!pages.has(page)) {
    let text: string | undefined
    try {
      text = readFileSync(path.join(referenceDir, `${page}.md`), "utf8")
    } catch {
      text = undefined
    }
    pages.set(page, text === undefined ? undefined : sectionsOf(text))
    headingTitles.set(page, text === undefined ? [] : [...text.matchAll(/^#{1,6}\s+(.*)$/gm)].map((m) => m[1]!))
  }
  return pages.get(page)
}

/** What is wrong with a citation, or undefined when it resolves. */
const problemOf = (citation: Citation): string | undefined => {
  const sections = pageSections(citation.page)
  if (sections === undefined) return `docs/reference/${citation.page}.md does not exist`
  if (citation.title !== undefined) {
    const wanted = citation.title.toLowerCase()
    const headings = headingTitles.get(citation.page) ?? []
    return headings.some((heading) => heading.toLowerCase().includes(wanted))
      ? undefined
      : `${citation.page}.md has no heading titled "${citation.title}"`
  }
  if (citation.section === undefined) return undefined
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
  // The two maps of the code cite the contract too; a newcomer follows those citations first.
  const maps = ["ARCHITECTURE.md", "CONTRIBUTING.md"].map((file) => path.join(root, file))
  const citations = [
    ...["src", "test", "migrations", "scripts"].flatMap((dir) => sourceFiles(path.join(root, dir))),
    ...maps
  ]
    .flatMap((file) => citationsIn(path.relative(root, file), readFileSync(file, "utf8")))

  it("are found in the code (the scan itself works)", () => {
    expect(citations.length).toBeGreaterThan(60)
    expect(citations.some((c) => c.page === "auth" && c.items.length > 0)).toBe(true)
  })

  it("every `<page>.md §N` in src/, test/, migrations/, scripts/, ARCHITECTURE.md and CONTRIBUTING.md names a heading of docs/reference/<page>.md", () => {
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

  it("reads the looser forms: any page, `<page> spec §N`, bare pages and titled headings", () => {
    const text = [
      "(domain spec §7.2)",
      "spec/lifecycle.md §1.2",
      "Authoritative source: `spec/config.md`.",
      "docs/reference/auth.md, and",
      "(beyond the reference, spec README \"deliberate improvements\")",
      "RFC 9110 §11.6.1 and README.md are not citations"
    ].join("\n")
    expect(
      citationsIn("f", text).map((c) => `${c.line} ${c.page} ${c.section ?? "-"} ${c.title ?? "-"}`).sort()
    ).toEqual([
      "1 domain 7.2 -",
      "2 lifecycle 1.2 -",
      "3 config - -",
      "4 auth - -",
      "5 README - deliberate improvements"
    ])
    const problems = citationsIn("f", text).map(problemOf)
    expect(problems).toContain("docs/reference/lifecycle.md does not exist")
    expect(problems).toContain("docs/reference/config.md does not exist")
    expect(problems).toContain("README.md has no heading titled \"deliberate improvements\"")
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
