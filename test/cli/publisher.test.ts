import { readFile, truncate, writeFile } from "node:fs/promises"
import { open } from "node:fs/promises"
import { mkdir } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { tempDir } from "../support/harness.js"
import { type ServedImgsrv, startServedImgsrv } from "../support/shell.js"
import {
  type CliResult,
  describeCli,
  fakeQcow2,
  incusMetadata,
  partPuts,
  runCli,
  settledPartPuts,
  squashfs,
  startCli
} from "./support.js"

/**
 * `imgsrv push` / `pull` / `images` / `versions` / `inspect` as processes (the package's
 * `bin`) against an imgsrv process whose access log (JSON on stderr) counts the part PUTs
 * that reached it.
 */

const MiB = 1024 * 1024

let server: ServedImgsrv
let token: string
let work: string
const outputs: Array<string> = []

beforeAll(async () => {
  server = await startServedImgsrv({ env: { IMGSRV_LOG_FORMAT: "json" } })
  token = await server.writerToken()
  work = await tempDir("imgsrv-cli-")
}, 120_000)
afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0)
})

/** Each test has its own resume state, as a separate machine would. */
const envFor = (stateDir: string, extra: Record<string, string> = {}) => ({
  IMGSRV_URL: server.baseUrl,
  IMGSRV_TOKEN: token,
  IMGSRV_STATE_DIR: stateDir,
  ...extra
})

const cli = async (args: ReadonlyArray<string>, env: Record<string, string>): Promise<CliResult> => {
  const result = await runCli(args, env)
  outputs.push(result.stdout, result.stderr)
  return result
}

const jsonLines = (stdout: string) =>
  stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, unknown> & { event: string })

