import { Context, Data, Duration, Either, Option, Redacted } from "effect"
import * as path from "node:path"
import { parseTrustedProxies, type TrustedProxies } from "../http/client-address.js"
import type { Rate, RateLimitSettings } from "../http/rate-limit.js"
import { type RawSettings, type Setting, type SettingFlag, settings } from "./settings.js"

export interface ListenAddress {
  /** undefined = all interfaces (`:8080`). */
  readonly host: string | undefined
  readonly port: number
}

export interface S3Settings {
  readonly endpoint: string
  readonly bucket: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: Redacted.Redacted<string>
  readonly sessionToken: Option.Option<Redacted.Redacted<string>>
  readonly useTls: boolean
  readonly pathStyle: boolean
  readonly connectTimeout: Duration.Duration
  /** A request that moves no bytes for this long is abandoned (not a limit on its total time). */
  readonly idleTimeout: Duration.Duration
}

/**
 * Where the catalog lives:
 * - `external`: the operator's PostgreSQL (`--postgres-url`);
 * - `embedded`: a PostgreSQL server imgsrv starts itself under the data dir;
 * - `none`: ops-only mode (`--embedded=false` without a URL) — only health,
 *   readiness and metrics work; every catalog route answers 503.
 */
export type DatabaseMode =
  | { readonly _tag: "external"; readonly url: Redacted.Redacted<string> }
  | { readonly _tag: "embedded"; readonly dataDir: string; readonly restart: RestartPolicy }
  | { readonly _tag: "none" }

/** How the embedded PostgreSQL server is brought back after it exits. */
export interface RestartPolicy {
  /** Restarts tried before giving up (counted since the server last stayed up for a minute). */
  readonly attempts: number
  /** Delay before the first attempt; doubles per attempt. */
  readonly backoff: Duration.Duration
}

/** Bounds on every PostgreSQL round trip, so an unreachable or frozen server fails requests instead of hanging them. */
export interface PostgresTimeouts {
  /** Opening a connection, or waiting for a free one in the pool. */
  readonly connect: Duration.Duration
  /** A statement's run time (server side), and with a grace period the client's wait for an answer. */
  readonly statement: Duration.Duration
}

export type StorageMode =
  | { readonly _tag: "s3"; readonly s3: S3Settings }
  | { readonly _tag: "filesystem"; readonly root: string }

/** How a background job's loop runs (platform/worker.ts). */
export interface LoopSettings {
  readonly enabled: boolean
  readonly pollInterval: Duration.Duration
  readonly errorBackoff: Duration.Duration
  readonly errorBackoffMax: Duration.Duration
  readonly circuitBreakerFailures: number
  readonly circuitBreakerCooldown: Duration.Duration
}

/** The background loops, by the prefix of their flags (`<prefix>-error-backoff`, …). */
type LoopPrefix = "cas-promotion" | "upload-expiry" | "publish-worker" | "webhook-worker" | "gc" | "retention"
/** A loop's backoff after a failed run and its circuit breaker. */
type LoopBackoff = Pick<
  LoopSettings,
  "errorBackoff" | "errorBackoffMax" | "circuitBreakerFailures" | "circuitBreakerCooldown"
>

/** A loop whose job claims work under a lease. */
export interface WorkerLoopSettings extends LoopSettings {
  readonly lease: Duration.Duration
}

/** Webhook delivery (src/webhooks/delivery-worker.ts, docs/webhooks.md). */
export interface WebhookSettings {
  readonly worker: WorkerLoopSettings
  /** Delivery loops per replica. */
  readonly concurrency: number
  readonly timeout: Duration.Duration
  /** Delays before the 2nd, 3rd, … attempt; the last one repeats. */
  readonly retryDelays: ReadonlyArray<Duration.Duration>
  readonly retryWindow: Duration.Duration
  readonly disableAfter: Duration.Duration
  readonly allowPrivateNetworks: boolean
}

