import { defineConfig } from "vitest/config"

/**
 * `npm run test:clients`: tests that drive real client binaries installed from apt
 * (lxd-client's `lxc`, nginx, qemu-img, mksquashfs, xz, openssl). Not part of `npm test`;
 * `.ci/run` installs the packages and runs it after `npm test`.
 */
export default defineConfig({
  test: {
    include: ["test/clients/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 30_000
  }
})
