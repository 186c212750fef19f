import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real client binaries from apt: `npm run test:clients` (vitest.clients.config.ts).
    exclude: [...configDefaults.exclude, "test/clients/**"],
    globalSetup: ["test/support/global-setup.ts"],
    // Each file gets its own database and store; files run in parallel processes.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000
  }
})
