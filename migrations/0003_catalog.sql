-- Catalog, durable publishing and the Simple Streams projection
-- (spec/domain.md §1.2, final form of the reference's migrations 1–4, plus our
-- improvements: step leases with a heartbeat, a trace link on queued steps, and
-- TRUNCATE/DELETE guards so that no SQL path can alter a published manifest).
--
-- Every guard raises SQLSTATE 23514 (check_violation) — the application maps it to
-- 412 exactly like a failed CHECK — except the missing-artifact case of attachments
-- (23503, "not found").
--
-- Text ordering in the application uses COLLATE "C" (code-point order, api.md §1.8).

-- ---------------------------------------------------------------------------------
-- images
-- ---------------------------------------------------------------------------------

CREATE TABLE images (
  id uuid PRIMARY KEY,
  name text NOT NULL CONSTRAINT images_name_check CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
  display_name text NULL CONSTRAINT images_display_name_check
    CHECK (display_name IS NULL OR btrim(display_name) <> ''),
  description text NULL CONSTRAINT images_description_check
    CHECK (description IS NULL OR btrim(description) <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX images_name_unique_idx ON images (name);

-- ---------------------------------------------------------------------------------
-- image_versions: draft -> publishing -> published, nothing else
-- ---------------------------------------------------------------------------------

CREATE TABLE image_versions (
  id uuid PRIMARY KEY,
  image_id uuid NOT NULL REFERENCES images (id),
  version text NOT NULL CONSTRAINT image_versions_version_check
    CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._+:-]{0,127}$'),
  state text NOT NULL DEFAULT 'draft' CONSTRAINT image_versions_state_check
    CHECK (state IN ('draft', 'publishing', 'published')),
  published_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT image_versions_published_at_check CHECK ((state = 'published') = (published_at IS NOT NULL))
);
CREATE UNIQUE INDEX image_versions_image_version_unique_idx ON image_versions (image_id, version);
CREATE INDEX image_versions_published_idx ON image_versions (image_id, published_at DESC, id)
  WHERE state = 'published';

-- ---------------------------------------------------------------------------------
-- release_artifacts: the primary entries of a version manifest
-- ---------------------------------------------------------------------------------

CREATE TABLE release_artifacts (
  id uuid PRIMARY KEY,
  version_id uuid NOT NULL REFERENCES image_versions (id),
  variant text NOT NULL DEFAULT 'default' CONSTRAINT release_artifacts_variant_check
    CHECK (variant ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$'),
  operating_system text NOT NULL CONSTRAINT release_artifacts_operating_system_check
    CHECK (operating_system ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$'),
  architecture text NOT NULL CONSTRAINT release_artifacts_architecture_check
    CHECK (architecture ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$'),
  format text NOT NULL CONSTRAINT release_artifacts_format_check CHECK (format IN ('raw', 'raw.gz', 'qcow2')),
  -- No FK to cas_blobs: drafts may cite blobs that are not uploaded yet; publish checks.
  primary_blob_digest imgsrv_sha256_digest NOT NULL,
  primary_blob_size_bytes bigint NOT NULL CONSTRAINT release_artifacts_primary_blob_size_check
    CHECK (primary_blob_size_bytes >= 0),
  primary_media_type text NOT NULL CONSTRAINT release_artifacts_primary_media_type_check
    CHECK (btrim(primary_media_type) <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX release_artifacts_identity_unique_idx
  ON release_artifacts (version_id, variant, operating_system, architecture, format);
CREATE INDEX release_artifacts_primary_blob_idx ON release_artifacts (primary_blob_digest);
-- Target of the projection table's composite FK (artifact must belong to that version).
CREATE UNIQUE INDEX release_artifacts_id_version_unique_idx ON release_artifacts (id, version_id);

-- ---------------------------------------------------------------------------------
-- artifact_attachments: secondary blobs hung off an artifact
-- ---------------------------------------------------------------------------------

CREATE TABLE artifact_attachments (
  id uuid PRIMARY KEY,
  artifact_id uuid NOT NULL REFERENCES release_artifacts (id) ON DELETE CASCADE,
  -- The API is stricter (64 characters); the reference's column allows 128.
  name text NOT NULL CONSTRAINT artifact_attachments_name_check
    CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$'),
  media_type text NOT NULL CONSTRAINT artifact_attachments_media_type_check CHECK (btrim(media_type) <> ''),
  blob_digest imgsrv_sha256_digest NOT NULL,
  blob_size_bytes bigint NOT NULL CONSTRAINT artifact_attachments_blob_size_check CHECK (blob_size_bytes >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX artifact_attachments_artifact_name_unique_idx ON artifact_attachments (artifact_id, name);
CREATE INDEX artifact_attachments_blob_idx ON artifact_attachments (blob_digest);
CREATE UNIQUE INDEX artifact_attachments_id_artifact_unique_idx ON artifact_attachments (id, artifact_id);

-- ---------------------------------------------------------------------------------
-- aliases: mutable pointers to published versions of the same image
-- ---------------------------------------------------------------------------------

CREATE TABLE aliases (
  id uuid PRIMARY KEY,
  image_id uuid NOT NULL REFERENCES images (id),
  alias text NOT NULL CONSTRAINT aliases_alias_check CHECK (alias ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  version_id uuid NOT NULL REFERENCES image_versions (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX aliases_image_alias_unique_idx ON aliases (image_id, alias);
CREATE INDEX aliases_version_idx ON aliases (version_id);

-- ---------------------------------------------------------------------------------
-- publish_jobs / publish_job_steps: the durable publish workflow
-- ---------------------------------------------------------------------------------

CREATE TABLE publish_jobs (
  id uuid PRIMARY KEY,
  version_id uuid NOT NULL REFERENCES image_versions (id),
  state text NOT NULL CONSTRAINT publish_jobs_state_check CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
  started_at timestamptz NULL,
  finished_at timestamptz NULL,
  failure_message text NULL CONSTRAINT publish_jobs_failure_message_check
    CHECK (failure_message IS NULL OR btrim(failure_message) <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT publish_jobs_finished_check CHECK (state NOT IN ('succeeded', 'failed') OR finished_at IS NOT NULL),
  CONSTRAINT publish_jobs_failed_check CHECK (state <> 'failed' OR failure_message IS NOT NULL)
);
-- One job per version, ever: retry reuses it.
CREATE UNIQUE INDEX publish_jobs_version_unique_idx ON publish_jobs (version_id);
CREATE INDEX publish_jobs_state_idx ON publish_jobs (state, updated_at, id);

-- A claimed step holds a lease: `locked_by` (worker id), `locked_at` (claim time) and
-- `lease_expires_at`, which the holder's heartbeat pushes forward while the step runs.
-- A running step whose lease has expired may be claimed again (attempt_count + 1);
-- completions are fenced on (locked_by, attempt_count), so a stale holder's result is
-- dropped. `trace_parent` links the worker's span to the request that queued the step.
CREATE TABLE publish_job_steps (
  id uuid PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES publish_jobs (id) ON DELETE CASCADE,
  name text NOT NULL CONSTRAINT publish_job_steps_name_check
    CHECK (name IN ('validate_catalog', 'incus_index', 'finalize_publish')),
  state text NOT NULL CONSTRAINT publish_job_steps_state_check
    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'skipped')),
  blocking boolean NOT NULL DEFAULT true,
  sequence integer NOT NULL CONSTRAINT publish_job_steps_sequence_check CHECK (sequence > 0),
  attempt_count integer NOT NULL DEFAULT 0 CONSTRAINT publish_job_steps_attempt_count_check CHECK (attempt_count >= 0),
  run_after timestamptz NOT NULL DEFAULT now(),
  locked_by text NULL CONSTRAINT publish_job_steps_locked_by_check CHECK (locked_by IS NULL OR btrim(locked_by) <> ''),
  locked_at timestamptz NULL,
  lease_expires_at timestamptz NULL,
  trace_parent text NULL,
  started_at timestamptz NULL,
  finished_at timestamptz NULL,
  failure_message text NULL CONSTRAINT publish_job_steps_failure_message_check
    CHECK (failure_message IS NULL OR btrim(failure_message) <> ''),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT publish_job_steps_lock_check CHECK (
    (locked_by IS NULL AND locked_at IS NULL AND lease_expires_at IS NULL)
    OR (locked_by IS NOT NULL AND locked_at IS NOT NULL AND lease_expires_at IS NOT NULL)
  ),
  CONSTRAINT publish_job_steps_running_check CHECK ((state = 'running') = (locked_by IS NOT NULL)),
  CONSTRAINT publish_job_steps_finished_check
    CHECK (state NOT IN ('succeeded', 'failed', 'skipped') OR finished_at IS NOT NULL),
  CONSTRAINT publish_job_steps_failed_check CHECK (state <> 'failed' OR failure_message IS NOT NULL)
);
CREATE UNIQUE INDEX publish_job_steps_job_name_unique_idx ON publish_job_steps (job_id, name);
CREATE UNIQUE INDEX publish_job_steps_job_sequence_unique_idx ON publish_job_steps (job_id, sequence);
CREATE INDEX publish_job_steps_claim_idx ON publish_job_steps (run_after, sequence, id) WHERE state = 'queued';
CREATE INDEX publish_job_steps_stale_running_idx ON publish_job_steps (lease_expires_at, sequence, id)
  WHERE state = 'running';

-- ---------------------------------------------------------------------------------
-- incus_projection_items: one Simple Streams row per eligible artifact
-- ---------------------------------------------------------------------------------

CREATE TABLE incus_projection_items (
  artifact_id uuid PRIMARY KEY,
  version_id uuid NOT NULL REFERENCES image_versions (id),
  metadata_attachment_id uuid NOT NULL,
  metadata_path text NOT NULL CONSTRAINT incus_projection_items_metadata_path_check CHECK (btrim(metadata_path) <> ''),
  disk_path text NOT NULL CONSTRAINT incus_projection_items_disk_path_check CHECK (btrim(disk_path) <> ''),
  metadata_sha256 text NOT NULL CONSTRAINT incus_projection_items_metadata_sha256_check
    CHECK (metadata_sha256 ~ '^[0-9a-f]{64}$'),
  metadata_size_bytes bigint NOT NULL CONSTRAINT incus_projection_items_metadata_size_check
    CHECK (metadata_size_bytes >= 0),
  disk_sha256 text NOT NULL CONSTRAINT incus_projection_items_disk_sha256_check CHECK (disk_sha256 ~ '^[0-9a-f]{64}$'),
  disk_size_bytes bigint NOT NULL CONSTRAINT incus_projection_items_disk_size_check CHECK (disk_size_bytes >= 0),
  combined_disk_kvm_img_sha256 text NOT NULL CONSTRAINT incus_projection_items_combined_sha256_check
    CHECK (combined_disk_kvm_img_sha256 ~ '^[0-9a-f]{64}$'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- A row can only cite an artifact of its own version and an attachment of that artifact.
  CONSTRAINT incus_projection_items_artifact_version_fkey FOREIGN KEY (artifact_id, version_id)
    REFERENCES release_artifacts (id, version_id) ON DELETE CASCADE,
  CONSTRAINT incus_projection_items_attachment_artifact_fkey FOREIGN KEY (metadata_attachment_id, artifact_id)
    REFERENCES artifact_attachments (id, artifact_id) ON DELETE CASCADE
);
CREATE INDEX incus_projection_items_version_idx ON incus_projection_items (version_id);

-- ---------------------------------------------------------------------------------
-- Guards
-- ---------------------------------------------------------------------------------

-- The state machine of a version, and what publishing requires of its manifest.
CREATE FUNCTION image_versions_guard_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.state <> 'draft' OR NEW.published_at IS NOT NULL THEN
      RAISE EXCEPTION 'image_versions must be inserted as drafts' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;

  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.image_id IS DISTINCT FROM OLD.image_id
     OR NEW.version IS DISTINCT FROM OLD.version OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'image_versions identity fields are immutable' USING ERRCODE = '23514';
  END IF;

  IF OLD.state = 'published' THEN
    -- Even a "touch" of updated_at is refused: a published row never changes.
    IF NEW.state IS DISTINCT FROM OLD.state OR NEW.published_at IS DISTINCT FROM OLD.published_at
       OR NEW.updated_at IS DISTINCT FROM OLD.updated_at THEN
      RAISE EXCEPTION 'published image_versions are immutable' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;

  IF NEW.state = OLD.state THEN
    RETURN NEW;
  END IF;

  IF OLD.state = 'draft' AND NEW.state = 'publishing' THEN
    IF NEW.published_at IS NOT NULL THEN
      RAISE EXCEPTION 'invalid image_versions state transition' USING ERRCODE = '23514';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM release_artifacts WHERE version_id = NEW.id) THEN
      RAISE EXCEPTION 'published image_versions require at least one release_artifact' USING ERRCODE = '23514';
    END IF;
    IF EXISTS (
      SELECT 1 FROM release_artifacts a
      LEFT JOIN cas_blobs b ON b.digest = a.primary_blob_digest AND b.size_bytes = a.primary_blob_size_bytes
      WHERE a.version_id = NEW.id AND b.digest IS NULL
    ) THEN
      RAISE EXCEPTION 'published image_versions require verified primary blobs' USING ERRCODE = '23514';
    END IF;
    IF EXISTS (
      SELECT 1 FROM artifact_attachments t
      JOIN release_artifacts a ON a.id = t.artifact_id
      LEFT JOIN cas_blobs b ON b.digest = t.blob_digest AND b.size_bytes = t.blob_size_bytes
      WHERE a.version_id = NEW.id AND b.digest IS NULL
    ) THEN
      RAISE EXCEPTION 'published image_versions require verified attachment blobs' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;

  IF OLD.state = 'publishing' AND NEW.state = 'published' THEN
    IF NEW.published_at IS NULL THEN
      RAISE EXCEPTION 'published image_versions require published_at' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;

  RAISE EXCEPTION 'invalid image_versions state transition' USING ERRCODE = '23514';
END;
$$;

CREATE TRIGGER image_versions_guard_write BEFORE INSERT OR UPDATE ON image_versions
  FOR EACH ROW EXECUTE FUNCTION image_versions_guard_write();

-- Our addition: only drafts can be deleted (the reference relied on FKs alone).
CREATE FUNCTION image_versions_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state <> 'draft' THEN
    RAISE EXCEPTION 'published image_versions are immutable' USING ERRCODE = '23514';
  END IF;
  RETURN OLD;
END;
$$;

CREATE TRIGGER image_versions_guard_delete BEFORE DELETE ON image_versions
  FOR EACH ROW EXECUTE FUNCTION image_versions_guard_delete();

-- A manifest row may only be written while its version is a draft (publishing freezes it).
-- The version row is read FOR SHARE: a concurrent publish (which locks it FOR UPDATE) then
-- either waits for this write and sees it, or commits first and this write sees `publishing`.
-- (Inserts would also conflict through the foreign key's KEY SHARE lock; deletes would not.)
CREATE FUNCTION release_artifacts_require_draft() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  version_state text;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT state INTO version_state FROM image_versions WHERE id = OLD.version_id FOR SHARE;
    IF FOUND AND version_state <> 'draft' THEN
      RAISE EXCEPTION 'version manifest can only change while draft' USING ERRCODE = '23514';
    END IF;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    -- A missing version is left to the foreign key (23503, "not found").
    SELECT state INTO version_state FROM image_versions WHERE id = NEW.version_id FOR SHARE;
    IF FOUND AND version_state <> 'draft' THEN
      RAISE EXCEPTION 'version manifest can only change while draft' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;
  RETURN OLD;
END;
$$;

CREATE TRIGGER release_artifacts_require_draft BEFORE INSERT OR UPDATE OR DELETE ON release_artifacts
  FOR EACH ROW EXECUTE FUNCTION release_artifacts_require_draft();

CREATE FUNCTION artifact_attachments_require_draft() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  version_state text;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT v.state INTO version_state
      FROM release_artifacts a JOIN image_versions v ON v.id = a.version_id
      WHERE a.id = OLD.artifact_id
      FOR SHARE OF v;
    -- No artifact: this is the cascade of an artifact delete its own guard allowed.
    IF FOUND AND version_state <> 'draft' THEN
      RAISE EXCEPTION 'version manifest can only change while draft' USING ERRCODE = '23514';
    END IF;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    SELECT v.state INTO version_state
      FROM release_artifacts a JOIN image_versions v ON v.id = a.version_id
      WHERE a.id = NEW.artifact_id
      FOR SHARE OF v;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'artifact attachment requires an existing release_artifact' USING ERRCODE = '23503';
    END IF;
    IF version_state <> 'draft' THEN
      RAISE EXCEPTION 'version manifest can only change while draft' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;
  RETURN OLD;
END;
$$;

CREATE TRIGGER artifact_attachments_require_draft BEFORE INSERT OR UPDATE OR DELETE ON artifact_attachments
  FOR EACH ROW EXECUTE FUNCTION artifact_attachments_require_draft();

-- Aliases point at a published version of their own image; identity never changes.
CREATE FUNCTION aliases_guard_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND (
    NEW.id IS DISTINCT FROM OLD.id OR NEW.image_id IS DISTINCT FROM OLD.image_id
    OR NEW.alias IS DISTINCT FROM OLD.alias OR NEW.created_at IS DISTINCT FROM OLD.created_at
  ) THEN
    RAISE EXCEPTION 'alias identity fields are immutable' USING ERRCODE = '23514';
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM image_versions WHERE id = NEW.version_id AND image_id = NEW.image_id AND state = 'published'
  ) THEN
    RAISE EXCEPTION 'aliases must target a published version for the same image' USING ERRCODE = '23514';
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER aliases_guard_write BEFORE INSERT OR UPDATE ON aliases
  FOR EACH ROW EXECUTE FUNCTION aliases_guard_write();

-- Projection rows are written by incus_index while the version is publishing, and then
-- never again: a published version's Simple Streams rows are as immutable as its manifest.
CREATE FUNCTION incus_projection_items_require_publishing() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  version_state text;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT state INTO version_state FROM image_versions WHERE id = OLD.version_id FOR SHARE;
    IF FOUND AND version_state <> 'publishing' THEN
      RAISE EXCEPTION 'incus projection rows can only change while publishing' USING ERRCODE = '23514';
    END IF;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    SELECT state INTO version_state FROM image_versions WHERE id = NEW.version_id FOR SHARE;
    IF FOUND AND version_state <> 'publishing' THEN
      RAISE EXCEPTION 'incus projection rows can only change while publishing' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;
  RETURN OLD;
END;
$$;

CREATE TRIGGER incus_projection_items_require_publishing
  BEFORE INSERT OR UPDATE OR DELETE ON incus_projection_items
  FOR EACH ROW EXECUTE FUNCTION incus_projection_items_require_publishing();

-- Row triggers do not see TRUNCATE; refuse it while anything has left the draft state.
CREATE FUNCTION catalog_guard_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM image_versions WHERE state <> 'draft') THEN
    RAISE EXCEPTION '% cannot be truncated while versions are published or publishing', TG_TABLE_NAME
      USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER image_versions_guard_truncate BEFORE TRUNCATE ON image_versions
  FOR EACH STATEMENT EXECUTE FUNCTION catalog_guard_truncate();
CREATE TRIGGER release_artifacts_guard_truncate BEFORE TRUNCATE ON release_artifacts
  FOR EACH STATEMENT EXECUTE FUNCTION catalog_guard_truncate();
CREATE TRIGGER artifact_attachments_guard_truncate BEFORE TRUNCATE ON artifact_attachments
  FOR EACH STATEMENT EXECUTE FUNCTION catalog_guard_truncate();
CREATE TRIGGER incus_projection_items_guard_truncate BEFORE TRUNCATE ON incus_projection_items
  FOR EACH STATEMENT EXECUTE FUNCTION catalog_guard_truncate();
