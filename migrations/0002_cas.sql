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