describe("imgsrv push and pull", () => {
  it("pushes a multi-part disk with its Incus metadata and an alias; pull gives the same bytes back", {
    timeout: 120_000
  }, async () => {
    const dir = path.join(work, "multi")
    await mkdir(dir)
    const disk = await fakeQcow2(path.join(dir, "disk.qcow2"), 23 * MiB)
    await incusMetadata(dir, path.join(dir, "incus.tar.xz"), "x86_64")
    const env = envFor(path.join(dir, "state"))
    const before = partPuts(server)

    const pushed = await cli([
      "push",
      "multi:1.0",
      "--disk",
      path.join(dir, "disk.qcow2"),
      "--incus-metadata",
      path.join(dir, "incus.tar.xz"),
      "--alias",
      "latest",
      "--part-size",
      "5MiB",
      "--concurrency",
      "4"
    ], env)
    expect(pushed.code, describeCli(pushed)).toBe(0)
    expect(pushed.stdout).toMatch(/^multi:1\.0 published \(2 file\(s\), 6 part\(s\) sent, aliases latest\)\n$/)
    // 23 MiB in 5 MiB parts is 5 parts, and the metadata one more.
    expect(await settledPartPuts(server) - before).toBe(6)

    const out = path.join(dir, "pulled")
    const pulled = await cli(["pull", "multi:latest", "--out", `${out}/`], env)
    expect(pulled.code, describeCli(pulled)).toBe(0)
    expect(Buffer.compare(await readFile(path.join(out, "disk.qcow2")), disk)).toBe(0)
    expect(
      Buffer.compare(await readFile(path.join(out, "incus.tar.xz")), await readFile(path.join(dir, "incus.tar.xz")))
    )
      .toBe(0)

    const inspected = await cli(["inspect", "multi:latest", "--json"], env)
    expect(inspected.code, describeCli(inspected)).toBe(0)
    const manifest = JSON.parse(inspected.stdout) as {
      version: { version: string; state: string }
      artifacts: Array<{ artifact: { architecture: string; format: string }; attachments: Array<{ name: string }> }>
    }
    expect(manifest.version).toMatchObject({ version: "1.0", state: "published" })
    // The architecture comes from the metadata's metadata.yaml.
    expect(manifest.artifacts.map((a) => a.artifact)).toMatchObject([{ architecture: "x86_64", format: "qcow2" }])
    expect(manifest.artifacts[0]!.attachments.map((a) => a.name)).toEqual(["incus.tar.xz"])

    const images = await cli(["images"], env)
    expect(images.stdout).toMatch(/^NAME\s+DISPLAY NAME\s+UPDATED\n(.*\n)*multi\s/)
    const versions = await cli(["versions", "multi"], env)
    expect(versions.stdout).toMatch(/^VERSION\s+STATE\s+PUBLISHED\n1\.0\s+published\s+\S+\n$/)
  })

  it("re-pushing the same bytes sends no part and reports the version as already published", async () => {
    const dir = path.join(work, "again")
    await mkdir(dir)
    await fakeQcow2(path.join(dir, "disk.qcow2"), 6 * MiB)
    const args = ["push", "again:1", "--disk", path.join(dir, "disk.qcow2"), "--part-size", "5MiB", "--alias", "stable"]
    const first = await cli(args, envFor(path.join(dir, "state")))
    expect(first.code, describeCli(first)).toBe(0)
    const before = await settledPartPuts(server)

    // Another machine (no local state): the server has the blob, so begin answers ready.
    const second = await cli(args, envFor(path.join(dir, "other-state")))
    expect(second.code, describeCli(second)).toBe(0)
    expect(second.stdout).toMatch(/^again:1 already published \(1 file\(s\), 0 part\(s\) sent, aliases stable\)\n$/)
    expect(second.stderr).toContain("already stored as sha256:")
    expect(await settledPartPuts(server)).toBe(before)
  })

  it("--json prints JSON lines only, and without it progress on a pipe is plain lines", async () => {
    const dir = path.join(work, "json")
    await mkdir(dir)
    await fakeQcow2(path.join(dir, "disk.qcow2"), 11 * MiB)
    await incusMetadata(dir, path.join(dir, "meta.tar.xz"), "aarch64")
    const pushed = await cli([
      "push",
      "json:2",
      "--json",
      "--disk",
      path.join(dir, "disk.qcow2"),
      "--incus-metadata",
      path.join(dir, "meta.tar.xz"),
      "--part-size",
      "5MiB",
      "--alias",
      "latest"
    ], envFor(path.join(dir, "state")))
    expect(pushed.code, describeCli(pushed)).toBe(0)
    const events = jsonLines(pushed.stdout)
    const kinds = events.map((e) => e.event)
    for (const kind of ["hashing", "part", "uploaded", "ready", "published", "alias", "done"]) {
      expect(kinds, kind).toContain(kind)
    }
    expect(kinds.at(-1)).toBe("done")
    expect(kinds).not.toContain("progress")
    expect(events.filter((e) => e.event === "part" && e["file"] === "disk.qcow2")).toHaveLength(3)
    expect(events.at(-1)).toMatchObject({ image: "json", version: "2", state: "published", parts_sent: 4 })
    expect(pushed.stderr).toBe("")

    const pulled = await cli(["pull", "json", "--out", path.join(dir, "copy.qcow2")], envFor(path.join(dir, "state")))
    expect(pulled.code, describeCli(pulled)).toBe(0)
    // Not a terminal: complete lines, no carriage returns or escape sequences.
    expect(pulled.stderr).not.toMatch(/[\r\x1b]/)
    expect(pulled.stderr).toMatch(/^copy\.qcow2: sha256 verified\n$/)
    expect(pulled.stdout).toMatch(/^FILE\s+SIZE\s+DIGEST\n.*copy\.qcow2\s+11\.0 MiB\s+sha256:[0-9a-f]{64}\n$/)
  })

  it("pushes a container (squashfs rootfs with Incus metadata) from an image directory", async () => {
    const dir = path.join(work, "container")
    await mkdir(dir)
    await squashfs(dir, path.join(dir, "rootfs.squashfs"))
    await incusMetadata(dir, path.join(dir, "incus.tar.xz"), "amd64")
    const env = envFor(path.join(dir, "state"))
    const pushed = await cli(["push", "ct:1", "--from", dir, "--alias", "latest"], env)
    expect(pushed.code, describeCli(pushed)).toBe(0)

    const inspected = await cli(["inspect", "ct:latest", "--json"], env)
    const manifest = JSON.parse(inspected.stdout) as {
      artifacts: Array<{ artifact: { format: string; architecture: string; primary_media_type: string } }>
    }
    expect(manifest.artifacts.map((a) => a.artifact)).toMatchObject([
      { format: "squashfs", architecture: "amd64", primary_media_type: "application/vnd.squashfs" }
    ])
    const pulled = await cli(["pull", "ct:1", "--out", path.join(dir, "out/")], env)
    expect(pulled.code, describeCli(pulled)).toBe(0)
    expect(Buffer.compare(
      await readFile(path.join(dir, "out", "rootfs.squashfs")),
      await readFile(path.join(dir, "rootfs.squashfs"))
    )).toBe(0)
    // The Simple Streams surface offers it as a container.
    const streams = JSON.stringify(await (await fetch(`${server.baseUrl}/streams/v1/images.json`)).json())
    expect(streams).toMatch(/"ct:1:amd64:default":.*"ftype":"squashfs"/)
  })
})

