-- Content-addressed storage: the digest domain and the trusted blob catalogue
-- (spec/domain.md §1.1–1.2). Upload sessions, parts and the promotion queue are
-- added to this file by the uploads work.

CREATE DOMAIN imgsrv_sha256_digest AS text
  CHECK (VALUE ~ '^sha256:[0-9a-f]{64}$');

-- A row exists only for bytes imgsrv has hashed itself; rows are insert-only.
CREATE TABLE cas_blobs (
  digest imgsrv_sha256_digest PRIMARY KEY,
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  storage_key text NOT NULL CHECK (
    storage_key = 'cas/sha256/' || substr(digest, 8, 2) || '/' || substr(digest, 10, 2) || '/' || substr(digest, 8)
  ),
  media_type text NULL CHECK (media_type IS NULL OR btrim(media_type) <> ''),
  verified_at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX cas_blobs_storage_key_unique_idx ON cas_blobs (storage_key);

CREATE FUNCTION cas_blobs_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'cas_blobs are immutable' USING ERRCODE = '23514';
END;
$$;

CREATE TRIGGER cas_blobs_no_update BEFORE UPDATE ON cas_blobs
  FOR EACH ROW EXECUTE FUNCTION cas_blobs_immutable();
CREATE TRIGGER cas_blobs_no_delete BEFORE DELETE ON cas_blobs
  FOR EACH ROW EXECUTE FUNCTION cas_blobs_immutable();

-- ---------------------------------------------------------------------------------
-- Uploads (spec/domain.md §1.2, §2.1–2.2): one session per client upload of one
-- expected digest, an audit row per accepted part, and a durable promotion queue
-- whose claims are leases (a dead worker's claim expires; the reference has none).
-- ---------------------------------------------------------------------------------

CREATE TABLE upload_sessions (
  id uuid PRIMARY KEY,
  expected_digest imgsrv_sha256_digest NOT NULL,
  expected_size_bytes bigint NOT NULL CHECK (expected_size_bytes >= 0),
  state text NOT NULL CHECK (state IN ('created', 'uploading', 'completed', 'ingesting', 'ready', 'failed', 'aborted')),
  -- The store's multipart upload id; `ready:<id>` for sessions short-circuited at begin.
  storage_upload_id text NOT NULL CHECK (btrim(storage_upload_id) <> ''),
  staging_key text NOT NULL CHECK (staging_key = 'staging/uploads/' || id::text),
  media_type_hint text NULL CHECK (media_type_hint IS NULL OR btrim(media_type_hint) <> ''),
  filename_hint text NULL CHECK (filename_hint IS NULL OR btrim(filename_hint) <> ''),
  completed_at timestamptz NULL,
  ingest_started_at timestamptz NULL,
  ready_at timestamptz NULL,
  failed_at timestamptz NULL,
  aborted_at timestamptz NULL,
  expires_at timestamptz NOT NULL,
  -- Machine-readable cause of `failed`, shown to clients as `failure_reason`.
  failure_reason text NULL CHECK (failure_reason IS NULL OR failure_reason IN ('digest_mismatch', 'size_mismatch', 'staged_object_missing')),
  -- Human-readable detail for operators (logs, support); never sent to clients.
  failure_message text NULL CHECK (failure_message IS NULL OR btrim(failure_message) <> ''),
  ready_blob_digest imgsrv_sha256_digest NULL REFERENCES cas_blobs (digest)
    CHECK (ready_blob_digest IS NULL OR ready_blob_digest = expected_digest),
  -- Set when the expiry sweeper could not clean an expired session's storage: it tries
  -- again after this instant, so one stubborn session cannot hold up the others.
  sweep_retry_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (expires_at > created_at),
  CHECK ((state = 'ready') = (ready_blob_digest IS NOT NULL AND ready_at IS NOT NULL)),
  CHECK ((state = 'failed') = (failed_at IS NOT NULL AND failure_message IS NOT NULL AND failure_reason IS NOT NULL)),
  CHECK ((state = 'aborted') = (aborted_at IS NOT NULL)),
  CHECK (state NOT IN ('completed', 'ingesting', 'ready') OR completed_at IS NOT NULL),
  CHECK (state <> 'ingesting' OR ingest_started_at IS NOT NULL)
);
CREATE UNIQUE INDEX upload_sessions_storage_upload_unique_idx ON upload_sessions (storage_upload_id);
CREATE UNIQUE INDEX upload_sessions_staging_key_unique_idx ON upload_sessions (staging_key);
CREATE INDEX upload_sessions_expected_digest_idx ON upload_sessions (expected_digest);
CREATE INDEX upload_sessions_state_idx ON upload_sessions (state, updated_at, id);
-- The expiry sweeper's scan: only sessions that still accept parts can expire.
CREATE INDEX upload_sessions_expiry_idx ON upload_sessions (expires_at, id) WHERE state IN ('created', 'uploading');

CREATE TABLE upload_parts (
  upload_id uuid NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
  part_number integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
  etag text NOT NULL CHECK (btrim(etag) <> ''),
  size_bytes bigint NOT NULL CHECK (size_bytes BETWEEN 0 AND 5368709120),
  uploaded_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE cas_ingest_jobs (
  id uuid PRIMARY KEY,
  upload_id uuid NOT NULL REFERENCES upload_sessions (id),
  state text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
  attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
  run_after timestamptz NOT NULL DEFAULT now(),
  -- The lease: who holds the job and until when. A holder heartbeats `lease_expires_at`
  -- forward; once it lies in the past any worker may claim the job again.
  locked_by text NULL CHECK (locked_by IS NULL OR btrim(locked_by) <> ''),
  locked_at timestamptz NULL,
  lease_expires_at timestamptz NULL,
  started_at timestamptz NULL,
  finished_at timestamptz NULL,
  failure_message text NULL CHECK (failure_message IS NULL OR btrim(failure_message) <> ''),
  blob_digest imgsrv_sha256_digest NULL REFERENCES cas_blobs (digest),
  -- W3C traceparent of the request that completed the upload (links the worker's span).
  trace_parent text NULL,
  -- Set when one process received every part in order and hashed the bytes on the way in:
  -- the digest and size of the assembled object, and the ETag of the staged object they
  -- describe. The worker then skips its read when the staged object still has that ETag.
  received_digest imgsrv_sha256_digest NULL,
  received_size_bytes bigint NULL CHECK (received_size_bytes IS NULL OR received_size_bytes >= 0),
  received_etag text NULL CHECK (received_etag IS NULL OR btrim(received_etag) <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((locked_by IS NULL) = (locked_at IS NULL) AND (locked_at IS NULL) = (lease_expires_at IS NULL)),
  CHECK ((state = 'running') = (locked_by IS NOT NULL)),
  CHECK ((state = 'succeeded') = (blob_digest IS NOT NULL)),
  CHECK ((state IN ('succeeded', 'failed')) = (finished_at IS NOT NULL)),
  CHECK ((received_digest IS NULL) = (received_size_bytes IS NULL) AND (received_size_bytes IS NULL) = (received_etag IS NULL))
);
CREATE UNIQUE INDEX cas_ingest_jobs_upload_unique_idx ON cas_ingest_jobs (upload_id);
CREATE INDEX cas_ingest_jobs_claim_idx ON cas_ingest_jobs (run_after, id) WHERE state = 'queued';
CREATE INDEX cas_ingest_jobs_lease_idx ON cas_ingest_jobs (lease_expires_at) WHERE state = 'running';
