-- Catalog generation (issue 15): one counter that changes in the same transaction as any
-- change that may affect the Simple Streams documents, so every replica can keep the
-- rendered documents in memory and know, from one small row, whether they are current.
--
-- - `catalog_generation` is a single row. Statement-level triggers on the catalog tables
--   increment it, at most once per transaction (a transaction-local setting remembers it),
--   and only for statements that changed rows (transition tables), so every writer — the
--   API, background workers, lifecycle jobs, SQL run by hand — bumps it without knowing.
-- - The trigger also sends `NOTIFY imgsrv_catalog_generation, '<generation>'`: delivered
--   at commit, it tells the other replicas within milliseconds; they also poll the row
--   (about once a second) in case a notification is lost with a connection.
-- - A reader that reads the row and the catalog in one REPEATABLE READ snapshot knows
--   exactly which generation its rendering shows.
--
-- The increment locks the row until commit: catalog writes serialise at that point, which
-- is cheap because catalog transactions are short (hashing happens outside them).
--
-- A later migration that adds a table the documents read calls
-- `SELECT catalog_generation_watch('that_table');`.

CREATE TABLE catalog_generation (
  id boolean PRIMARY KEY DEFAULT true CONSTRAINT catalog_generation_single_row CHECK (id),
  generation bigint NOT NULL
);
INSERT INTO catalog_generation (id, generation) VALUES (true, 1);

-- Increments the generation once per transaction and announces it (delivered at commit).
CREATE FUNCTION catalog_generation_increment() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  next bigint;
BEGIN
  -- Once per transaction is enough: the generation names a committed state, and every
  -- change of this transaction becomes visible with the same commit.
  IF current_setting('imgsrv.catalog_generation_bumped', true) = 'on' THEN
    RETURN;
  END IF;
  UPDATE catalog_generation SET generation = generation + 1 WHERE id RETURNING generation INTO next;
  PERFORM set_config('imgsrv.catalog_generation_bumped', 'on', true);
  PERFORM pg_notify('imgsrv_catalog_generation', next::text);
END;
$$;

CREATE FUNCTION catalog_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM catalog_generation_increment();
  RETURN NULL;
END;
$$;

-- The same, skipped when the statement changed no row (an UPDATE matching nothing).
CREATE FUNCTION catalog_generation_bump_if_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('imgsrv.catalog_generation_bumped', true) IS DISTINCT FROM 'on'
    AND EXISTS (SELECT 1 FROM catalog_generation_changed_rows) THEN
    PERFORM catalog_generation_increment();
  END IF;
  RETURN NULL;
END;
$$;

-- Installs the four statement-level triggers on `target` (idempotent).
CREATE FUNCTION catalog_generation_watch(target regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  base text := replace(target::text, '.', '_');
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', base || '_generation_insert', target);
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', base || '_generation_update', target);
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', base || '_generation_delete', target);
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', base || '_generation_truncate', target);
  EXECUTE format(
    'CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS catalog_generation_changed_rows '
      'FOR EACH STATEMENT EXECUTE FUNCTION catalog_generation_bump_if_changed()',
    base || '_generation_insert', target);
  EXECUTE format(
    'CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING NEW TABLE AS catalog_generation_changed_rows '
      'FOR EACH STATEMENT EXECUTE FUNCTION catalog_generation_bump_if_changed()',
    base || '_generation_update', target);
  EXECUTE format(
    'CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS catalog_generation_changed_rows '
      'FOR EACH STATEMENT EXECUTE FUNCTION catalog_generation_bump_if_changed()',
    base || '_generation_delete', target);
  EXECUTE format(
    'CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION catalog_generation_bump()',
    base || '_generation_truncate', target);
END;
$$;

-- Everything the documents are made of: names and titles (images), states and dates
-- (image_versions), OS/arch/variant (release_artifacts), attachments, aliases, and the
-- projection rows. Later states of versions (yanked, retired, deleted) are changes of these.
SELECT catalog_generation_watch('images');
SELECT catalog_generation_watch('image_versions');
SELECT catalog_generation_watch('release_artifacts');
SELECT catalog_generation_watch('artifact_attachments');
SELECT catalog_generation_watch('aliases');
SELECT catalog_generation_watch('incus_projection_items');
