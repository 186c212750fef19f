/**
 * What the helpers report while they work, in the shape `imgsrv push --json` prints (one
 * object per line, `event` first, snake_case like the API). `progress` events are for
 * progress bars only: the CLI's `--json` output leaves them out.
 */
export type ClientEvent =
  /** A file is about to be hashed (`cached`: its digest is known from an earlier run). */
  | { readonly event: "hashing"; readonly file: string; readonly size_bytes: number; readonly cached: boolean }
  /** Bytes hashed, uploaded or downloaded so far for `file`. */
  | {
    readonly event: "progress"
    readonly file: string
    readonly phase: "hashing" | "uploading" | "downloading"
    readonly done_bytes: number
    readonly total_bytes: number
  }
  /** One part: `sent` now, or already on the server from an earlier run (`sent: false`). */
  | {
    readonly event: "part"
    readonly file: string
    readonly upload_id: string
    readonly number: number
    readonly size_bytes: number
    readonly sent: boolean
  }
  /** Every part is on the server and the upload is completed; the server verifies it next. */
  | {
    readonly event: "uploaded"
    readonly file: string
    readonly upload_id: string
    readonly digest: string
    readonly parts_sent: number
    readonly parts_skipped: number
  }
  /** The blob is verified and usable (`already_stored`: the server had it, nothing was sent). */
  | {
    readonly event: "ready"
    readonly file: string
    readonly upload_id: string
    readonly digest: string
    readonly size_bytes: number
    readonly already_stored: boolean
  }
  /** The version's publish job succeeded (`already_published`: it was published before). */
  | {
    readonly event: "published"
    readonly image: string
    readonly version: string
    readonly job_id: string | null
    readonly already_published: boolean
  }
  /** The version was left a draft (`--no-publish`). */
  | { readonly event: "draft"; readonly image: string; readonly version: string }
  /** An alias now points at the version. */
  | { readonly event: "alias"; readonly image: string; readonly alias: string; readonly version: string }
  /** A file was downloaded and verified (`resumed_from`: bytes kept from an earlier attempt). */
  | {
    readonly event: "downloaded"
    readonly file: string
    readonly digest: string
    readonly size_bytes: number
    readonly resumed_from: number
  }

export type EventSink = (event: ClientEvent) => void

export const ignoreEvents: EventSink = () => {}
