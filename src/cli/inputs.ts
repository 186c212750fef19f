import { Effect } from "effect"
import { execFile } from "node:child_process"
import { open, readdir, stat } from "node:fs/promises"
import * as path from "node:path"
import type { ArtifactFormat } from "../catalog/schema.js"
import { LocalFileError } from "../client/errors.js"
import { UsageError } from "./args.js"

/**
 * What `imgsrv push` reads from the disk: the format of a disk image (by its first bytes),
 * the architecture in an Incus metadata tarball, and the files of an image directory as
 * distrobuilder (`incus.tar.xz` + `disk.qcow2` or `rootfs.squashfs`) or `incus image
 * export` (`meta-<fingerprint>.tar.xz` + `<fingerprint>.squashfs|.qcow2`) leave it.
 */

export const MEDIA_TYPES: Readonly<Record<ArtifactFormat, string>> = {
  "qcow2": "application/x-qemu-disk",
  "raw": "application/octet-stream",
  "raw.gz": "application/gzip",
  "squashfs": "application/vnd.squashfs"
}
export const INCUS_METADATA_MEDIA_TYPE = "application/x-xz"

const reasonOf = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

const firstBytes = (file: string, count: number) =>
  Effect.tryPromise({
    try: async () => {
      const handle = await open(file, "r")
      try {
        const buffer = Buffer.alloc(count)
        const { bytesRead } = await handle.read(buffer, 0, count, 0)
        return buffer.subarray(0, bytesRead)
      } finally {
        await handle.close()
      }
    },
    catch: (cause) => new LocalFileError({ path: file, operation: "read", reason: reasonOf(cause) })
  })

/** qcow2 by its magic (`QFI\xfb`), raw.gz by gzip's; anything else is a raw disk. */
export const detectDiskFormat = (file: string): Effect.Effect<ArtifactFormat, LocalFileError | UsageError> =>
  firstBytes(file, 4).pipe(Effect.flatMap((head) => {
    if (head.length >= 4 && head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb) {
      return Effect.succeed("qcow2" as const)
    }
    if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return Effect.succeed("raw.gz" as const)
    if (head.toString("latin1") === "hsqs") {
      return Effect.fail(new UsageError({ reason: `${file} is a squashfs image: push it with --rootfs` }))
    }
    return Effect.succeed("raw" as const)
  }))

/** `architecture` of the `metadata.yaml` inside an Incus metadata tarball (read with `tar`). */
export const metadataArchitecture = (tarball: string): Effect.Effect<string, LocalFileError> =>
  Effect.async<string, LocalFileError>((resume) => {
    const child = execFile(
      "tar",
      ["-xJOf", tarball, "metadata.yaml"],
      { maxBuffer: 1024 * 1024 },
      (error, stdout) => {
        const fail = (reason: string) =>
          resume(Effect.fail(new LocalFileError({ path: tarball, operation: "read metadata.yaml from", reason })))
        if (error !== null) return fail(`${reasonOf(error).split("\n")[0]} (give --arch instead)`)
        const match = /^architecture:\s*["']?([A-Za-z0-9._+-]+)/m.exec(stdout)
        if (match === null) return fail("it names no architecture (give --arch)")
        resume(Effect.succeed(match[1]!))
      }
    )
    return Effect.sync(() => child.kill())
  })

export interface DirectoryImage {
  readonly disk: string | undefined
  readonly rootfs: string | undefined
  readonly metadata: string | undefined
}

const isFile = (file: string) =>
  Effect.tryPromise({ try: () => stat(file), catch: () => undefined }).pipe(
    Effect.map((info) => info.isFile()),
    Effect.orElseSucceed(() => false)
  )

/** Picks the image files of `dir`; more than one candidate of a kind is a usage error. */
export const imageDirectory = (dir: string): Effect.Effect<DirectoryImage, LocalFileError | UsageError> =>
  Effect.gen(function*() {
    const names = yield* Effect.tryPromise({
      try: () => readdir(dir),
      catch: (cause) => new LocalFileError({ path: dir, operation: "read the directory", reason: reasonOf(cause) })
    })
    const files: Array<string> = []
    for (const name of names.sort()) if (yield* isFile(path.join(dir, name))) files.push(name)
    const pick = (kind: string, preferred: ReadonlyArray<string>, matches: (name: string) => boolean) => {
      for (const name of preferred) if (files.includes(name)) return Effect.succeed(path.join(dir, name))
      const found = files.filter(matches)
      if (found.length > 1) {
        return Effect.fail(
          new UsageError({ reason: `${dir} holds several ${kind} files (${found.join(", ")}); name one explicitly` })
        )
      }
      return Effect.succeed(found.length === 1 ? path.join(dir, found[0]!) : undefined)
    }
    const metadata = yield* pick("metadata", ["incus.tar.xz", "lxd.tar.xz"], (n) => n.endsWith(".tar.xz"))
    const rootfs = yield* pick("rootfs", ["rootfs.squashfs"], (n) => n.endsWith(".squashfs"))
    const disk = yield* pick(
      "disk",
      ["disk.qcow2"],
      (n) => n.endsWith(".qcow2") || n.endsWith(".img") || n.endsWith(".raw") || n.endsWith(".raw.gz")
    )
    if (disk === undefined && rootfs === undefined) {
      return yield* new UsageError({ reason: `${dir} holds no disk (*.qcow2, *.img, *.raw) or rootfs (*.squashfs)` })
    }
    return { disk, rootfs, metadata }
  })