/** Garbage collection of CAS blobs (src/gc/, docs/gc.md). */
export interface GcSettings {
  /** The background loop (`enabled`; a run every `pollInterval`, `--gc-interval`); `POST /v1/admin/gc` works either way. */
  readonly worker: LoopSettings
  /** How long a blob stays unreferenced before it may be deleted (zero: at once). */
  readonly gracePeriod: Duration.Duration
}

/** PEM files of the API listener's certificate and key: HTTPS when set (platform/http/tls.ts). */
/** Retention rules (src/retention/worker.ts, docs/lifecycle.md). */
export interface RetentionSettings {
  readonly worker: LoopSettings
  /** Time between two applications of one image's rules. */
  readonly interval: Duration.Duration
}

/** PEM files of the API listener's certificate and key: HTTPS when set (platform/http/tls.ts). */
export interface TlsFiles {
  readonly certFile: string
  readonly keyFile: string
}

export interface AppConfigShape {
  readonly listen: ListenAddress
  readonly tls: Option.Option<TlsFiles>
  readonly nodeName: string
  readonly shutdownTimeout: Duration.Duration
  readonly dataDir: string
  readonly database: DatabaseMode
  readonly postgresMaxConnections: number
  readonly postgresTimeouts: PostgresTimeouts
  readonly storage: StorageMode
  readonly logFormat: "text" | "json"
  readonly verbosity: "debug" | "info" | "warn" | "error"
  readonly metrics: Option.Option<{ readonly listen: ListenAddress; readonly path: string }>
  readonly otel: Option.Option<{ readonly endpoint: string; readonly serviceName: string }>
  readonly uploadTtl: Duration.Duration
  /** Extra CA certificates (a PEM file) trusted for OIDC discovery and JWKS fetches. */
  readonly oidcCaFile: Option.Option<string>
  readonly casPromotion: WorkerLoopSettings
  /** The expiry sweeper's loop (uploads/expiry-sweeper.ts). */
  readonly uploadExpiry: LoopSettings
  readonly publishWorker: WorkerLoopSettings
  readonly webhooks: WebhookSettings
  readonly gc: GcSettings
  readonly retention: RetentionSettings
  /** Proxies whose `X-Forwarded-For` names the client address. */
  readonly trustedProxies: TrustedProxies
  readonly rateLimits: RateLimitSettings
}

/** The parsed, validated configuration; built once at start-up. */
export class AppConfig extends Context.Tag("imgsrv/AppConfig")<AppConfig, AppConfigShape>() {}

/** One bad setting; rendered as a single line naming the flag and the variable. */
export class InvalidSetting extends Data.TaggedError("InvalidSetting")<{
  readonly flag: string
  readonly env: string
  readonly value: string
  readonly expected: string
  /** The value may hold a credential (a secret, or a URL with a password): never shown. */
  readonly secret: boolean
}> {
  override get message() {
    const shown = this.secret ? "<redacted>" : JSON.stringify(this.value)
    return `invalid value ${shown} for --${this.flag} (${this.env}): expected ${this.expected}`
  }
}

/** A combination of settings that cannot work together. */
export class InconsistentSettings extends Data.TaggedError("InconsistentSettings")<{ readonly reason: string }> {
  override get message() {
    return `invalid configuration: ${this.reason}`
  }
}

export type ConfigError = InvalidSetting | InconsistentSettings

const settingOf = (flag: SettingFlag): Setting => settings.find((s) => s.flag === flag)!

const invalid = (flag: SettingFlag, value: string, expected: string) => {
  const setting = settingOf(flag)
  const secret = setting.kind === "secret" || setting.kind === "postgres-url"
  return new InvalidSetting({ flag, env: setting.env, value, expected, secret })
}

const DURATION_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}

/** Go duration syntax: `500ms`, `5s`, `1m`, `1h30m`, `24h`, `0`. */
export const parseGoDuration = (text: string): Option.Option<Duration.Duration> => {
  const trimmed = text.trim()
  if (trimmed === "0") return Option.some(Duration.zero)
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(trimmed)) return Option.none()
  let millis = 0
  for (const match of trimmed.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    millis += Number(match[1]) * DURATION_UNIT_MS[match[2]!]!
  }
  return Option.some(Duration.millis(millis))
}

