/**
 * Writes docs/reference/configuration.md from `src/platform/settings.ts`, the single source of
 * every setting (flag, variable, default, meaning; the same table drives `--help`).
 *
 *     npx tsx scripts/docs/configuration.ts          # rewrite the page
 *     npx tsx scripts/docs/configuration.ts --check  # exit 1 when the page is out of date
 *
 * test/platform/config.test.ts renders the page the same way and fails when the file differs,
 * so a branch that adds a setting (or a merge of two) only has to run the first command.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { configTableMarkdown } from "../../src/platform/settings.js"

export const configurationPagePath = fileURLToPath(
  new URL("../../docs/reference/configuration.md", import.meta.url)
)

/** The whole page: fixed prose, then one table per settings section. */
export const configurationPage = (): string =>
  [
    "# Configuration reference",
    "",
    "<!-- Generated from src/platform/settings.ts by `npx tsx scripts/docs/configuration.ts`; edit those, not this page. -->",
    "",
    "Every setting is a flag and an `IMGSRV_*` environment variable; a flag wins over the",
    "environment, which wins over the default. Durations are written `500ms`, `5s`, `1m`,",
    "`24h`; booleans `true`/`false` (a bare `--flag` means true). A bad value stops start-up",
    "with one line naming the flag and its variable. `npm start -- --help` lists everything, one",
    "line per setting (flag, variable, default, meaning), plain text unless on a terminal;",
    "`npm start -- --version` prints `imgsrv <version> (commit …, built …)`. The @effect/cli",
    "built-ins `--wizard`, `--completions` and `--log-level` are refused (use `--verbosity`).",
    "Secrets (the S3 secret key, the password inside the Postgres URL) are never logged.",
    "",
    "Which database and which store a combination of `--postgres-url`, `--embedded` and",
    "`--s3-endpoint` gives: [operators.md](../operators.md#which-database-and-which-store).",
    "This page is generated from `src/platform/settings.ts`",
    "(`npx tsx scripts/docs/configuration.ts`); a test fails if the two disagree.",
    "",
    "## Settings",
    "",
    configTableMarkdown()
  ].join("\n")

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const page = configurationPage()
  if (process.argv.includes("--check")) {
    const current = readFileSync(configurationPagePath, "utf8")
    if (current !== page) {
      process.stderr.write(`${configurationPagePath} is out of date: run npx tsx scripts/docs/configuration.ts\n`)
      process.exit(1)
    }
  } else {
    writeFileSync(configurationPagePath, page)
    process.stdout.write(`wrote ${configurationPagePath}\n`)
  }
}
