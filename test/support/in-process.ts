import { defaultRawSettings } from "../../src/platform/config/config.js"
import type { RawSettings } from "../../src/platform/config/settings.js"

/**
 * The defaults for an app started inside a test or benchmark process: an ephemeral port on
 * 127.0.0.1, no metrics listener, errors only (JSON), on `dataDir` and the database at `dbUrl`.
 */
export const quietInProcessSettings = (dataDir: string, dbUrl: string): RawSettings => ({
  ...defaultRawSettings(),
  "listen": "127.0.0.1:0",
  "metrics-listen": "",
  "log-format": "json",
  "verbosity": "error",
  "data-dir": dataDir,
  "postgres-url": dbUrl
})
