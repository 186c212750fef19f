-- Garbage collection of CAS blobs (issue 16, docs/gc.md; the protocol is explained at the
-- top of src/gc/service.ts).
--
-- 1. Digest locks. Whatever makes a digest referenced — an artifact or attachment row naming
--    it, an upload session claiming it, a blob row being recorded — takes the digest's
--    advisory lock SHARED in its transaction (`gc_claim_digest`, from the triggers below);
--    the collector takes it EXCLUSIVE in the transaction that deletes the blob row, and
--    re-checks the references after it has the lock (a new statement: a new snapshot). So
--    a reference either committed before that check (the collector sees it and keeps the
--    blob) or is written after the collector's commit (the blob row is gone: the reference
--    is like one declared before its upload, and publish refuses it until the blob is
--    uploaded again).
-- 2. Tombstones (`gc_blob_deletions`): the collector deletes the row and writes a tombstone
--    in one transaction, deletes the object afterwards, then the tombstone. While one exists
--    no blob row for that digest can be recorded (the object at its key may be about to
--    go), so an upload of the same digest finishing meanwhile is retried by the promotion
--    worker after the collector is done. A crash leaves the tombstone; the next run
--    finishes it.
-- 3. "Unreferenced since" (`cas_blob_releases`): every delete (or digest change) of an
--    artifact or attachment row — a draft deleted, a version retired, an artifact
--    replaced, SQL run by hand — records when its digest lost that reference. A blob's
--    grace period runs from the latest of that, its creation, and the last change of an
--    upload session of its digest (a session ending `ready` restarts it).
-- 4. The foreign keys from upload sessions and ingest jobs to `cas_blobs` go: those rows are
--    history, and the blob they produced may later be collected. The trigger on
--    upload_sessions keeps the part that matters: a session becomes `ready` only while its
--    blob row exists.

CREATE TABLE cas_blob_releases (
  digest imgsrv_sha256_digest PRIMARY KEY,
  released_at timestamptz NOT NULL
);

