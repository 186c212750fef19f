/**
 * S3's multipart limits, which imgsrv enforces whatever the store (parts numbered
 * 1..10000, each at most 5 GiB): the blob-store drivers check them, the upload schemas
 * advertise them, and clients size their parts by them.
 */
export const MAX_PART_NUMBER = 10_000
export const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024