describe("resuming", () => {
  it(
    "a push killed with SIGKILL mid-upload continues: the rerun sends only the missing parts",
    { timeout: 180_000 },
    async () => {
      const dir = path.join(work, "resume")
      await mkdir(dir)
      const parts = 40
      const disk = await fakeQcow2(path.join(dir, "disk.qcow2"), parts * 5 * MiB)
      const env = envFor(path.join(dir, "state"))
      const args = ["push", "resume:1", "--json", "--disk", path.join(dir, "disk.qcow2"), "--part-size", "5MiB"]
      const before = partPuts(server)

      let sent = 0
      const first = startCli([...args, "--concurrency", "1"], env, (chunk) => {
        sent += (chunk.match(/"event":"part"[^\n]*"sent":true/g) ?? []).length
        if (sent >= 3) first.child.kill("SIGKILL")
      })
      expect(await first.exited).toBe("SIGKILL")
      const afterKill = await settledPartPuts(server) - before
      expect(afterKill).toBeGreaterThanOrEqual(3)
      expect(afterKill).toBeLessThan(parts)

      const second = await cli([...args, "--concurrency", "4"], env)
      expect(second.code, describeCli(second)).toBe(0)
      const events = jsonLines(second.stdout)
      // The digest was not computed again, the parts the server had were not sent again.
      expect(events.find((e) => e.event === "hashing")).toMatchObject({ cached: true })
      const skipped = events.filter((e) => e.event === "part" && e["sent"] === false).length
      expect(skipped).toBe(afterKill)
      expect(await settledPartPuts(server) - before).toBe(parts)
      expect(events.at(-1)).toMatchObject({ event: "done", state: "published", parts_sent: parts - afterKill })

      const pulled = await cli(["pull", "resume:1", "--out", path.join(dir, "copy.qcow2")], env)
      expect(pulled.code, describeCli(pulled)).toBe(0)
      expect(Buffer.compare(await readFile(path.join(dir, "copy.qcow2")), disk)).toBe(0)
    }
  )

  it("pull continues a partial download with a range request and verifies the whole file", async () => {
    const dir = path.join(work, "partial")
    await mkdir(dir)
    const disk = await fakeQcow2(path.join(dir, "disk.qcow2"), 9 * MiB)
    const env = envFor(path.join(dir, "state"))
    expect((await cli(["push", "partial:1", "--disk", path.join(dir, "disk.qcow2")], env)).code).toBe(0)
    // What an interrupted pull leaves: the first 4 MiB in `<out>.partial`.
    await writeFile(path.join(dir, "copy.qcow2.partial"), disk.subarray(0, 4 * MiB))
    const pulled = await cli(["pull", "partial:1", "--json", "--out", path.join(dir, "copy.qcow2")], env)
    expect(pulled.code, describeCli(pulled)).toBe(0)
    expect(jsonLines(pulled.stdout)[0]).toMatchObject({ event: "downloaded", resumed_from: 4 * MiB })
    expect(Buffer.compare(await readFile(path.join(dir, "copy.qcow2")), disk)).toBe(0)
    const ranged = server.proc.stderr().split("\n").filter((l) =>
      l.includes("partial/versions/1/artifacts") && l.includes("\"status\":206")
    )
    expect(ranged).toHaveLength(1)
  })
})