CREATE TABLE gc_blob_deletions (
  digest imgsrv_sha256_digest PRIMARY KEY,
  storage_key text NOT NULL CHECK (btrim(storage_key) <> ''),
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  deleted_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE upload_sessions DROP CONSTRAINT upload_sessions_ready_blob_digest_fkey;
ALTER TABLE cas_ingest_jobs DROP CONSTRAINT cas_ingest_jobs_blob_digest_fkey;

-- The advisory lock namespace of digest locks (two-key form: 'gc' and a hash of the digest).
CREATE FUNCTION gc_digest_lock_key() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 26467 $$;

-- Shared digest lock for whoever makes `digest` referenced; refuses while a collection of
-- that digest is unfinished (SQLSTATE 55IM1, "object in use": retry later).
CREATE FUNCTION gc_claim_digest(digest text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(gc_digest_lock_key(), hashtext(digest));
END;
$$;

CREATE FUNCTION gc_require_no_tombstone(target text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM gc_blob_deletions WHERE digest = target) THEN
    RAISE EXCEPTION 'blob % is being collected; try again shortly', target USING ERRCODE = '55IM1';
  END IF;
END;
$$;

-- Artifacts and attachments: claim the digest they name; record when a digest lost a reference.
CREATE FUNCTION release_artifacts_gc_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.primary_blob_digest IS DISTINCT FROM OLD.primary_blob_digest THEN
    PERFORM gc_claim_digest(NEW.primary_blob_digest);
  END IF;
  RETURN NEW;
END;
$$;

CREATE FUNCTION release_artifacts_gc_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.primary_blob_digest IS DISTINCT FROM OLD.primary_blob_digest THEN
    INSERT INTO cas_blob_releases (digest, released_at) VALUES (OLD.primary_blob_digest, now())
      ON CONFLICT (digest) DO UPDATE SET released_at = greatest(cas_blob_releases.released_at, EXCLUDED.released_at);
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER release_artifacts_gc_claim BEFORE INSERT OR UPDATE ON release_artifacts
  FOR EACH ROW EXECUTE FUNCTION release_artifacts_gc_claim();
CREATE TRIGGER release_artifacts_gc_release AFTER UPDATE OR DELETE ON release_artifacts
  FOR EACH ROW EXECUTE FUNCTION release_artifacts_gc_release();

CREATE FUNCTION artifact_attachments_gc_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.blob_digest IS DISTINCT FROM OLD.blob_digest THEN
    PERFORM gc_claim_digest(NEW.blob_digest);
  END IF;
  RETURN NEW;
END;
$$;

CREATE FUNCTION artifact_attachments_gc_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.blob_digest IS DISTINCT FROM OLD.blob_digest THEN
    INSERT INTO cas_blob_releases (digest, released_at) VALUES (OLD.blob_digest, now())
      ON CONFLICT (digest) DO UPDATE SET released_at = greatest(cas_blob_releases.released_at, EXCLUDED.released_at);
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER artifact_attachments_gc_claim BEFORE INSERT OR UPDATE ON artifact_attachments
  FOR EACH ROW EXECUTE FUNCTION artifact_attachments_gc_claim();
CREATE TRIGGER artifact_attachments_gc_release AFTER UPDATE OR DELETE ON artifact_attachments
  FOR EACH ROW EXECUTE FUNCTION artifact_attachments_gc_release();

-- Upload sessions: a new session claims its digest; a session becomes `ready` only while
-- its blob row exists (what the dropped foreign key used to say, now checked under the
-- digest lock). A session born ready whose blob was just collected fails with 55IM2: the
-- service then begins an ordinary upload instead.
CREATE FUNCTION upload_sessions_gc_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR (NEW.state = 'ready' AND OLD.state <> 'ready') THEN
    PERFORM gc_claim_digest(NEW.expected_digest);
    IF NEW.state = 'ready' AND NOT EXISTS (SELECT 1 FROM cas_blobs WHERE digest = NEW.ready_blob_digest) THEN
      RAISE EXCEPTION 'blob % is not (or no longer) trusted', NEW.ready_blob_digest USING ERRCODE = '55IM2';
    END IF;
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER upload_sessions_gc_claim BEFORE INSERT OR UPDATE ON upload_sessions
  FOR EACH ROW EXECUTE FUNCTION upload_sessions_gc_claim();

-- Blob rows: recorded only under the digest lock and when no collection of the digest is
-- unfinished; deleted only by the collector: with a tombstone in the same transaction and
-- while nothing references the digest (the database refuses any other delete).
CREATE FUNCTION cas_blobs_gc_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM gc_claim_digest(NEW.digest);
  PERFORM gc_require_no_tombstone(NEW.digest);
  RETURN NEW;
END;
$$;

CREATE TRIGGER cas_blobs_gc_insert BEFORE INSERT ON cas_blobs
  FOR EACH ROW EXECUTE FUNCTION cas_blobs_gc_insert();

CREATE FUNCTION cas_blobs_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM gc_blob_deletions WHERE digest = OLD.digest) THEN
    RAISE EXCEPTION 'cas_blobs are deleted only by the garbage collector (with a tombstone)' USING ERRCODE = '23514';
  END IF;
  IF EXISTS (SELECT 1 FROM release_artifacts WHERE primary_blob_digest = OLD.digest)
     OR EXISTS (SELECT 1 FROM artifact_attachments WHERE blob_digest = OLD.digest)
     OR EXISTS (
       SELECT 1 FROM upload_sessions
       WHERE expected_digest = OLD.digest AND state IN ('created', 'uploading', 'completed', 'ingesting')
     ) THEN
    RAISE EXCEPTION 'cas blob % is referenced and cannot be deleted', OLD.digest USING ERRCODE = '23514';
  END IF;
  RETURN OLD;
END;
$$;

DROP TRIGGER cas_blobs_no_delete ON cas_blobs;
CREATE TRIGGER cas_blobs_guard_delete BEFORE DELETE ON cas_blobs
  FOR EACH ROW EXECUTE FUNCTION cas_blobs_guard_delete();
