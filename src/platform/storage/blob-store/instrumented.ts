/**
 * Metrics and spans around every `BlobStore` call (domain.md §7.2). The metric names match
 * the reference implementation byte for byte so dashboards and alerts keep working; labels are
 * bounded (operation, outcome, direction) — never a key, digest or upload id.
 */
import { Cause, Clock, Effect, Exit, Metric } from "effect"
import { latencyBoundaries } from "../../observability/metrics.js"
import { BlobStore, type OpenedObject } from "./blob-store.js"

export type ObjectStoreOperation =
  | "create_multipart_upload"
  | "put_part"
  | "complete_multipart_upload"
  | "abort_multipart_upload"
  | "open_object"
  | "stat_object"
  | "copy_object"
  | "move_object"
  | "delete_object"
  | "health_check"
  | "list_objects"
  | "list_multipart_uploads"

export type ObjectStoreOutcome =
  | "success"
  | "not_found"
  | "conflict"
  | "already_exists"
  | "invalid"
  | "canceled"
  | "error"

export const objectStoreOperationsTotal = Metric.counter("imgsrv_objectstore_operations_total", {
  description: "Object-store adapter calls by operation and outcome.",
  incremental: true
})

export const objectStoreOperationDurationSeconds = Metric.histogram(
  "imgsrv_objectstore_operation_duration_seconds",
  latencyBoundaries,
  "Object-store adapter call duration; for open_object only until the object is opened, not the body."
)

export const objectStoreBytesTotal = Metric.counter("imgsrv_objectstore_bytes_total", {
  description: "Bytes moved by object-store calls: put_part writes, open_object reads (at open), copy_object both.",
  incremental: true
})

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): ObjectStoreOutcome => {
  if (Exit.isSuccess(exit)) return "success"
  if (Cause.isInterruptedOnly(exit.cause)) return "canceled"
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "None") return "error"
  const error = failure.value
  const tag = typeof error === "object" && error !== null && "_tag" in error ? error._tag : undefined
  switch (tag) {
    case "BlobNotFound":
      return "not_found"
    case "BlobPreconditionFailed":
      return typeof error === "object" && error !== null && "reason" in error && error.reason === "destination-exists"
        ? "already_exists"
        : "conflict"
    case "InvalidPartList":
    case "BodyLengthMismatch":
      return "invalid"
    default:
      // BlobStoreError, and whatever a putPart body failed with.
      return "error"
  }
}

type Direction = "read" | "write"

/**
 * Wraps one call: a span `objectstore.<operation>`, one count, one duration sample, and the
 * bytes `bytesOf` derives from a successful result.
 */
const observe = <A>(
  kind: string,
  operation: ObjectStoreOperation,
  attributes: Record<string, string | number>,
  bytesOf: (value: A) => ReadonlyArray<readonly [Direction, number]> = () => []
) =>
<E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Clock.currentTimeNanos.pipe(
    Effect.flatMap((startedAt) =>
      effect.pipe(
        Effect.onExit((exit) =>
          Effect.gen(function*() {
            const seconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
            const outcome = outcomeOf(exit)
            yield* Metric.increment(
              Metric.tagged(Metric.tagged(objectStoreOperationsTotal, "operation", operation), "outcome", outcome)
            )
            yield* Metric.update(
              Metric.tagged(
                Metric.tagged(objectStoreOperationDurationSeconds, "operation", operation),
                "outcome",
                outcome
              ),
              seconds
            )
            if (Exit.isSuccess(exit)) {
              for (const [direction, bytes] of bytesOf(exit.value)) {
                if (bytes > 0) {
                  yield* Metric.incrementBy(
                    Metric.tagged(Metric.tagged(objectStoreBytesTotal, "operation", operation), "direction", direction),
                    bytes
                  )
                }
              }
            }
          })
        )
      )
    ),
    Effect.withSpan(`objectstore.${operation}`, {
      kind: "client",
      attributes: { "objectstore.driver": kind, "objectstore.operation": operation, ...attributes }
    })
  )

/** The same store, with every operation measured and traced. */
export const instrumentBlobStore = (store: BlobStore["Type"]): BlobStore["Type"] => {
  const kind = store.kind
  return BlobStore.of({
    kind,
    createMultipartUpload: (key) =>
      store.createMultipartUpload(key).pipe(observe(kind, "create_multipart_upload", { "objectstore.key": key })),
    putPart: (key, uploadId, partNumber, body, contentLength) =>
      store
        .putPart(key, uploadId, partNumber, body, contentLength)
        .pipe(
          observe(
            kind,
            "put_part",
            {
              "objectstore.key": key,
              "objectstore.part_number": partNumber,
              "objectstore.content_length": contentLength
            },
            (part) => [["write", part.sizeBytes]]
          )
        ),
    completeMultipartUpload: (key, uploadId, parts) =>
      store
        .completeMultipartUpload(key, uploadId, parts)
        .pipe(
          observe(kind, "complete_multipart_upload", { "objectstore.key": key, "objectstore.parts": parts.length })
        ),
    abortMultipartUpload: (key, uploadId) =>
      store.abortMultipartUpload(key, uploadId).pipe(
        observe(kind, "abort_multipart_upload", { "objectstore.key": key })
      ),
    stat: (key) => store.stat(key).pipe(observe(kind, "stat_object", { "objectstore.key": key })),
    // Measured until the object is opened; the body streams later, outside this span.
    open: (key, range) =>
      store
        .open(key, range)
        .pipe(
          observe<OpenedObject>(
            kind,
            "open_object",
            range === undefined
              ? { "objectstore.key": key }
              : { "objectstore.key": key, "objectstore.range": `${range.start}-${range.end}` },
            (opened) => [["read", opened.contentLength]]
          )
        ),
    copy: (from, to, options) =>
      store.copy(from, to, options).pipe(
        observe(kind, "copy_object", { "objectstore.key": to, "objectstore.source_key": from }, (info) => [
          ["read", info.sizeBytes],
          ["write", info.sizeBytes]
        ])
      ),
    // A move is a rename on the filesystem and a server-side copy on S3; its bytes are not
    // counted, matching the reference (which only knows copy_object bytes).
    move: (from, to, options) =>
      store.move(from, to, options).pipe(
        observe(kind, "move_object", { "objectstore.key": to, "objectstore.source_key": from })
      ),
    delete: (key) => store.delete(key).pipe(observe(kind, "delete_object", { "objectstore.key": key })),
    health: store.health.pipe(observe(kind, "health_check", {})),
    // Housekeeping of the driver's own files, not an object-store call: not counted.
    removeStaleTemporaries: (cutoff) => store.removeStaleTemporaries(cutoff),
    listStagingObjects: store.listStagingObjects.pipe(observe(kind, "list_objects", {})),
    listMultipartUploads: store.listMultipartUploads.pipe(observe(kind, "list_multipart_uploads", {}))
  })
}
