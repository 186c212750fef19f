/**
 * Every runtime setting of imgsrv, as data: flag, environment variable, default and
 * meaning. `cli.ts` builds the command line from this table, `config.ts` parses the
 * values, and docs/reference/configuration.md is generated from it (a test regenerates
 * and compares), so the three cannot drift apart. The contract (domain.md §6.2) defers to this table.
 */

export type SettingKind =
  | "string"
  | "secret"
  | "boolean"
  | "duration"
  | "count"
  | "listen"
  | "optional-listen"
  | "path"
  | "url-path"
  | "postgres-url"
  | "log-format"
  | "verbosity"
  | "address-list"
  | "rate"

export interface Setting {
  /** Flag name without the leading `--`. */
  readonly flag: string
  readonly env: string
  /** Other environment variables consulted, in order, when `env` is unset. */
  readonly fallbackEnv?: ReadonlyArray<string>
  readonly default: string
  readonly kind: SettingKind
  readonly section: string
  readonly description: string
}

export const settings = [
  // Server
  {
    section: "Server",
    flag: "listen",
    env: "IMGSRV_LISTEN",
    default: ":8080",
    kind: "listen",
    description: "Public API listen address (`host:port` or `:port`)."
  },
  {
    section: "Server",
    flag: "tls-cert-file",
    env: "IMGSRV_TLS_CERT_FILE",
    default: "",
    kind: "path",
    description:
      "PEM certificate (chain) for `--listen`: with `--tls-key-file`, imgsrv serves HTTPS itself (TLS 1.2 and 1.3) and re-reads both files on SIGHUP. Empty: plain HTTP (terminate TLS in a proxy)."
  },
  {
    section: "Server",
    flag: "tls-key-file",
    env: "IMGSRV_TLS_KEY_FILE",
    default: "",
    kind: "path",
    description: "PEM private key of `--tls-cert-file` (set both or neither)."
  },
  {
    section: "Server",
    flag: "node-name",
    env: "IMGSRV_NODE_NAME",
    default: "",
    kind: "string",
    description: "Prefix of background worker ids (worker id = `<node-name>/<random>`); empty uses the hostname."
  },
  {
    section: "Server",
    flag: "shutdown-timeout",
    env: "IMGSRV_SHUTDOWN_TIMEOUT",
    default: "10s",
    kind: "duration",
    description: "Graceful drain deadline on SIGTERM/SIGINT."
  },
  {
    section: "Server",
    flag: "data-dir",
    env: "IMGSRV_DATA_DIR",
    default: "./.imgsrv",
    kind: "path",
    description: "Where the embedded default keeps PostgreSQL data and filesystem blobs."
  },
  {
    section: "Server",
    flag: "embedded",
    env: "IMGSRV_EMBEDDED",
    default: "true",
    kind: "boolean",
    description:
      "With no Postgres URL: `true` starts embedded PostgreSQL; `false` runs ops-only (catalog routes answer 503)."
  },
  // Logging
  {
    section: "Logging",
    flag: "log-format",
    env: "IMGSRV_LOG_FORMAT",
    default: "text",
    kind: "log-format",
    description: "`text` or `json`."
  },
  {
    section: "Logging",
    flag: "verbosity",
    env: "IMGSRV_VERBOSITY",
    default: "info",
    kind: "verbosity",
    description: "`debug`, `info`, `warn` or `error`."
  },
  // Clients and rate limits
  {
    section: "Clients and rate limits",
    flag: "trusted-proxies",
    env: "IMGSRV_TRUSTED_PROXIES",
    default: "",
    kind: "address-list",
    description:
      "Reverse proxies (comma-separated IP addresses and CIDR ranges) whose `X-Forwarded-For` names the client address, for the access log and the rate limits; empty trusts none."
  },
  {
    section: "Clients and rate limits",
    flag: "rate-limit-auth-failures",
    env: "IMGSRV_RATE_LIMIT_AUTH_FAILURES",
    default: "10/1m",
    kind: "rate",
    description:
      "Failed authentications per client address, as `burst/period` (refilled at that rate); once spent, that address gets `429` on every route that needs a token. `0` disables. Per replica."
  },
  {
    section: "Clients and rate limits",
    flag: "rate-limit-requests",
    env: "IMGSRV_RATE_LIMIT_REQUESTS",
    default: "",
    kind: "rate",
    description:
      "Requests per credential (per client address without one), as `burst/period`, e.g. `600/1m`; beyond it `429`. Empty or `0` disables. Per replica."
  },
  // Metrics and tracing
  {
    section: "Metrics and tracing",
    flag: "metrics-listen",
    env: "IMGSRV_METRICS_LISTEN",
    default: "127.0.0.1:9464",
    kind: "optional-listen",
    description: "Prometheus metrics listener; empty disables it."
  },
  {
    section: "Metrics and tracing",
    flag: "metrics-path",
    env: "IMGSRV_METRICS_PATH",
    default: "/metrics",
    kind: "url-path",
    description: "Path of the Prometheus text endpoint (must start with `/`)."
  },
  {
    section: "Metrics and tracing",
    flag: "otel-endpoint",
    env: "IMGSRV_OTEL_ENDPOINT",
    fallbackEnv: ["OTEL_EXPORTER_OTLP_ENDPOINT"],
    default: "",
    kind: "string",
    description:
      "OTLP/HTTP collector base URL (also read from `OTEL_EXPORTER_OTLP_ENDPOINT`); empty disables trace export."
  },
  {
    section: "Metrics and tracing",
    flag: "otel-service-name",
    env: "IMGSRV_OTEL_SERVICE_NAME",
    fallbackEnv: ["OTEL_SERVICE_NAME"],
    default: "imgsrv",
    kind: "string",
    description: "Service name on spans (also read from `OTEL_SERVICE_NAME`)."
  },
  // PostgreSQL
  {
    section: "PostgreSQL",
    flag: "postgres-url",
    env: "IMGSRV_POSTGRES_URL",
    default: "",
    kind: "postgres-url",
    description: "Connection URL (`postgres://user:pass@host:5432/db?sslmode=require`). Empty: see `--embedded`."
  },
  {
    section: "PostgreSQL",
    flag: "postgres-max-connections",
    env: "IMGSRV_POSTGRES_MAX_CONNECTIONS",
    default: "10",
    kind: "count",
    description: "Connection pool size."
  },
  {
    section: "PostgreSQL",
    flag: "postgres-connect-timeout",
    env: "IMGSRV_POSTGRES_CONNECT_TIMEOUT",
    default: "5s",
    kind: "duration",
    description:
      "Longest wait to open a connection or get one from the pool; past it the request answers `503` with `Retry-After`."
  },
  {
    section: "PostgreSQL",
    flag: "postgres-statement-timeout",
    env: "IMGSRV_POSTGRES_STATEMENT_TIMEOUT",
    default: "30s",
    kind: "duration",
    description:
      "Longest a statement may run (PostgreSQL's `statement_timeout`); a server that does not answer 2 s later loses the connection. The request answers `503` with `Retry-After`. Migrations are exempt."
  },
  {
    section: "PostgreSQL",
    flag: "embedded-restart-attempts",
    env: "IMGSRV_EMBEDDED_RESTART_ATTEMPTS",
    default: "5",
    kind: "count",
    description:
      "Embedded mode: restarts tried after PostgreSQL exits, before `/healthz` fails; the count starts over once the server has stayed up for a minute."
  },
  {
    section: "PostgreSQL",
    flag: "embedded-restart-backoff",
    env: "IMGSRV_EMBEDDED_RESTART_BACKOFF",
    default: "1s",
    kind: "duration",
    description: "Embedded mode: delay before the first restart; it doubles for each further attempt (at most 30 s)."
  },
  // S3
  {
    section: "S3-compatible object storage",
    flag: "s3-endpoint",
    env: "IMGSRV_S3_ENDPOINT",
    default: "",
    kind: "string",
    description: "Host and port, no scheme. Empty: filesystem store under the data dir."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-bucket",
    env: "IMGSRV_S3_BUCKET",
    default: "",
    kind: "string",
    description: "Bucket for staging and CAS objects (dedicated to imgsrv)."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-access-key-id",
    env: "IMGSRV_S3_ACCESS_KEY_ID",
    default: "",
    kind: "string",
    description: "Access key id."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-secret-access-key",
    env: "IMGSRV_S3_SECRET_ACCESS_KEY",
    default: "",
    kind: "secret",
    description: "Secret key (redacted everywhere)."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-session-token",
    env: "IMGSRV_S3_SESSION_TOKEN",
    default: "",
    kind: "secret",
    description: "Optional temporary-credential token."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-region",
    env: "IMGSRV_S3_REGION",
    default: "",
    kind: "string",
    description: "Region (`us-east-1` is sent when empty)."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-use-tls",
    env: "IMGSRV_S3_USE_TLS",
    default: "false",
    kind: "boolean",
    description: "HTTPS to the endpoint."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-path-style",
    env: "IMGSRV_S3_PATH_STYLE",
    default: "false",
    kind: "boolean",
    description: "Path-style addressing (Garage, MinIO); AWS/R2 leave false."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-connect-timeout",
    env: "IMGSRV_S3_CONNECT_TIMEOUT",
    default: "5s",
    kind: "duration",
    description: "Longest wait to open a connection to the endpoint."
  },
  {
    section: "S3-compatible object storage",
    flag: "s3-idle-timeout",
    env: "IMGSRV_S3_IDLE_TIMEOUT",
    default: "60s",
    kind: "duration",
    description:
      "A request to the store that moves no bytes for this long is abandoned (a request answers `503` with `Retry-After`); transfers of any length run while bytes flow."
  },
  // Auth
  {
    section: "Auth",
    flag: "oidc-ca-file",
    env: "IMGSRV_OIDC_CA_FILE",
    default: "",
    kind: "path",
    description:
      "PEM file of extra CA certificates trusted (besides the system roots) for OIDC discovery and JWKS fetches, for issuers behind a private CA. Issuers must still be `https`."
  },
  // Uploads
  {
    section: "Uploads",
    flag: "upload-ttl",
    env: "IMGSRV_UPLOAD_TTL",
    default: "24h",
    kind: "duration",
    description: "Lifetime of an upload session that is not completed."
  },
  // CAS promotion worker
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-enabled",
    env: "IMGSRV_CAS_PROMOTION_ENABLED",
    default: "true",
    kind: "boolean",
    description: "Run the in-process promotion loop (multi-replica safe)."
  },
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-poll-interval",
    env: "IMGSRV_CAS_PROMOTION_POLL_INTERVAL",
    default: "5s",
    kind: "duration",
    description: "Idle poll interval (a completed upload also wakes the loop at once)."
  },
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-error-backoff",
    env: "IMGSRV_CAS_PROMOTION_ERROR_BACKOFF",
    default: "5s",
    kind: "duration",
    description: "First delay after a failed promotion."
  },
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-error-backoff-max",
    env: "IMGSRV_CAS_PROMOTION_ERROR_BACKOFF_MAX",
    default: "1m",
    kind: "duration",
    description: "Backoff ceiling."
  },
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-circuit-breaker-failures",
    env: "IMGSRV_CAS_PROMOTION_CIRCUIT_BREAKER_FAILURES",
    default: "10",
    kind: "count",
    description: "Consecutive failures that open the circuit breaker."
  },
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-circuit-breaker-cooldown",
    env: "IMGSRV_CAS_PROMOTION_CIRCUIT_BREAKER_COOLDOWN",
    default: "1m",
    kind: "duration",
    description: "Pause while the breaker is open."
  },
  {
    section: "CAS promotion worker",
    flag: "cas-promotion-lease",
    env: "IMGSRV_CAS_PROMOTION_LEASE",
    default: "30s",
    kind: "duration",
    description: "How long a claimed upload stays claimed without a heartbeat (the holder heartbeats at a third of it)."
  },
  // Upload expiry sweeper (uploads/expiry-sweeper.ts)
  {
    section: "Upload expiry sweeper",
    flag: "upload-expiry-enabled",
    env: "IMGSRV_UPLOAD_EXPIRY_ENABLED",
    default: "true",
    kind: "boolean",
    description:
      "Run the in-process sweeper that aborts expired upload sessions and removes stale temporary files (multi-replica safe; independent of `--cas-promotion-enabled`)."
  },
  {
    section: "Upload expiry sweeper",
    flag: "upload-expiry-poll-interval",
    env: "IMGSRV_UPLOAD_EXPIRY_POLL_INTERVAL",
    default: "5s",
    kind: "duration",
    description: "Idle poll interval (nothing in the process wakes the sweeper earlier)."
  },
  {
    section: "Upload expiry sweeper",
    flag: "upload-expiry-error-backoff",
    env: "IMGSRV_UPLOAD_EXPIRY_ERROR_BACKOFF",
    default: "5s",
    kind: "duration",
    description: "First delay after a failed sweep."
  },
  {
    section: "Upload expiry sweeper",
    flag: "upload-expiry-error-backoff-max",
    env: "IMGSRV_UPLOAD_EXPIRY_ERROR_BACKOFF_MAX",
    default: "1m",
    kind: "duration",
    description:
      "Backoff ceiling; also how long a session whose storage could not be cleaned waits before it is swept again."
  },
  {
    section: "Upload expiry sweeper",
    flag: "upload-expiry-circuit-breaker-failures",
    env: "IMGSRV_UPLOAD_EXPIRY_CIRCUIT_BREAKER_FAILURES",
    default: "10",
    kind: "count",
    description: "Consecutive failures that open the circuit breaker."
  },
  {
    section: "Upload expiry sweeper",
    flag: "upload-expiry-circuit-breaker-cooldown",
    env: "IMGSRV_UPLOAD_EXPIRY_CIRCUIT_BREAKER_COOLDOWN",
    default: "1m",
    kind: "duration",
    description: "Pause while the breaker is open."
  },
  // Publish worker
  {
    section: "Publish worker",
    flag: "publish-worker-enabled",
    env: "IMGSRV_PUBLISH_WORKER_ENABLED",
    default: "true",
    kind: "boolean",
    description: "Run the in-process publish-job loop."
  },
  {
    section: "Publish worker",
    flag: "publish-worker-poll-interval",
    env: "IMGSRV_PUBLISH_WORKER_POLL_INTERVAL",
    default: "1s",
    kind: "duration",
    description: "Idle poll interval (an enqueued job also wakes it at once)."
  },
  {
    section: "Publish worker",
    flag: "publish-job-lease",
    env: "IMGSRV_PUBLISH_JOB_LEASE",
    default: "30s",
    kind: "duration",
    description: "How long a claimed step stays claimed without a heartbeat (the holder heartbeats at a third of it)."
  },
  {
    section: "Publish worker",
    flag: "publish-worker-error-backoff",
    env: "IMGSRV_PUBLISH_WORKER_ERROR_BACKOFF",
    default: "5s",
    kind: "duration",
    description:
      "First delay after a failed attempt (a failing step fails its job; this covers claim and database trouble)."
  },
  {
    section: "Publish worker",
    flag: "publish-worker-error-backoff-max",
    env: "IMGSRV_PUBLISH_WORKER_ERROR_BACKOFF_MAX",
    default: "1m",
    kind: "duration",
    description: "Backoff ceiling."
  },
  {
    section: "Publish worker",
    flag: "publish-worker-circuit-breaker-failures",
    env: "IMGSRV_PUBLISH_WORKER_CIRCUIT_BREAKER_FAILURES",
    default: "10",
    kind: "count",
    description: "Consecutive failures that open the circuit breaker."
  },
  {
    section: "Publish worker",
    flag: "publish-worker-circuit-breaker-cooldown",
    env: "IMGSRV_PUBLISH_WORKER_CIRCUIT_BREAKER_COOLDOWN",
    default: "1m",
    kind: "duration",
    description: "Pause while the breaker is open."
  },
  // Webhooks (issue 14, docs/webhooks.md)
  {
    section: "Webhooks",
    flag: "webhook-worker-enabled",
    env: "IMGSRV_WEBHOOK_WORKER_ENABLED",
    default: "true",
    kind: "boolean",
    description: "Run the in-process webhook delivery loops (multi-replica safe)."
  },
  {
    section: "Webhooks",
    flag: "webhook-worker-poll-interval",
    env: "IMGSRV_WEBHOOK_WORKER_POLL_INTERVAL",
    default: "1s",
    kind: "duration",
    description: "Idle poll interval of the delivery loops (a change in this process also wakes them)."
  },
  {
    section: "Webhooks",
    flag: "webhook-worker-error-backoff",
    env: "IMGSRV_WEBHOOK_WORKER_ERROR_BACKOFF",
    default: "5s",
    kind: "duration",
    description:
      "First delay after a failed pass of the delivery loop (a database failure; a receiver's failure is a delivery retry instead)."
  },
  {
    section: "Webhooks",
    flag: "webhook-worker-error-backoff-max",
    env: "IMGSRV_WEBHOOK_WORKER_ERROR_BACKOFF_MAX",
    default: "1m",
    kind: "duration",
    description: "Backoff ceiling."
  },
  {
    section: "Webhooks",
    flag: "webhook-worker-circuit-breaker-failures",
    env: "IMGSRV_WEBHOOK_WORKER_CIRCUIT_BREAKER_FAILURES",
    default: "10",
    kind: "count",
    description: "Consecutive failures that open the circuit breaker."
  },
  {
    section: "Webhooks",
    flag: "webhook-worker-circuit-breaker-cooldown",
    env: "IMGSRV_WEBHOOK_WORKER_CIRCUIT_BREAKER_COOLDOWN",
    default: "1m",
    kind: "duration",
    description: "Pause while the breaker is open."
  },
  {
    section: "Webhooks",
    flag: "webhook-concurrency",
    env: "IMGSRV_WEBHOOK_CONCURRENCY",
    default: "4",
    kind: "count",
    description: "Delivery loops per replica: how many endpoints are sent to at once (a slow one holds only its own)."
  },
  {
    section: "Webhooks",
    flag: "webhook-timeout",
    env: "IMGSRV_WEBHOOK_TIMEOUT",
    default: "10s",
    kind: "duration",
    description:
      "Longest wait for an endpoint to connect, answer and send its (bounded) response; past it the attempt failed."
  },
  {
    section: "Webhooks",
    flag: "webhook-delivery-lease",
    env: "IMGSRV_WEBHOOK_DELIVERY_LEASE",
    default: "30s",
    kind: "duration",
    description: "How long a claimed delivery stays claimed without a heartbeat (a dead replica's claim runs out)."
  },
  {
    section: "Webhooks",
    flag: "webhook-retry-delays",
    env: "IMGSRV_WEBHOOK_RETRY_DELAYS",
    default: "5s,30s,2m,10m,1h,2h,4h,8h",
    kind: "string",
    description:
      "Delays before the 2nd, 3rd, … attempt (comma-separated durations, ±20% jitter); the last repeats until `--webhook-retry-window` is spent."
  },
  {
    section: "Webhooks",
    flag: "webhook-retry-window",
    env: "IMGSRV_WEBHOOK_RETRY_WINDOW",
    default: "24h",
    kind: "duration",
    description: "How long a delivery is retried before it is `failed`."
  },
  {
    section: "Webhooks",
    flag: "webhook-disable-after",
    env: "IMGSRV_WEBHOOK_DISABLE_AFTER",
    default: "72h",
    kind: "duration",
    description: "A subscription whose attempts have all failed for this long is disabled (with the reason)."
  },
  {
    section: "Webhooks",
    flag: "webhook-allow-private-networks",
    env: "IMGSRV_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
    default: "false",
    kind: "boolean",
    description:
      "Allow webhook URLs on loopback, private, link-local and metadata addresses (refused by default, at creation and at connect time)."
  },
  // Garbage collection (issue 16, docs/gc.md)
  {
    section: "Garbage collection",
    flag: "gc-enabled",
    env: "IMGSRV_GC_ENABLED",
    default: "true",
    kind: "boolean",
    description: "Run the background garbage collector (one replica at a time); `POST /v1/admin/gc` works either way."
  },
  {
    section: "Garbage collection",
    flag: "gc-interval",
    env: "IMGSRV_GC_INTERVAL",
    default: "1h",
    kind: "duration",
    description: "Time between two background collections."
  },
  {
    section: "Garbage collection",
    flag: "gc-grace-period",
    env: "IMGSRV_GC_GRACE_PERIOD",
    default: "24h",
    kind: "duration",
    description:
      "How long a blob must have been unreferenced (no artifact, attachment or unfinished upload) before it is deleted; `0s` collects at once."
  },
  {
    section: "Garbage collection",
    flag: "gc-error-backoff",
    env: "IMGSRV_GC_ERROR_BACKOFF",
    default: "5s",
    kind: "duration",
    description: "First delay after a failed collection run (its tombstones are finished first)."
  },
  {
    section: "Garbage collection",
    flag: "gc-error-backoff-max",
    env: "IMGSRV_GC_ERROR_BACKOFF_MAX",
    default: "5m",
    kind: "duration",
    description: "Backoff ceiling (never longer than --gc-interval)."
  },
  {
    section: "Garbage collection",
    flag: "gc-circuit-breaker-failures",
    env: "IMGSRV_GC_CIRCUIT_BREAKER_FAILURES",
    default: "10",
    kind: "count",
    description: "Consecutive failures that open the circuit breaker."
  },
  {
    section: "Garbage collection",
    flag: "gc-circuit-breaker-cooldown",
    env: "IMGSRV_GC_CIRCUIT_BREAKER_COOLDOWN",
    default: "5m",
    kind: "duration",
    description: "Pause while the breaker is open."
  },
  // Retention (issue 16, docs/lifecycle.md)
  {
    section: "Retention",
    flag: "retention-enabled",
    env: "IMGSRV_RETENTION_ENABLED",
    default: "true",
    kind: "boolean",
    description: "Run the in-process retention loop, which applies each image's retention rules (multi-replica safe)."
  },
  {
    section: "Retention",
    flag: "retention-interval",
    env: "IMGSRV_RETENTION_INTERVAL",
    default: "1h",
    kind: "duration",
    description:
      "How often an image's retention rules are applied (new or changed rules are applied within a minute, or this interval if shorter)."
  },
  {
    section: "Retention",
    flag: "retention-error-backoff",
    env: "IMGSRV_RETENTION_ERROR_BACKOFF",
    default: "5s",
    kind: "duration",
    description: "First delay after a failed run (it rolled back; the image's rules stay due)."
  },
  {
    section: "Retention",
    flag: "retention-error-backoff-max",
    env: "IMGSRV_RETENTION_ERROR_BACKOFF_MAX",
    default: "1m",
    kind: "duration",
    description: "Backoff ceiling."
  },
  {
    section: "Retention",
    flag: "retention-circuit-breaker-failures",
    env: "IMGSRV_RETENTION_CIRCUIT_BREAKER_FAILURES",
    default: "10",
    kind: "count",
    description: "Consecutive failures that open the circuit breaker."
  },
  {
    section: "Retention",
    flag: "retention-circuit-breaker-cooldown",
    env: "IMGSRV_RETENTION_CIRCUIT_BREAKER_COOLDOWN",
    default: "1m",
    kind: "duration",
    description: "Pause while the breaker is open."
  }
] as const satisfies ReadonlyArray<Setting>

export type SettingFlag = (typeof settings)[number]["flag"]

/** Raw values as they come from flags / environment / defaults, before parsing. */
export type RawSettings = { readonly [K in SettingFlag]: string }

/**
 * The tables of docs/reference/configuration.md, one per section, generated from `settings`
 * (`npx tsx scripts/docs/configuration.ts` writes the page; a test holds the page to it).
 */
export const configTableMarkdown = (): string => {
  const all: ReadonlyArray<Setting> = settings
  const sections = [...new Set(all.map((s) => s.section))]
  return sections.map((section) => {
    const rows = all.filter((s) => s.section === section).map((s) => {
      const env = [s.env, ...(s.fallbackEnv ?? [])].map((e) => `\`${e}\``).join(", ")
      const def = s.default === "" ? "(empty)" : `\`${s.default}\``
      return `| \`--${s.flag}\` | ${env} | ${def} | ${s.description} |`
    })
    return [`### ${section}`, "", "| Flag | Environment | Default | Meaning |", "|---|---|---|---|", ...rows, ""].join(
      "\n"
    )
  }).join("\n")
}