describe("failures", () => {
  it(
    "a file that changes during the upload ends with exit 1 and the server's reason",
    { timeout: 120_000 },
    async () => {
      const dir = path.join(work, "changed")
      await mkdir(dir)
      const file = path.join(dir, "disk.qcow2")
      await fakeQcow2(file, 40 * 5 * MiB)
      let changed: Promise<void> | undefined
      const run = startCli(
        ["push", "changed:1", "--json", "--disk", file, "--part-size", "5MiB", "--concurrency", "1"],
        envFor(path.join(dir, "state")),
        (chunk) => {
          if (changed === undefined && chunk.includes("\"event\":\"part\"")) {
            // After hashing, before the last part is read: its bytes are not the hashed ones any more.
            changed = open(file, "r+").then(async (handle) => {
              await handle.write(Buffer.alloc(1024, 7), 0, 1024, 39 * 5 * MiB)
              await handle.close()
            })
          }
        }
      )
      const code = await run.exited
      await changed
      outputs.push(run.stdout(), run.stderr())
      expect(code, run.stderr()).toBe(1)
      expect(run.stderr()).toMatch(/^imgsrv: upload \S+ of disk\.qcow2 failed: digest_mismatch .*\n$/)
    }
  )

  it(
    "a file cut short during the upload ends with exit 1 naming the file",
    { timeout: 120_000 },
    async () => {
      const dir = path.join(work, "truncated")
      await mkdir(dir)
      const file = path.join(dir, "disk.qcow2")
      await fakeQcow2(file, 40 * 5 * MiB)
      let cut: Promise<void> | undefined
      const run = startCli(
        ["push", "truncated:1", "--json", "--disk", file, "--part-size", "5MiB", "--concurrency", "1"],
        envFor(path.join(dir, "state")),
        (chunk) => {
          if (cut === undefined && chunk.includes("\"event\":\"part\"")) cut = truncate(file, 20 * 5 * MiB)
        }
      )
      const code = await run.exited
      await cut
      outputs.push(run.stdout(), run.stderr())
      expect(code, run.stderr()).toBe(1)
      // A local failure, not a connection's: one line naming the file (not retried as a broken connection).
      expect(run.stderr()).toMatch(/^imgsrv: cannot read \S+disk\.qcow2: it ended after \d+ bytes: did it change .*\n$/)
    }
  )

  it("pushing other bytes to a published version fails with the server's 412 detail and request id", async () => {
    const dir = path.join(work, "conflict")
    await mkdir(dir)
    await fakeQcow2(path.join(dir, "a.qcow2"), MiB)
    await fakeQcow2(path.join(dir, "b.qcow2"), MiB)
    const env = envFor(path.join(dir, "state"))
    expect((await cli(["push", "conflict:1", "--disk", path.join(dir, "a.qcow2")], env)).code).toBe(0)
    const refused = await cli(["push", "conflict:1", "--disk", path.join(dir, "b.qcow2")], env)
    expect(refused.code).toBe(1)
    // The new bytes were uploaded (a blob is independent of versions); the version refused them.
    expect(refused.stderr).toMatch(/\nimgsrv: .*is published.*\(HTTP 412, request id [0-9a-f-]{36}\)\n$/)
  })

  it("without a token, the server's 401 is one line; usage errors exit 2; the token is never printed", {
    timeout: 180_000
  }, async () => {
    const dir = path.join(work, "errors")
    await mkdir(dir)
    await fakeQcow2(path.join(dir, "disk.qcow2"), MiB)
    const anonymous = await cli(["push", "errors:1", "--disk", path.join(dir, "disk.qcow2")], {
      IMGSRV_URL: server.baseUrl,
      IMGSRV_STATE_DIR: path.join(dir, "state")
    })
    expect(anonymous.code).toBe(1)
    expect(anonymous.stderr).toMatch(/^imgsrv: .*\(HTTP 401, request id [0-9a-f-]{36}\)\n$/)

    for (
      const args of [
        ["push", "errors:1", "--disk", path.join(dir, "disk.qcow2"), "--bogus"],
        ["push", "errors", "--disk", path.join(dir, "disk.qcow2")],
        ["push", "errors:1"],
        ["push", "errors:1", "--disk", path.join(dir, "disk.qcow2"), "--concurrency", "0"],
        ["pull", "Bad_Name"]
      ]
    ) {
      const usage = await cli(args, envFor(path.join(dir, "state")))
      expect(usage.code, args.join(" ")).toBe(2)
      expect(usage.stderr).toMatch(/^imgsrv (push|pull): .+ \(see imgsrv (push|pull) --help\)\n$/)
    }

    const missing = await cli(["pull", "nothing-here:1"], envFor(path.join(dir, "state")))
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^imgsrv: .*\(HTTP 404, request id [0-9a-f-]{36}\)\n$/)

    const down = await cli(["images", "--server", "http://127.0.0.1:1"], envFor(path.join(dir, "state")))
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/^imgsrv: GET http:\/\/127\.0\.0\.1:1\/v1\/images: .*ECONNREFUSED.*\n$/)

    for (const output of outputs) expect(output).not.toContain(token)
  })
})
