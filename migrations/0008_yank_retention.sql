-- Lifecycle, second part (issue 16): yank, retire, retention rules.
--
-- 1. Yank. A published version may be marked yanked (`yanked_at`, `yank_reason`) and
--    unmarked again. It stays `published`: its manifest and downloads keep answering
--    (pinned users are not broken); listings and Simple Streams leave it out. Those two
--    columns are the ONLY thing that may ever change on a published row; the guard below
--    still refuses every other change. No alias may point at a yanked version: yanking a
--    version an alias points at is refused, and so is pointing an alias at a yanked one
--    (the alias guard reads the version row FOR SHARE, so a concurrent yank and alias move
--    serialise on it and the second one sees the first).
--
-- 2. Retire. Removing a published version for good is allowed only for a yanked version,
--    only through `retire_version(id)`, which sets the transaction-local setting
--    `imgsrv.retiring_version` to that version's id for the duration of its deletes and
--    clears it before returning. The guards of 0003/0005 on image_versions,
--    release_artifacts, artifact_attachments and incus_projection_items accept a delete of a
--    published row only when that setting names its (yanked) version. Every other delete or
--    update of published rows — a plain DELETE by hand included — is refused as before
--    (SQLSTATE 23514). The setting is not a security boundary (anyone who can run SQL can
--    set it): it is a narrow, explicit door so that no ordinary statement retires by
--    accident. Blobs are not touched: they become candidates for garbage collection.
--
-- 3. Retention rules per image (`image_retention_rules`); `next_run_at` is the work queue
--    of the retention worker, claimed FOR UPDATE SKIP LOCKED (one replica per image).
--
-- 4. `catalog_generation.published_epoch` counts yanks, unyanks and retirements: every
--    replica keeps published manifests in memory and polls this number to drop them when a
--    published version changed (the generation itself moves on every draft edit too).
--
-- The catalog generation (0006) already bumps on every UPDATE or DELETE of image_versions
-- (statement-level triggers over all columns), so yanking, unyanking and retiring change the
-- Simple Streams documents without further triggers here.

ALTER TABLE image_versions
  ADD COLUMN yanked_at timestamptz NULL,
  ADD COLUMN yank_reason text NULL;
ALTER TABLE image_versions ADD CONSTRAINT image_versions_yank_check CHECK (
  (yanked_at IS NULL AND yank_reason IS NULL)
  OR (yanked_at IS NOT NULL AND state = 'published' AND btrim(yank_reason) <> '')
);

ALTER TABLE catalog_generation ADD COLUMN published_epoch bigint NOT NULL DEFAULT 0;

-- The version state machine of 0005, plus the yank columns on published rows.
CREATE OR REPLACE FUNCTION image_versions_guard_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  alias_name text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.state <> 'draft' OR NEW.published_at IS NOT NULL OR NEW.yanked_at IS NOT NULL THEN
      RAISE EXCEPTION 'image_versions must be inserted as drafts' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;

  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.image_id IS DISTINCT FROM OLD.image_id
     OR NEW.version IS DISTINCT FROM OLD.version OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'image_versions identity fields are immutable' USING ERRCODE = '23514';
  END IF;

  IF OLD.state = 'published' THEN
    -- Even a "touch" of updated_at is refused: only the yank columns may change.
    IF NEW.state IS DISTINCT FROM OLD.state OR NEW.published_at IS DISTINCT FROM OLD.published_at
       OR NEW.updated_at IS DISTINCT FROM OLD.updated_at THEN
      RAISE EXCEPTION 'published image_versions are immutable' USING ERRCODE = '23514';
    END IF;
    IF NEW.yanked_at IS NOT NULL AND OLD.yanked_at IS NULL THEN
      SELECT alias INTO alias_name FROM aliases WHERE version_id = NEW.id ORDER BY alias COLLATE "C" LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'a version alias % points at cannot be yanked', alias_name USING ERRCODE = '23514';
      END IF;
    END IF;
    RETURN NEW;
  END IF;

  IF NEW.yanked_at IS NOT NULL THEN
    RAISE EXCEPTION 'only published image_versions can be yanked' USING ERRCODE = '23514';
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

  IF OLD.state = 'publishing' AND NEW.state = 'draft' THEN
    IF NEW.published_at IS NOT NULL
       OR EXISTS (SELECT 1 FROM publish_jobs WHERE version_id = NEW.id AND state <> 'abandoned') THEN
      RAISE EXCEPTION 'a publishing version goes back to draft only when its publish job is abandoned'
        USING ERRCODE = '23514';
    END IF;
    IF EXISTS (SELECT 1 FROM incus_projection_items WHERE version_id = NEW.id) THEN
      RAISE EXCEPTION 'a version going back to draft must have no incus projection rows' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
  END IF;

  RAISE EXCEPTION 'invalid image_versions state transition' USING ERRCODE = '23514';
END;
$$;

