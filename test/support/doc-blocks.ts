/**
 * The shell examples of a markdown page, as a test runs them: every fenced block whose
 * language is `sh`, `bash` or `shell`, in page order, in one bash session per page (so a
 * variable set in one section is there in the next, as for a reader going down the page).
 *
 * A shell block that cannot run in a test (it needs docker, the incus client, the internet,
 * or starts a server the test already runs) is marked by an HTML comment as the last
 * non-blank line before its fence, giving the reason:
 *
 *     <!-- doc-test skip: needs docker -->
 *
 * Nothing is left out silently: a fence without a language, or a skip marker that is not
 * directly followed by a shell block or gives no reason, is a problem the test reports.
 */

export const SHELL_LANGUAGES: ReadonlySet<string> = new Set(["sh", "bash", "shell"])

export interface ShellBlock {
  /** Where the block's opening fence is, `file:line` (1-based). */
  readonly location: string
  readonly code: string
  /** The marker's reason when the block is not run. */
  readonly skip: string | undefined
}

export interface PageBlocks {
  readonly blocks: ReadonlyArray<ShellBlock>
  /** Mistakes in the page's fences and markers, each with its `file:line`. */
  readonly problems: ReadonlyArray<string>
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/
const MARKER = /^\s*<!--\s*doc-test\s+skip:(.*?)-->\s*$/
const MARKER_LIKE = /^\s*<!--\s*doc-test/

/** The shell blocks of one markdown page named `file` (used in locations only). */
export const shellBlocksOf = (file: string, markdown: string): PageBlocks => {
  const lines = markdown.split("\n")
  const blocks: Array<ShellBlock> = []
  const problems: Array<string> = []
  /** A marker waiting for its block: its line and reason. */
  let pending: { readonly line: number; readonly reason: string } | undefined
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!
    const fence = FENCE.exec(text)
    if (fence === null) {
      if (text.trim() === "") continue
      if (pending !== undefined) {
        problems.push(`${file}:${pending.line}: a doc-test skip marker must come right before a shell block`)
        pending = undefined
      }
      if (MARKER_LIKE.test(text)) {
        const marker = MARKER.exec(text)
        const reason = marker?.[1]?.trim() ?? ""
        if (reason === "") problems.push(`${file}:${i + 1}: write markers as <!-- doc-test skip: <reason> -->`)
        else pending = { line: i + 1, reason }
      }
      continue
    }
    const [, indent, marks, language] = fence as unknown as [string, string, string, string]
    const body: Array<string> = []
    let j = i + 1
    for (; j < lines.length; j++) {
      const closing = lines[j]!.trimStart()
      if (closing.startsWith(marks) && closing.slice(marks.length).trim() === "" && closing[0] === marks[0]) break
      // Content lines lose the fence's indentation (fences inside list items).
      body.push(lines[j]!.startsWith(indent) ? lines[j]!.slice(indent.length) : lines[j]!.trimStart())
    }
    if (j === lines.length) problems.push(`${file}:${i + 1}: the fence is never closed`)
    if (language === "") problems.push(`${file}:${i + 1}: a fenced block must name its language (e.g. sh, text)`)
    if (SHELL_LANGUAGES.has(language)) {
      blocks.push({ location: `${file}:${i + 1}`, code: body.join("\n"), skip: pending?.reason })
    } else if (pending !== undefined) {
      problems.push(`${file}:${pending.line}: a doc-test skip marker must come right before a shell block`)
    }
    pending = undefined
    i = j
  }
  if (pending !== undefined) {
    problems.push(`${file}:${pending.line}: a doc-test skip marker must come right before a shell block`)
  }
  return { blocks, problems }
}

/**
 * One bash script running the page's unmarked blocks in order, strictly: `set -Eeuo
 * pipefail` (and errexit inside `$(…)`), so a failing command, a failing pipe or an unset
 * variable stops it. Each block announces itself on stderr, and a failure names the block
 * and the command.
 */
export const sessionScript = (blocks: ReadonlyArray<ShellBlock>): string =>
  [
    "set -Eeuo pipefail",
    "shopt -s inherit_errexit",
    "doc_block=''",
    "trap 'echo \"doc-test: failed command: $BASH_COMMAND\" >&2' ERR",
    // An unset variable ends the shell without an ERR trap; the EXIT trap still names the block.
    "trap 'status=$?; [ $status -eq 0 ] || echo \"doc-test: the block at $doc_block failed (exit $status)\" >&2' EXIT",
    ...blocks.filter((block) => block.skip === undefined).flatMap((block) => [
      `doc_block='${block.location}'`,
      "echo \"### $doc_block\" >&2",
      block.code
    ]),
    ""
  ].join("\n")
