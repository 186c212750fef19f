import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"

/**
 * The deployment files the documentation shows are the files that are tested: the nginx
 * configuration `npm run test:clients` runs the LXD client through
 * (test/clients/lxc.test.ts) is printed in docs/operators.md verbatim.
 */

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8")

describe("deployment files", () => {
  it("docs/operators.md shows deploy/nginx/imgsrv.conf verbatim", () => {
    expect(read("docs/operators.md")).toContain(`\`\`\`nginx\n${read("deploy/nginx/imgsrv.conf")}\`\`\`\n`)
  })
})
