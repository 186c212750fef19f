import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

/**
 * Every relative link of the Markdown pages — the README, the maps beside it and everything
 * under docs/ — reaches an existing file or directory, and a `#fragment` names a heading of
 * the page it points at (GitHub's anchors), so moving a section between pages cannot leave a
 * dangling link behind. Links inside code (fenced blocks, inline code) are not links.
 */

const root = fileURLToPath(new URL("../../", import.meta.url))

const markdownUnder = (dir: string): ReadonlyArray<string> =>
  readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name)
    if (entry.isDirectory()) return markdownUnder(relative)
    return entry.name.endsWith(".md") ? [relative] : []
  })

const PAGES = [
  ...["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md"].filter((page) =>
    existsSync(path.join(root, page))
  ),
  ...markdownUnder("docs")
]

/** The page with fenced blocks blanked out (line numbers kept) and inline code removed. */
const proseOf = (markdown: string): string => {
  let fence: string | undefined
  const lines = markdown.split("\n").map((line) => {
    const marks = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === undefined && marks !== undefined) {
      fence = marks
      return ""
    }
    if (fence !== undefined) {
      if (marks !== undefined && marks[0] === fence[0] && marks.length >= fence.length) fence = undefined
      return ""
    }
    return line
  })
  return lines.join("\n").replace(/`[^`]*`/g, (code) => code.replace(/[^\n]/g, " "))
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export const slugOf = (heading: string): string =>
  heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-")

/** The anchors of a page's headings, numbered `-1`, `-2` … when a heading repeats. */
export const anchorsOf = (markdown: string): ReadonlySet<string> => {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  let fenced: string | undefined
  for (const line of markdown.split("\n")) {
    const marks = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]
    if (marks !== undefined) {
      if (fenced === undefined) fenced = marks
      else if (marks[0] === fenced[0] && marks.length >= fenced.length) fenced = undefined
      continue
    }
    if (fenced !== undefined) continue
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1]
    if (heading === undefined) continue
    const slug = slugOf(heading)
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

interface Link {
  readonly page: string
  readonly line: number
  readonly target: string
}

const LINK = /(?<!\\)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g

const linksOf = (page: string, markdown: string): ReadonlyArray<Link> => {
  const prose = proseOf(markdown)
  return [...prose.matchAll(LINK)].map((match) => ({
    page,
    line: prose.slice(0, match.index).split("\n").length,
    target: match[1]!
  }))
}

/** What is wrong with a relative link, or undefined when it resolves. */
const problemOf = (link: Link): string | undefined => {
  const [file, fragment] = link.target.split("#", 2) as [string, string | undefined]
  const resolved = file === "" ? path.join(root, link.page) : path.join(root, path.dirname(link.page), file)
  if (!existsSync(resolved)) return `${path.relative(root, resolved)} does not exist`
  if (fragment === undefined || fragment === "") return undefined
  if (statSync(resolved).isDirectory() || !resolved.endsWith(".md")) {
    return `#${fragment} points into ${path.relative(root, resolved)}, which is not a Markdown page`
  }
  return anchorsOf(readFileSync(resolved, "utf8")).has(decodeURIComponent(fragment))
    ? undefined
    : `${path.relative(root, resolved)} has no heading with the anchor #${fragment}`
}

describe("relative links in the Markdown pages", () => {
  const links = PAGES.flatMap((page) => linksOf(page, readFileSync(path.join(root, page), "utf8")))
  const relative = links.filter((link) => !/^[a-z][a-z0-9+.-]*:/i.test(link.target))

  it("are found (the scan itself works)", () => {
    expect(PAGES).toContain("docs/operators.md")
    expect(relative.length).toBeGreaterThan(50)
    expect(relative.some((link) => link.target.includes("#"))).toBe(true)
  })

  it("each reach an existing file, and a heading of it when they name one", () => {
    const broken = relative.flatMap((link) => {
      const problem = problemOf(link)
      return problem === undefined ? [] : [`${link.page}:${link.line} (${link.target}): ${problem}`]
    })
    expect(broken).toEqual([])
  })
})

describe("the link checker", () => {
  it("makes GitHub's anchors", () => {
    expect(slugOf("Publishing with `imgsrv push`")).toBe("publishing-with-imgsrv-push")
    expect(slugOf("2.11 Auth management (all AM)")).toBe("211-auth-management-all-am")
    expect(slugOf("Running against external PostgreSQL and S3 (Garage, MinIO)")).toBe(
      "running-against-external-postgresql-and-s3-garage-minio"
    )
    expect(slugOf("3. Worked example: tutorial — 0.1.0")).toBe("3-worked-example-tutorial--010")
    expect([...anchorsOf("# A\n```\n# B\n```\n## A\n")]).toEqual(["a", "a-1"])
  })

  it("reads links outside code only, and reports a missing file and a missing heading", () => {
    const page = "[a](docs/operators.md#deploy) `[b](nowhere.md)`\n```\n[c](nowhere.md)\n```\n[d](README.md#no-such)"
    const links = linksOf("README.md", page)
    expect(links.map((link) => `${link.line} ${link.target}`)).toEqual([
      "1 docs/operators.md#deploy",
      "5 README.md#no-such"
    ])
    expect(links.map(problemOf)).toEqual([undefined, "README.md has no heading with the anchor #no-such"])
    expect(problemOf({ page: "docs/x.md", line: 1, target: "missing.md" })).toBe("docs/missing.md does not exist")
  })
})
