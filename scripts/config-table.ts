/**
 * Prints the README's configuration tables from `src/platform/config/settings.ts`.
 * `npx tsx scripts/config-table.ts` — paste the output under "Configuration";
 * test/platform/config.test.ts fails when the README and the settings disagree.
 */
import { configTableMarkdown } from "../src/platform/config/settings.js"

process.stdout.write(`${configTableMarkdown()}\n`)