/** Renders a duration back in Go syntax (for logs and `--help`-like output). */
export const formatGoDuration = (duration: Duration.Duration): string => {
  let ms = Duration.toMillis(duration)
  if (ms === 0) return "0s"
  const parts: Array<string> = []
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size) {
      const n = Math.floor(ms / size)
      parts.push(`${n}${unit}`)
      ms -= n * size
    }
  }
  if (ms > 0) parts.push(`${ms}ms`)
  return parts.join("")
}

const parseBoolean = (flag: SettingFlag, value: string): Either.Either<boolean, InvalidSetting> => {
  const v = value.trim().toLowerCase()
  if (v === "true" || v === "1") return Either.right(true)
  if (v === "false" || v === "0") return Either.right(false)
  return Either.left(invalid(flag, value, "true or false"))
}

const parseDuration = (flag: SettingFlag, value: string): Either.Either<Duration.Duration, InvalidSetting> =>
  Option.match(parseGoDuration(value), {
    onNone: () => Either.left(invalid(flag, value, "a duration like 500ms, 5s, 1m or 24h")),
    onSome: Either.right
  })

const parsePositiveDuration = (flag: SettingFlag, value: string) =>
  Either.flatMap(
    parseDuration(flag, value),
    (d) =>
      Duration.toMillis(d) > 0 ? Either.right(d) : Either.left(invalid(flag, value, "a duration greater than zero"))
  )

const parseCount = (flag: SettingFlag, value: string): Either.Either<number, InvalidSetting> => {
  const v = value.trim()
  if (!/^\d+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) {
    return Either.left(invalid(flag, value, "a whole number of at least 1"))
  }
  return Either.right(Number(v))
}

/** `burst/period` (`10/1m`); empty, `0` or `off` is no limit. */
const parseRate = (flag: SettingFlag, value: string): Either.Either<Option.Option<Rate>, InvalidSetting> => {
  const v = value.trim()
  if (v === "" || v === "0" || v === "off") return Either.right(Option.none())
  const bad = invalid(flag, value, "burst/period like 10/1m (a whole number and a duration), or 0 to disable")
  const match = /^(\d+)\/(.+)$/.exec(v)
  if (!match) return Either.left(bad)
  const burst = Number(match[1])
  const period = parseGoDuration(match[2]!)
  if (burst < 1 || !Number.isSafeInteger(burst) || Option.isNone(period) || Duration.toMillis(period.value) <= 0) {
    return Either.left(bad)
  }
  return Either.right(Option.some({ burst, period: period.value }))
}

/** Renders a rate back as `burst/period` (for the start-up log). */
const formatRate = (rate: Option.Option<Rate>) =>
  Option.match(rate, { onNone: () => "off", onSome: (r) => `${r.burst}/${formatGoDuration(r.period)}` })

export const parseListenAddress = (text: string): Option.Option<ListenAddress> => {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s\[\]]*)):(\d{1,5})$/.exec(text.trim())
  if (!match) return Option.none()
  const port = Number(match[3])
  if (port > 65535) return Option.none()
  const host = match[1] ?? match[2]
  return Option.some({ host: host === "" || host === undefined ? undefined : host, port })
}

const parseListen = (flag: SettingFlag, value: string): Either.Either<ListenAddress, InvalidSetting> =>
  Option.match(parseListenAddress(value), {
    onNone: () => Either.left(invalid(flag, value, "host:port or :port")),
    onSome: Either.right
  })

const parsePostgresUrl = (value: string): Either.Either<Redacted.Redacted<string>, InvalidSetting> => {
  const expected = "a URL like postgres://user:password@host:5432/database"
  try {
    const url = new URL(value.trim())
    if ((url.protocol !== "postgres:" && url.protocol !== "postgresql:") || url.hostname === "") {
      return Either.left(invalid("postgres-url", value, expected))
    }
    return Either.right(Redacted.make(value.trim()))
  } catch {
    return Either.left(invalid("postgres-url", value, expected))
  }
}

/**
 * Turns raw setting values into an `AppConfigShape`, or the first problem found.
 * Pure: `cli.ts` supplies the values (flag > environment > default).
 */
