-- Lifecycle, first part (issue 16): abandoning a failed publish.
--
-- 1. A publish job may end `abandoned`: only a failed job gets there, and an abandoned job
--    never changes again (it stays readable as history).
-- 2. "One job per version" now means one job that is not abandoned: publishing the draft
--    again after an abandon queues a fresh job.
-- 3. A version may go back from `publishing` to `draft`, only once its job is abandoned
--    and its Simple Streams rows are gone (abandon deletes them while still publishing).
-- Deleting drafts needs no schema change: image_versions_guard_delete already refuses to
-- delete anything but a draft.

ALTER TABLE publish_jobs DROP CONSTRAINT publish_jobs_state_check;
ALTER TABLE publish_jobs ADD CONSTRAINT publish_jobs_state_check
  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'abandoned'));
ALTER TABLE publish_jobs DROP CONSTRAINT publish_jobs_finished_check;
ALTER TABLE publish_jobs ADD CONSTRAINT publish_jobs_finished_check
  CHECK (state NOT IN ('succeeded', 'failed', 'abandoned') OR finished_at IS NOT NULL);

DROP INDEX publish_jobs_version_unique_idx;
CREATE UNIQUE INDEX publish_jobs_version_unique_idx ON publish_jobs (version_id) WHERE state <> 'abandoned';

CREATE FUNCTION publish_jobs_guard_abandoned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state = 'abandoned' THEN
    RAISE EXCEPTION 'abandoned publish_jobs are immutable' USING ERRCODE = '23514';
  END IF;
  IF NEW.state = 'abandoned' AND OLD.state <> 'failed' THEN
    RAISE EXCEPTION 'only failed publish_jobs can be abandoned' USING ERRCODE = '23514';
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER publish_jobs_guard_abandoned BEFORE UPDATE ON publish_jobs
  FOR EACH ROW EXECUTE FUNCTION publish_jobs_guard_abandoned();

-- The version state machine of 0003, plus publishing -> draft after an abandon.
CREATE OR REPLACE FUNCTION image_versions_guard_write() RETURNS trigger LANGUAGE plpgsql AS $$
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
