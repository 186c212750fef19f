/**
 * Prints the README's configuration table from `src/platform/settings.ts`.
 * `npx tsx scripts/config-table.ts` — paste the output under "Configuration";
 * test/platform/config.test.ts fails when the README and the settings disagree.
 */
import { type Setting, settings } from "../src/platform/settings.js"

const sections = [...new Set(settings.map((s) => s.section))]
const lines: Array<string> = []
for (const section of sections) {
  lines.push(`### ${section}`, "", "| Flag | Environment | Default | Meaning |", "|---|---|---|---|")
  for (const s of settings.filter((x): x is typeof x & Setting => x.section === section) as ReadonlyArray<Setting>) {
    const env = [s.env, ...(s.fallbackEnv ?? [])].map((e) => `\`${e}\``).join(", ")
    const def = s.default === "" ? "(empty)" : `\`${s.default}\``
    lines.push(`| \`--${s.flag}\` | ${env} | ${def} | ${s.description} |`)
  }
  lines.push("")
}
process.stdout.write(`${lines.join("\n")}`)
