-- Events and webhooks (issue 14): a durable outbox, subscriptions, deliveries.
--
-- Self-contained: depends only on 0001–0004 (nothing of 0005/0006).
--
-- Ordering. An event row carries the id of the transaction that wrote it (`tx`,
-- pg_current_xact_id()) and a sequence number (`seq`). Transactions commit in any order,
-- so `seq` alone is not a safe cursor: a poller that saw seq 11 could miss seq 10 committed
-- a moment later. Readers therefore only look at events whose transaction is older than
-- every transaction still running (`tx < pg_snapshot_xmin(pg_current_snapshot())`) and
-- order them by (tx, seq): no event can later appear before one already read. The feed
-- and the per-endpoint delivery order both use that order.

CREATE TABLE events (
  id uuid PRIMARY KEY,
  tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
  seq bigint GENERATED ALWAYS AS IDENTITY,
  type text NOT NULL CONSTRAINT events_type_check CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
  -- The image the event is about (subscription filters); NULL for uploads and blobs.
  image_name text NULL,
  payload jsonb NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  -- A ping is an event for one subscription only; it is not in the public feed.
  subscription_id uuid NULL
);
CREATE UNIQUE INDEX events_order_unique_idx ON events (tx, seq);
CREATE INDEX events_feed_idx ON events (tx, seq) WHERE subscription_id IS NULL;

-- The signing secret is needed in plaintext to sign (HMAC), so it is stored as such and
-- only ever shown in the responses that create or rotate it. After a rotation the previous
-- secret keeps signing (a second signature) until `previous_secret_expires_at`.
CREATE TABLE webhook_subscriptions (
  id uuid PRIMARY KEY,
  url text NOT NULL CONSTRAINT webhook_subscriptions_url_check CHECK (url ~ '^https?://'),
  event_types text[] NOT NULL CONSTRAINT webhook_subscriptions_event_types_check
    CHECK (cardinality(event_types) > 0),
  -- Empty: every image (and events about no image).
  image_names text[] NOT NULL DEFAULT '{}',
  description text NULL,
  secret text NOT NULL CONSTRAINT webhook_subscriptions_secret_check CHECK (secret ~ '^whsec_'),
  previous_secret text NULL,
  previous_secret_expires_at timestamptz NULL,
  enabled boolean NOT NULL DEFAULT true,
  disabled_reason text NULL,
  disabled_at timestamptz NULL,
  -- Start of the current run of failed attempts (NULL after a success).
  failing_since timestamptz NULL,
  created_by text NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_subscriptions_previous_secret_check
    CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);

-- One delivery per (subscription, event); a redelivery re-queues the same row, so the
-- receiver sees the same `webhook-id`. A claimed delivery (`sending`) holds a lease like
-- the other work queues; completions are fenced on (locked_by, attempts). `ordered`
-- deliveries of one subscription go out strictly in event order (no overtaking while the
-- head fails); pings and manual redeliveries are not ordered.
CREATE TABLE webhook_deliveries (
  id uuid PRIMARY KEY,
  subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
  event_id uuid NOT NULL REFERENCES events (id),
  event_tx xid8 NOT NULL,
  event_seq bigint NOT NULL,
  ordered boolean NOT NULL DEFAULT true,
  status text NOT NULL DEFAULT 'pending' CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
  attempts integer NOT NULL DEFAULT 0 CONSTRAINT webhook_deliveries_attempts_check CHECK (attempts >= 0),
  next_attempt_at timestamptz NULL,
  -- Set at the first attempt: a delivery waiting behind a failing one keeps its full window.
  retry_until timestamptz NULL,
  locked_by text NULL,
  lease_expires_at timestamptz NULL,
  last_attempt_at timestamptz NULL,
  last_response_status integer NULL,
  last_error text NULL,
  delivered_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_deliveries_pending_check CHECK (status <> 'pending' OR next_attempt_at IS NOT NULL),
  CONSTRAINT webhook_deliveries_sending_check
    CHECK (status <> 'sending' OR (locked_by IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE UNIQUE INDEX webhook_deliveries_subscription_event_unique_idx ON webhook_deliveries (subscription_id, event_id);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
  WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (subscription_id, event_tx, event_seq)
  WHERE ordered AND status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_log_idx ON webhook_deliveries (subscription_id, created_at DESC, id);