export const parseAppConfig = (raw: RawSettings): Either.Either<AppConfigShape, ConfigError> =>
  Either.gen(function*() {
    const listen = yield* parseListen("listen", raw["listen"])
    const shutdownTimeout = yield* parseDuration("shutdown-timeout", raw["shutdown-timeout"])
    const certFile = raw["tls-cert-file"].trim()
    const keyFile = raw["tls-key-file"].trim()
    if ((certFile === "") !== (keyFile === "")) {
      return yield* Either.left(
        new InconsistentSettings({
          reason: "--tls-cert-file (IMGSRV_TLS_CERT_FILE) and --tls-key-file (IMGSRV_TLS_KEY_FILE) go together"
        })
      )
    }
    const tls = certFile === ""
      ? Option.none()
      : Option.some({ certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) })
    const dataDir = path.resolve(raw["data-dir"].trim() === "" ? "./.imgsrv" : raw["data-dir"].trim())
    const embedded = yield* parseBoolean("embedded", raw["embedded"])

    const logFormat = raw["log-format"].trim()
    if (logFormat !== "text" && logFormat !== "json") {
      return yield* Either.left(invalid("log-format", raw["log-format"], "text or json"))
    }
    const verbosity = raw["verbosity"].trim()
    if (verbosity !== "debug" && verbosity !== "info" && verbosity !== "warn" && verbosity !== "error") {
      return yield* Either.left(invalid("verbosity", raw["verbosity"], "debug, info, warn or error"))
    }

    const metricsPath = raw["metrics-path"].trim()
    if (!metricsPath.startsWith("/")) {
      return yield* Either.left(invalid("metrics-path", raw["metrics-path"], "a path starting with /"))
    }
    const metrics = raw["metrics-listen"].trim() === ""
      ? Option.none()
      : Option.some({ listen: yield* parseListen("metrics-listen", raw["metrics-listen"]), path: metricsPath })

    const otelEndpoint = raw["otel-endpoint"].trim()
    if (otelEndpoint !== "" && !/^https?:\/\/[^\s]+$/.test(otelEndpoint)) {
      return yield* Either.left(invalid("otel-endpoint", raw["otel-endpoint"], "an http(s):// URL"))
    }
    const otelServiceName = raw["otel-service-name"].trim() === "" ? "imgsrv" : raw["otel-service-name"].trim()
    const otel = otelEndpoint === ""
      ? Option.none()
      : Option.some({ endpoint: otelEndpoint.replace(/\/+$/, ""), serviceName: otelServiceName })

    const postgresMaxConnections = yield* parseCount("postgres-max-connections", raw["postgres-max-connections"])
    const postgresTimeouts: PostgresTimeouts = {
      connect: yield* parsePositiveDuration("postgres-connect-timeout", raw["postgres-connect-timeout"]),
      statement: yield* parsePositiveDuration("postgres-statement-timeout", raw["postgres-statement-timeout"])
    }
    const restart: RestartPolicy = {
      attempts: yield* parseCount("embedded-restart-attempts", raw["embedded-restart-attempts"]),
      backoff: yield* parsePositiveDuration("embedded-restart-backoff", raw["embedded-restart-backoff"])
    }
    const database: DatabaseMode = raw["postgres-url"].trim() !== ""
      ? { _tag: "external", url: yield* parsePostgresUrl(raw["postgres-url"]) }
      : embedded
      ? { _tag: "embedded", dataDir: path.join(dataDir, "postgres"), restart }
      : { _tag: "none" }

    const useTls = yield* parseBoolean("s3-use-tls", raw["s3-use-tls"])
    const pathStyle = yield* parseBoolean("s3-path-style", raw["s3-path-style"])
    const s3ConnectTimeout = yield* parsePositiveDuration("s3-connect-timeout", raw["s3-connect-timeout"])
    const s3IdleTimeout = yield* parsePositiveDuration("s3-idle-timeout", raw["s3-idle-timeout"])
    const s3Fields = [
      "s3-endpoint",
      "s3-bucket",
      "s3-access-key-id",
      "s3-secret-access-key",
      "s3-session-token",
      "s3-region"
    ] as const
    const s3Configured = s3Fields.some((flag) => raw[flag].trim() !== "")
    let storage: StorageMode = { _tag: "filesystem", root: path.join(dataDir, "blobs") }
    if (s3Configured) {
      const endpoint = raw["s3-endpoint"].trim()
      if (endpoint.includes("://")) {
        return yield* Either.left(invalid("s3-endpoint", endpoint, "host:port without a scheme (use --s3-use-tls)"))
      }
      const missing = (["s3-endpoint", "s3-bucket", "s3-access-key-id", "s3-secret-access-key"] as const)
        .filter((flag) => raw[flag].trim() === "")
      if (missing.length > 0) {
        return yield* Either.left(
          new InconsistentSettings({
            reason: `S3 storage is partly configured; also set ${
              missing.map((f) => `--${f} (${settingOf(f).env})`).join(", ")
            }`
          })
        )
      }
      storage = {
        _tag: "s3",
        s3: {
          endpoint,
          bucket: raw["s3-bucket"].trim(),
          region: raw["s3-region"].trim() === "" ? "us-east-1" : raw["s3-region"].trim(),
          accessKeyId: raw["s3-access-key-id"].trim(),
          secretAccessKey: Redacted.make(raw["s3-secret-access-key"]),
          sessionToken: raw["s3-session-token"] === ""
            ? Option.none()
            : Option.some(Redacted.make(raw["s3-session-token"])),
          useTls,
          pathStyle,
          connectTimeout: s3ConnectTimeout,
          idleTimeout: s3IdleTimeout
        }
      }
    }

    const uploadTtl = yield* parsePositiveDuration("upload-ttl", raw["upload-ttl"])
    const oidcCaFile = raw["oidc-ca-file"].trim() === ""
      ? Option.none()
      : Option.some(path.resolve(raw["oidc-ca-file"].trim()))
    /** A loop's backoff and circuit breaker, from the flags `<prefix>-error-backoff[-max]` and `<prefix>-circuit-breaker-…`. */
    const parseBackoff = (prefix: LoopPrefix): Either.Either<LoopBackoff, InvalidSetting> =>
      Either.gen(function*() {
        const flag = <S extends string>(suffix: S) => `${prefix}-${suffix}` as const
        return {
          errorBackoff: yield* parsePositiveDuration(flag("error-backoff"), raw[flag("error-backoff")]),
          errorBackoffMax: yield* parsePositiveDuration(flag("error-backoff-max"), raw[flag("error-backoff-max")]),
          circuitBreakerFailures: yield* parseCount(
            flag("circuit-breaker-failures"),
            raw[flag("circuit-breaker-failures")]
          ),
          circuitBreakerCooldown: yield* parsePositiveDuration(
            flag("circuit-breaker-cooldown"),
            raw[flag("circuit-breaker-cooldown")]
          )
        }
      })
    /** A loop's enabled switch and poll interval (`<prefix>-enabled`, `<prefix>-poll-interval`), backoff and breaker. */
    const parseLoop = (prefix: Exclude<LoopPrefix, "gc" | "retention">) =>
      Either.gen(function*() {
        const loop: LoopSettings = {
          enabled: yield* parseBoolean(`${prefix}-enabled`, raw[`${prefix}-enabled`]),
          pollInterval: yield* parsePositiveDuration(`${prefix}-poll-interval`, raw[`${prefix}-poll-interval`]),
          ...yield* parseBackoff(prefix)
        }
        return loop
      })
    const casPromotion: WorkerLoopSettings = {
      ...yield* parseLoop("cas-promotion"),
      lease: yield* parsePositiveDuration("cas-promotion-lease", raw["cas-promotion-lease"])
    }
    // The expiry sweeper claims nothing under a lease: its unit of work holds a row lock.
    const uploadExpiry: LoopSettings = yield* parseLoop("upload-expiry")
    // The backoff and breaker flags go beyond the reference (domain.md §6.2, §6.3); their
    // defaults are the promotion worker's, which are the reference's constants.
    const publishWorker: WorkerLoopSettings = {
      ...yield* parseLoop("publish-worker"),
      lease: yield* parsePositiveDuration("publish-job-lease", raw["publish-job-lease"])
    }

    const webhookTimeout = yield* parsePositiveDuration("webhook-timeout", raw["webhook-timeout"])
    const webhookLease = yield* parsePositiveDuration("webhook-delivery-lease", raw["webhook-delivery-lease"])
    if (Duration.lessThanOrEqualTo(webhookLease, webhookTimeout)) {
      return yield* Either.left(
        new InconsistentSettings({
          reason:
            "--webhook-delivery-lease (IMGSRV_WEBHOOK_DELIVERY_LEASE) must be longer than --webhook-timeout (IMGSRV_WEBHOOK_TIMEOUT)"
        })
      )
    }
    const retryDelays: Array<Duration.Duration> = []
    for (const part of raw["webhook-retry-delays"].split(",")) {
      retryDelays.push(yield* parsePositiveDuration("webhook-retry-delays", part))
    }
    const webhooks: WebhookSettings = {
      worker: {
        ...yield* parseLoop("webhook-worker"),
        lease: webhookLease
      },
      concurrency: yield* parseCount("webhook-concurrency", raw["webhook-concurrency"]),
      timeout: webhookTimeout,
      retryDelays,
      retryWindow: yield* parsePositiveDuration("webhook-retry-window", raw["webhook-retry-window"]),
      disableAfter: yield* parsePositiveDuration("webhook-disable-after", raw["webhook-disable-after"]),
      allowPrivateNetworks: yield* parseBoolean(
        "webhook-allow-private-networks",
        raw["webhook-allow-private-networks"]
      )
    }

    const gcInterval = yield* parsePositiveDuration("gc-interval", raw["gc-interval"])
    const gcBackoff = yield* parseBackoff("gc")
    const gc: GcSettings = {
      worker: {
        enabled: yield* parseBoolean("gc-enabled", raw["gc-enabled"]),
        pollInterval: gcInterval,
        ...gcBackoff,
        // A failed run is retried before the next scheduled one would start.
        errorBackoffMax: Duration.min(gcInterval, gcBackoff.errorBackoffMax)
      },
      gracePeriod: yield* parseDuration("gc-grace-period", raw["gc-grace-period"])
    }

    const retentionInterval = yield* parsePositiveDuration("retention-interval", raw["retention-interval"])
    const retention: RetentionSettings = {
      worker: {
        enabled: yield* parseBoolean("retention-enabled", raw["retention-enabled"]),
        // Due images are looked for at least every minute, so new rules apply soon.
        pollInterval: Duration.min(retentionInterval, Duration.minutes(1)),
        // No lease: a run holds its image's row lock for its one transaction.
        ...yield* parseBackoff("retention")
      },
      interval: retentionInterval
    }

    const trustedProxies = yield* Either.mapLeft(
      parseTrustedProxies(raw["trusted-proxies"]),
      () =>
        invalid(
          "trusted-proxies",
          raw["trusted-proxies"],
          "comma-separated IP addresses and CIDR ranges like 10.0.0.0/8"
        )
    )
    const rateLimits: RateLimitSettings = {
      authFailures: yield* parseRate("rate-limit-auth-failures", raw["rate-limit-auth-failures"]),
      requests: yield* parseRate("rate-limit-requests", raw["rate-limit-requests"])
    }

    return {
      listen,
      tls,
      nodeName: raw["node-name"].trim(),
      shutdownTimeout,
      dataDir,
      database,
      postgresMaxConnections,
      postgresTimeouts,
      storage,
      logFormat,
      verbosity,
      metrics,
      otel,
      uploadTtl,
      oidcCaFile,
      casPromotion,
      uploadExpiry,
      publishWorker,
      webhooks,
      gc,
      retention,
      trustedProxies,
      rateLimits
    }
  })

