-- Real clients (issue 10): Incus/LXD container images and Simple Streams item paths
-- that end in a real file name.
--
-- 1. Artifacts may be `squashfs`: a container's root filesystem, which together with its
--    `incus.tar.xz` metadata attachment is an Incus container image.
-- 2. A projection row describes the image's root file, which is a VM disk (`disk-kvm.img`,
--    from a qcow2 artifact) or a container rootfs (`squashfs`): the `disk_*` columns become
--    `root_*`, the row says which ftype it is, and its combined hash (sha256 over metadata
--    then root, the image fingerprint either way) is `combined_sha256`.
-- 3. `lxc image export REMOTE:x DIR/` names each file after the last segment of its item
--    path, so paths end in the file name (`…/download/disk.qcow2`, `…/download/incus.tar.xz`)
--    instead of both ending in `download` (the disk overwrote the metadata). The old
--    `…/download` routes keep answering, so documents clients cached stay usable.

ALTER TABLE release_artifacts DROP CONSTRAINT release_artifacts_format_check;
ALTER TABLE release_artifacts ADD CONSTRAINT release_artifacts_format_check
  CHECK (format IN ('raw', 'raw.gz', 'qcow2', 'squashfs'));

ALTER TABLE incus_projection_items RENAME COLUMN disk_path TO root_path;
ALTER TABLE incus_projection_items RENAME COLUMN disk_sha256 TO root_sha256;
ALTER TABLE incus_projection_items RENAME COLUMN disk_size_bytes TO root_size_bytes;
ALTER TABLE incus_projection_items RENAME COLUMN combined_disk_kvm_img_sha256 TO combined_sha256;
ALTER TABLE incus_projection_items RENAME CONSTRAINT incus_projection_items_disk_path_check
  TO incus_projection_items_root_path_check;
ALTER TABLE incus_projection_items RENAME CONSTRAINT incus_projection_items_disk_sha256_check
  TO incus_projection_items_root_sha256_check;
ALTER TABLE incus_projection_items RENAME CONSTRAINT incus_projection_items_disk_size_check
  TO incus_projection_items_root_size_check;

-- Every row so far is a qcow2 artifact's.
ALTER TABLE incus_projection_items ADD COLUMN root_ftype text NOT NULL DEFAULT 'disk-kvm.img'
  CONSTRAINT incus_projection_items_root_ftype_check CHECK (root_ftype IN ('disk-kvm.img', 'squashfs'));
ALTER TABLE incus_projection_items ALTER COLUMN root_ftype DROP DEFAULT;

-- Rows of published versions are otherwise immutable (the guard trigger); this one
-- rewrite, in the migration's transaction, appends the file names the new routes serve:
-- the metadata attachment is always named `incus.tar.xz`, the root always a qcow2 disk.
ALTER TABLE incus_projection_items DISABLE TRIGGER incus_projection_items_require_publishing;
UPDATE incus_projection_items
  SET metadata_path = metadata_path || '/incus.tar.xz', root_path = root_path || '/disk.qcow2'
  WHERE root_path LIKE '%/download';
ALTER TABLE incus_projection_items ENABLE TRIGGER incus_projection_items_require_publishing;
