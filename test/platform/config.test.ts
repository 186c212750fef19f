import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { configurationPage, configurationPagePath } from "../../scripts/docs/configuration.js"
import { resolveConfig } from "../../src/cli/serve.js"
import {
  defaultRawSettings,
  type LoopSettings,
  parseAppConfig,
  parseGoDuration
} from "../../src/platform/config/config.js"
import { settings } from "../../src/platform/config/settings.js"

const withEnv = (env: Record<string, string>) =>
  Layer.merge(NodeContext.layer, Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

const configOf = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  resolveConfig(args).pipe(Effect.provide(withEnv(env)))

const errorOf = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  configOf(args, env).pipe(Effect.flip, Effect.map((e) => String((e as { message?: unknown }).message ?? e)))

describe("configuration", () => {
  it.effect("uses the documented defaults when nothing is set", () =>
    Effect.gen(function*() {
      const config = yield* configOf([])
      expect(config.listen).toEqual({ host: undefined, port: 8080 })
      expect(Duration.toMillis(config.shutdownTimeout)).toBe(10_000)
      expect(Duration.toMillis(config.uploadTtl)).toBe(24 * 3_600_000)
      expect(config.database._tag).toBe("embedded")
      expect(config.storage._tag).toBe("filesystem")
      expect(config.casPromotion.enabled).toBe(true)
      expect(Duration.toMillis(config.casPromotion.lease)).toBe(30_000)
      expect(config.publishWorker.enabled).toBe(true)
      expect(Option.getOrThrow(config.metrics)).toEqual({ listen: { host: "127.0.0.1", port: 9464 }, path: "/metrics" })
      expect(Option.isNone(config.otel)).toBe(true)
      expect(config.logFormat).toBe("text")
      expect(config.verbosity).toBe("info")
    }))

  it.effect("takes a flag over the environment, and the environment over the default", () =>
    Effect.gen(function*() {
      const env = { IMGSRV_UPLOAD_TTL: "1h", IMGSRV_LISTEN: "127.0.0.1:9000", IMGSRV_CAS_PROMOTION_ENABLED: "false" }
      const fromEnv = yield* configOf([], env)
      expect(Duration.toMillis(fromEnv.uploadTtl)).toBe(3_600_000)
      expect(fromEnv.listen.port).toBe(9000)
      expect(fromEnv.casPromotion.enabled).toBe(false)
      const fromFlags = yield* configOf(["--upload-ttl", "5m", "--listen=:7000", "--cas-promotion-enabled"], env)
      expect(Duration.toMillis(fromFlags.uploadTtl)).toBe(300_000)
      expect(fromFlags.listen).toEqual({ host: undefined, port: 7000 })
      expect(fromFlags.casPromotion.enabled).toBe(true)
    }))

  it.effect("accepts booleans as --flag, --flag=false and --flag false", () =>
    Effect.gen(function*() {
      expect((yield* configOf(["--embedded=false"])).database._tag).toBe("none")
      expect((yield* configOf(["--embedded", "false"])).database._tag).toBe("none")
      expect((yield* configOf(["--embedded"], { IMGSRV_EMBEDDED: "false" })).database._tag).toBe("embedded")
      expect((yield* configOf([], { IMGSRV_EMBEDDED: "false" })).database._tag).toBe("none")
    }))

  it.effect("reads OTEL_* variables when the imgsrv ones are unset", () =>
    Effect.gen(function*() {
      const config = yield* configOf([], {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
        OTEL_SERVICE_NAME: "imgsrv-eu"
      })
      expect(Option.getOrThrow(config.otel)).toEqual({ endpoint: "http://collector:4318", serviceName: "imgsrv-eu" })
      const own = yield* configOf([], {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        IMGSRV_OTEL_ENDPOINT: "http://mine:4318"
      })
      expect(Option.getOrThrow(own.otel).endpoint).toBe("http://mine:4318")
    }))

  it.effect("empty metrics listen address disables the metrics listener", () =>
    Effect.gen(function*() {
      expect(Option.isNone((yield* configOf(["--metrics-listen", ""])).metrics)).toBe(true)
    }))

  it.effect("chooses storage and database from what is set", () =>
    Effect.gen(function*() {
      const external = yield* configOf([], { IMGSRV_POSTGRES_URL: "postgres://u:p@db:5432/imgsrv" })
      expect(external.database._tag).toBe("external")
      expect(external.storage._tag).toBe("filesystem")
      const s3 = yield* configOf([], {
        IMGSRV_S3_ENDPOINT: "garage:3900",
        IMGSRV_S3_BUCKET: "imgsrv",
        IMGSRV_S3_ACCESS_KEY_ID: "GK1",
        IMGSRV_S3_SECRET_ACCESS_KEY: "s3cr3t"
      })
      expect(s3.storage._tag).toBe("s3")
      if (s3.storage._tag === "s3") {
        expect(s3.storage.s3.region).toBe("us-east-1")
        expect(Redacted.value(s3.storage.s3.secretAccessKey)).toBe("s3cr3t")
        expect(String(s3.storage.s3.secretAccessKey)).not.toContain("s3cr3t")
      }
    }))

  it.effect("reads trusted proxies and rate limits: failed-auth limit on, general limit off by default", () =>
    Effect.gen(function*() {
      const defaults = yield* configOf([])
      expect(defaults.trustedProxies.entries).toEqual([])
      expect(Option.getOrThrow(defaults.rateLimits.authFailures)).toEqual({ burst: 10, period: Duration.minutes(1) })
      expect(Option.isNone(defaults.rateLimits.requests)).toBe(true)
      const set = yield* configOf(["--rate-limit-requests", "600/1m", "--rate-limit-auth-failures=0"], {
        IMGSRV_TRUSTED_PROXIES: "10.0.0.0/8, 192.168.0.1"
      })
      expect(set.trustedProxies.entries).toEqual(["10.0.0.0/8", "192.168.0.1"])
      expect(set.trustedProxies.contains("10.20.30.40")).toBe(true)
      expect(Option.getOrThrow(set.rateLimits.requests)).toEqual({ burst: 600, period: Duration.minutes(1) })
      expect(Option.isNone(set.rateLimits.authFailures)).toBe(true)
      for (const bad of ["10", "10/", "/1m", "0/1m", "10/0s", "ten/1m", "10/1parsec"]) {
        expect(yield* errorOf(["--rate-limit-requests", bad]), bad).toContain(
          "--rate-limit-requests (IMGSRV_RATE_LIMIT_REQUESTS): expected burst/period like 10/1m"
        )
      }
      expect(yield* errorOf([], { IMGSRV_TRUSTED_PROXIES: "10.0.0.0/8, proxy.internal" })).toContain(
        "--trusted-proxies (IMGSRV_TRUSTED_PROXIES)"
      )
    }))

  it.effect("rejects each bad value with one line naming the flag and the variable", () =>
    Effect.gen(function*() {
      expect(yield* errorOf([], { IMGSRV_S3_USE_TLS: "maybe" })).toBe(
        "invalid value \"maybe\" for --s3-use-tls (IMGSRV_S3_USE_TLS): expected true or false"
      )
      expect(yield* errorOf(["--upload-ttl", "5parsecs"])).toContain("--upload-ttl (IMGSRV_UPLOAD_TTL)")
      const pg = yield* errorOf([], { IMGSRV_POSTGRES_URL: "not a url with secret-password" })
      expect(pg).toContain("--postgres-url (IMGSRV_POSTGRES_URL)")
      expect(pg).not.toContain("secret-password")
      expect(yield* errorOf(["--listen", "nowhere"])).toContain("--listen (IMGSRV_LISTEN)")
      expect(yield* errorOf(["--log-format", "xml"])).toContain("--log-format (IMGSRV_LOG_FORMAT)")
      expect(yield* errorOf(["--verbosity", "loud"])).toContain("--verbosity (IMGSRV_VERBOSITY)")
      expect(yield* errorOf(["--metrics-path", "metrics"])).toContain("--metrics-path")
      expect(yield* errorOf(["--postgres-max-connections", "0"])).toContain("--postgres-max-connections")
      expect(yield* errorOf(["--s3-endpoint", "http://garage:3900"])).toContain("without a scheme")
      expect(yield* errorOf(["--s3-endpoint", "garage:3900"])).toContain("IMGSRV_S3_BUCKET")
      for (const flag of ["cas-promotion-lease", "publish-job-lease", "shutdown-timeout"]) {
        expect(yield* errorOf([`--${flag}`, "soon"])).toContain(`--${flag}`)
      }
    }))

  it.effect("gives the retention loop its own backoff and breaker settings (defaults: 5s, 1m, 10, 1m)", () =>
    Effect.gen(function*() {
      const figures = (loop: LoopSettings) => [
        Duration.toMillis(loop.pollInterval),
        Duration.toMillis(loop.errorBackoff),
        Duration.toMillis(loop.errorBackoffMax),
        loop.circuitBreakerFailures,
        Duration.toMillis(loop.circuitBreakerCooldown)
      ]
      expect(figures((yield* configOf([])).retention.worker)).toEqual([60_000, 5_000, 60_000, 10, 60_000])
      const set = (yield* configOf(
        ["--retention-error-backoff", "2s", "--retention-circuit-breaker-failures=3", "--retention-interval=30s"],
        { IMGSRV_RETENTION_ERROR_BACKOFF_MAX: "10s", IMGSRV_RETENTION_CIRCUIT_BREAKER_COOLDOWN: "5m" }
      )).retention.worker
      expect(figures(set)).toEqual([30_000, 2_000, 10_000, 3, 300_000])
      expect(yield* errorOf(["--retention-error-backoff", "soon"])).toContain(
        "--retention-error-backoff (IMGSRV_RETENTION_ERROR_BACKOFF)"
      )
    }))

  it.effect("gives the webhook and GC loops their own backoff and breaker settings (today's values by default)", () =>
    Effect.gen(function*() {
      const figures = (loop: LoopSettings) => [
        Duration.toMillis(loop.errorBackoff),
        Duration.toMillis(loop.errorBackoffMax),
        loop.circuitBreakerFailures,
        Duration.toMillis(loop.circuitBreakerCooldown)
      ]
      const defaults = yield* configOf([])
      expect(figures(defaults.webhooks.worker)).toEqual([5_000, 60_000, 10, 60_000])
      expect(figures(defaults.gc.worker)).toEqual([5_000, 300_000, 10, 300_000])
      // --gc-interval (default 1h) is the loop's interval.
      expect(Duration.toMillis(defaults.gc.worker.pollInterval)).toBe(3_600_000)
      const set = yield* configOf(
        ["--webhook-worker-error-backoff=1s", "--webhook-worker-circuit-breaker-failures", "4", "--gc-interval=2m"],
        { IMGSRV_GC_ERROR_BACKOFF_MAX: "10m", IMGSRV_GC_CIRCUIT_BREAKER_COOLDOWN: "30s" }
      )
      expect(figures(set.webhooks.worker)).toEqual([1_000, 60_000, 4, 60_000])
      // A failed collection is retried before the next scheduled run would start.
      expect(figures(set.gc.worker)).toEqual([5_000, 120_000, 10, 30_000])
      expect(yield* errorOf(["--gc-circuit-breaker-failures", "many"])).toContain(
        "--gc-circuit-breaker-failures (IMGSRV_GC_CIRCUIT_BREAKER_FAILURES)"
      )
      expect(yield* errorOf(["--webhook-worker-error-backoff-max", "later"])).toContain(
        "--webhook-worker-error-backoff-max (IMGSRV_WEBHOOK_WORKER_ERROR_BACKOFF_MAX)"
      )
    }))

  it("parses Go-style durations", () => {
    expect(Option.map(parseGoDuration("500ms"), Duration.toMillis)).toEqual(Option.some(500))
    expect(Option.map(parseGoDuration("1h30m"), Duration.toMillis)).toEqual(Option.some(5_400_000))
    expect(Option.map(parseGoDuration("0"), Duration.toMillis)).toEqual(Option.some(0))
    expect(Option.isNone(parseGoDuration("5 seconds"))).toBe(true)
    expect(Option.isNone(parseGoDuration("-1s"))).toBe(true)
  })

  it("has a parser for every setting (defaults parse cleanly)", () => {
    expect(Either.isRight(parseAppConfig(defaultRawSettings()))).toBe(true)
  })

  it("docs/reference/configuration.md documents every setting exactly as defined, and nothing else", () => {
    const page = readFileSync(configurationPagePath, "utf8")
    // Flags, variables, defaults and meanings, word for word: the committed page is what the
    // generator renders from settings.ts now.
    expect(page, "docs/reference/configuration.md is out of date: run npx tsx scripts/docs/configuration.ts").toBe(
      configurationPage()
    )
    const rows = page.split("\n").filter((line) => /^\| `--[a-z0-9-]+` \| `IMGSRV_/.test(line))
    expect(rows).toHaveLength(settings.length)
  })
})