/** The defaults of every setting, as raw values (handy for tests and tools). */
export const defaultRawSettings = (): RawSettings =>
  Object.fromEntries(settings.map((s) => [s.flag, s.default])) as RawSettings

/** A configuration snapshot safe to log: no secrets, no credentials in URLs. */
export const describeConfig = (config: AppConfigShape): Record<string, unknown> => {
  const db = config.database
  let postgres: Record<string, unknown> = { mode: db._tag }
  if (db._tag === "external") {
    try {
      const url = new URL(Redacted.value(db.url))
      postgres = {
        mode: "external",
        host: url.host,
        database: url.pathname.replace(/^\//, ""),
        sslmode: url.searchParams.get("sslmode") ?? ""
      }
    } catch {
      postgres = { mode: "external" }
    }
  } else if (db._tag === "embedded") {
    postgres = {
      mode: "embedded",
      data_dir: db.dataDir,
      restart_attempts: db.restart.attempts,
      restart_backoff: formatGoDuration(db.restart.backoff)
    }
  }
  if (db._tag !== "none") {
    postgres = {
      ...postgres,
      connect_timeout: formatGoDuration(config.postgresTimeouts.connect),
      statement_timeout: formatGoDuration(config.postgresTimeouts.statement)
    }
  }
  const storage = config.storage._tag === "s3"
    ? {
      driver: "s3",
      endpoint: config.storage.s3.endpoint,
      bucket: config.storage.s3.bucket,
      region: config.storage.s3.region,
      use_tls: config.storage.s3.useTls,
      path_style: config.storage.s3.pathStyle,
      connect_timeout: formatGoDuration(config.storage.s3.connectTimeout),
      idle_timeout: formatGoDuration(config.storage.s3.idleTimeout)
    }
    : { driver: "filesystem", root: config.storage.root }
  return {
    listen: `${config.listen.host ?? ""}:${config.listen.port}`,
    tls_enabled: Option.isSome(config.tls),
    ...Option.match(config.tls, {
      onNone: () => ({}),
      onSome: (t) => ({ tls_cert_file: t.certFile, tls_key_file: t.keyFile })
    }),
    node_name: config.nodeName,
    log_format: config.logFormat,
    verbosity: config.verbosity,
    shutdown_timeout: formatGoDuration(config.shutdownTimeout),
    upload_ttl: formatGoDuration(config.uploadTtl),
    oidc_ca_file: Option.getOrElse(config.oidcCaFile, () => ""),
    metrics_enabled: Option.isSome(config.metrics),
    ...Option.match(config.metrics, {
      onNone: () => ({}),
      onSome: (m) => ({ metrics_listen: `${m.listen.host ?? ""}:${m.listen.port}`, metrics_path: m.path })
    }),
    tracing_enabled: Option.isSome(config.otel),
    cas_promotion_enabled: config.casPromotion.enabled,
    cas_promotion_poll_interval: formatGoDuration(config.casPromotion.pollInterval),
    cas_promotion_lease: formatGoDuration(config.casPromotion.lease),
    upload_expiry_enabled: config.uploadExpiry.enabled,
    publish_worker_enabled: config.publishWorker.enabled,
    publish_worker_poll_interval: formatGoDuration(config.publishWorker.pollInterval),
    publish_job_lease: formatGoDuration(config.publishWorker.lease),
    webhook_worker_enabled: config.webhooks.worker.enabled,
    webhook_concurrency: config.webhooks.concurrency,
    webhook_timeout: formatGoDuration(config.webhooks.timeout),
    webhook_retry_delays: config.webhooks.retryDelays.map(formatGoDuration).join(","),
    webhook_retry_window: formatGoDuration(config.webhooks.retryWindow),
    webhook_allow_private_networks: config.webhooks.allowPrivateNetworks,
    gc_enabled: config.gc.worker.enabled,
    gc_interval: formatGoDuration(config.gc.worker.pollInterval),
    gc_grace_period: formatGoDuration(config.gc.gracePeriod),
    trusted_proxies: config.trustedProxies.entries.join(","),
    rate_limit_auth_failures: formatRate(config.rateLimits.authFailures),
    rate_limit_requests: formatRate(config.rateLimits.requests),
    postgres,
    storage
  }
}