-- True while `retire_version` is deleting the rows of `version`, which must be a yanked
-- published version (the caller has just checked: it is called from the guards below).
CREATE FUNCTION catalog_retiring(version_uuid uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT coalesce(current_setting('imgsrv.retiring_version', true), '') = version_uuid::text
$$;

-- 0003's guard, plus the retire door.
CREATE OR REPLACE FUNCTION image_versions_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state = 'draft' THEN
    RETURN OLD;
  END IF;
  IF OLD.state = 'published' AND OLD.yanked_at IS NOT NULL AND catalog_retiring(OLD.id) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'published image_versions are immutable' USING ERRCODE = '23514';
END;
$$;

CREATE OR REPLACE FUNCTION release_artifacts_require_draft() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  version_state text;
  version_yanked timestamptz;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT state, yanked_at INTO version_state, version_yanked FROM image_versions WHERE id = OLD.version_id FOR SHARE;
    IF FOUND AND version_state <> 'draft' THEN
      IF TG_OP = 'DELETE' AND version_state = 'published' AND version_yanked IS NOT NULL
         AND catalog_retiring(OLD.version_id) THEN
        RETURN OLD;
      END IF;
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

CREATE OR REPLACE FUNCTION artifact_attachments_require_draft() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  version_state text;
  version_yanked timestamptz;
  version_uuid uuid;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT v.state, v.yanked_at, v.id INTO version_state, version_yanked, version_uuid
      FROM release_artifacts a JOIN image_versions v ON v.id = a.version_id
      WHERE a.id = OLD.artifact_id
      FOR SHARE OF v;
    -- No artifact: this is the cascade of an artifact delete its own guard allowed.
    IF FOUND AND version_state <> 'draft' THEN
      IF TG_OP = 'DELETE' AND version_state = 'published' AND version_yanked IS NOT NULL
         AND catalog_retiring(version_uuid) THEN
        RETURN OLD;
      END IF;
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

CREATE OR REPLACE FUNCTION incus_projection_items_require_publishing() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  version_state text;
  version_yanked timestamptz;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT state, yanked_at INTO version_state, version_yanked FROM image_versions WHERE id = OLD.version_id FOR SHARE;
    IF FOUND AND version_state <> 'publishing' THEN
      IF TG_OP = 'DELETE' AND version_state = 'published' AND version_yanked IS NOT NULL
         AND catalog_retiring(OLD.version_id) THEN
        RETURN OLD;
      END IF;
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

-- Aliases point at a published, not yanked version of their own image. The version row is
-- read FOR SHARE so that a concurrent yank (an UPDATE of that row) and this write serialise.
CREATE OR REPLACE FUNCTION aliases_guard_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  target_yanked timestamptz;
BEGIN
  IF TG_OP = 'UPDATE' AND (
    NEW.id IS DISTINCT FROM OLD.id OR NEW.image_id IS DISTINCT FROM OLD.image_id
    OR NEW.alias IS DISTINCT FROM OLD.alias OR NEW.created_at IS DISTINCT FROM OLD.created_at
  ) THEN
    RAISE EXCEPTION 'alias identity fields are immutable' USING ERRCODE = '23514';
  END IF;
  SELECT yanked_at INTO target_yanked FROM image_versions
    WHERE id = NEW.version_id AND image_id = NEW.image_id AND state = 'published'
    FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'aliases must target a published version for the same image' USING ERRCODE = '23514';
  END IF;
  IF target_yanked IS NOT NULL THEN
    RAISE EXCEPTION 'aliases cannot target a yanked version' USING ERRCODE = '23514';
  END IF;
  RETURN NEW;
END;
$$;

-- The one way a published version goes: it must be yanked and no alias may point at it.
-- Deletes its projection rows, artifacts (attachments by cascade), publish jobs (steps by
-- cascade) and the version row, with the retire door open for exactly this version.
-- Returns false when there is no such yanked published version (nothing is changed).
CREATE FUNCTION retire_version(target uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM image_versions WHERE id = target AND state = 'published' AND yanked_at IS NOT NULL FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM set_config('imgsrv.retiring_version', target::text, true);
  DELETE FROM incus_projection_items WHERE version_id = target;
  DELETE FROM release_artifacts WHERE version_id = target;
  DELETE FROM publish_jobs WHERE version_id = target;
  DELETE FROM image_versions WHERE id = target;
  -- Closed again at once: later statements of the transaction get no door.
  PERFORM set_config('imgsrv.retiring_version', '', true);
  RETURN true;
END;
$$;

-- Yanks, unyanks and retirements move the published epoch (see 4. above).
CREATE FUNCTION catalog_published_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE catalog_generation SET published_epoch = published_epoch + 1 WHERE id;
  RETURN NULL;
END;
$$;

CREATE TRIGGER image_versions_published_epoch_update AFTER UPDATE OF yanked_at ON image_versions
  FOR EACH ROW WHEN (OLD.yanked_at IS DISTINCT FROM NEW.yanked_at) EXECUTE FUNCTION catalog_published_epoch_bump();
CREATE TRIGGER image_versions_published_epoch_delete AFTER DELETE ON image_versions
  FOR EACH ROW WHEN (OLD.state = 'published') EXECUTE FUNCTION catalog_published_epoch_bump();

-- ---------------------------------------------------------------------------------
-- Retention rules
-- ---------------------------------------------------------------------------------

-- Durations are kept as written (`90d`); the application parses them (catalog of units
-- s, m, h, d, w). `next_run_at` is when the worker next applies the rules.
CREATE TABLE image_retention_rules (
  image_id uuid PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
  keep_last integer NULL CONSTRAINT image_retention_rules_keep_last_check CHECK (keep_last IS NULL OR keep_last >= 0),
  yank_older_than text NULL CONSTRAINT image_retention_rules_yank_older_than_check
    CHECK (yank_older_than IS NULL OR yank_older_than ~ '^[0-9]{1,6}[smhdw]$'),
  retire_yanked_after text NULL CONSTRAINT image_retention_rules_retire_yanked_after_check
    CHECK (retire_yanked_after IS NULL OR retire_yanked_after ~ '^[0-9]{1,6}[smhdw]$'),
  next_run_at timestamptz NOT NULL DEFAULT now(),
  last_run_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX image_retention_rules_due_idx ON image_retention_rules (next_run_at);
