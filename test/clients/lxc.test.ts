import { execFile } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { chmod, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { expectStatus, waitForJob } from "../catalog/fixtures.js"
import { type ApiClient, createDatabase, tempDir } from "../support/harness.js"
import { freePort, type ImgsrvProcess, spawnImgsrv } from "../support/process.js"
import { httpsApiClient, issueServerCert, makeCa, type Pem } from "../support/tls.js"
import { uploadBlob } from "../support/uploads.js"

/**
 * The LXD client as users run it (Debian's `lxd-client` 5.0, `lxc`; no daemon needed for
 * these commands) against a stock imgsrv: once with imgsrv serving TLS itself
 * (`--tls-cert-file`, a throwaway CA trusted through SSL_CERT_FILE), once through nginx
 * with the documented configuration (deploy/nginx/imgsrv.conf) in front of a plain-HTTP
 * replica. Images are real: qcow2 disks from `qemu-img`, a squashfs rootfs from
 * `mksquashfs`, metadata tarballs with a `metadata.yaml` from `tar -J`. Everything is
 * published through the HTTP API (version 1.0 straight to imgsrv, 2.0 through nginx), and
 * every file `lxc image export` writes must be byte-identical to what was uploaded.
 *
 * Run by `npm run test:clients` (needs lxd-client, qemu-utils, squashfs-tools, xz-utils,
 * nginx and openssl; `.ci/run` installs them).
 */

const run = promisify(execFile)

/** nginx lives in /usr/sbin, which is not on every user's PATH. */
const NGINX = existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx"

interface Build {
  readonly type: "container" | "virtual-machine"
  readonly meta: Uint8Array
  readonly root: Uint8Array
  /** sha256(metadata ‖ root): what the client calls the fingerprint. */
  readonly fingerprint: string
  readonly rootFileName: string
}

const fingerprintOf = (meta: Uint8Array, root: Uint8Array) =>
  createHash("sha256").update(meta).update(root).digest("hex")

/** A metadata tarball as distrobuilder makes one: `metadata.yaml` (+ templates), xz-compressed. */
const metadataTarball = async (dir: string, name: string, type: string) => {
  const src = path.join(dir, `${name}-meta`)
  await mkdir(path.join(src, "templates"), { recursive: true })
  await writeFile(
    path.join(src, "metadata.yaml"),
    [
      "architecture: x86_64",
      `creation_date: ${Math.floor(Date.now() / 1000)}`,
      "properties:",
      "  os: demo",
      `  release: "${name}"`,
      "  variant: default",
      `  description: demo ${name} ${type}`,
      "templates:",
      "  /etc/hostname:",
      "    when: [create, copy]",
      "    template: hostname.tpl",
      ""
    ].join("\n")
  )
  await writeFile(path.join(src, "templates", "hostname.tpl"), "{{ container.name }}\n")
  const file = path.join(dir, `${name}-incus.tar.xz`)
  await run("tar", ["-cJf", file, "-C", src, "metadata.yaml", "templates"])
  return new Uint8Array(await readFile(file))
}

const qcow2 = async (dir: string, name: string, size: string) => {
  const file = path.join(dir, `${name}.qcow2`)
  await run("qemu-img", ["create", "-q", "-f", "qcow2", file, size])
  return new Uint8Array(await readFile(file))
}

/** A squashfs rootfs; the random file makes it larger than nginx's default 1 MiB body limit. */
const squashfs = async (dir: string, name: string) => {
  const src = path.join(dir, `${name}-rootfs`)
  await mkdir(path.join(src, "etc"), { recursive: true })
  await writeFile(path.join(src, "etc", "os-release"), `NAME=demo\nVERSION_ID=${name}\n`)
  await writeFile(path.join(src, "payload.bin"), randomBytes(3 * 1024 * 1024))
  const file = path.join(dir, `${name}.squashfs`)
  await run("mksquashfs", [src, file, "-noappend", "-quiet", "-all-root"])
  return new Uint8Array(await readFile(file))
}

/** Publishes one version through the HTTP API: each build is an artifact with its `incus.tar.xz`. */
const publish = async (
  api: ApiClient,
  token: string,
  version: string,
  builds: ReadonlyArray<Build & { readonly variant?: string }>
) => {
  const call = <T>(method: string, url: string, json: unknown, status: number) =>
    api.request(method, url, { token, ...(json === undefined ? {} : { json }) }).then((r) => expectStatus<T>(r, status))
  await call("POST", "/v1/images/demo/versions", { version }, 201)
  for (const build of builds) {
    const root = await uploadBlob(api, token, build.root)
    const meta = await uploadBlob(api, token, build.meta)
    const artifact = await call<{ id: string }>("POST", `/v1/images/demo/versions/${version}/artifacts`, {
      ...(build.variant === undefined ? {} : { variant: build.variant }),
      operating_system: "demo",
      architecture: "x86_64",
      format: build.type === "container" ? "squashfs" : "qcow2",
      primary_blob_digest: root.digest,
      primary_blob_size_bytes: build.root.byteLength,
      primary_media_type: build.type === "container" ? "application/vnd.squashfs" : "application/x-qemu-disk"
    }, 201)
    await call("POST", `/v1/images/demo/versions/${version}/artifacts/${artifact.id}/attachments`, {
      name: "incus.tar.xz",
      media_type: "application/x-xz",
      blob_digest: meta.digest,
      blob_size_bytes: build.meta.byteLength
    }, 201)
  }
  const job = await call<{ job_id: string }>("POST", `/v1/images/demo/versions/${version}/publish`, undefined, 202)
  expect((await waitForJob(api, token, job.job_id, undefined, 60_000)).state).toBe("succeeded")
}

interface LxcImage {
  readonly fingerprint: string
  readonly type: string
  readonly size: number
  readonly aliases: ReadonlyArray<{ readonly name: string }> | null
  readonly properties: Record<string, string>
}

describe("the LXD client (lxc) against imgsrv", () => {
  let dir: string
  let ca: Pem
  let server: Pem
  let dropDatabase: () => Promise<void>
  const processes: Array<ImgsrvProcess> = []
  let nginx: ReturnType<typeof execFile> | undefined
  let nginxLog = ""
  const remotes = { direct: "", proxied: "" }
  const builds: Record<string, Build & { readonly version: string; readonly variant?: string }> = {}

  const lxc = async (...args: ReadonlyArray<string>) => {
    const env = {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: dir,
      LXD_CONF: path.join(dir, "lxd-conf"),
      // The throwaway CA as the system trust store of the Go client.
      SSL_CERT_FILE: ca.certFile
    }
    try {
      return (await run("lxc", [...args], { env, timeout: 60_000 })).stdout
    } catch (error) {
      const failure = error as { stderr?: string; message: string }
      throw new Error(`lxc ${args.join(" ")} failed: ${failure.stderr ?? failure.message}\nnginx: ${nginxLog}`)
    }
  }

  beforeAll(async () => {
    dir = await tempDir("imgsrv-clients-")
    // As root, nginx's workers run as nobody and must reach their temp dirs in here.
    await chmod(dir, 0o755)
    ca = await makeCa(dir)
    server = await issueServerCert(ca, dir, "server")
    const database = await createDatabase()
    dropDatabase = database.drop

    // Replica 1 serves TLS itself; replica 2 plain HTTP behind nginx; one catalog and store.
    const [tlsPort, plainPort, nginxTlsPort, nginxHttpPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort()
    ]
    const env = {
      IMGSRV_POSTGRES_URL: database.url,
      IMGSRV_DATA_DIR: path.join(dir, "data"),
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms",
      IMGSRV_PUBLISH_WORKER_POLL_INTERVAL: "200ms"
    }
    const direct = spawnImgsrv({
      env: {
        ...env,
        IMGSRV_LISTEN: `127.0.0.1:${tlsPort}`,
        IMGSRV_TLS_CERT_FILE: server.certFile,
        IMGSRV_TLS_KEY_FILE: server.keyFile
      }
    })
    processes.push(direct)
    const [, bootstrapToken] = await direct.waitFor(/bootstrap token \(one-time\): (imgsrv_at_[A-Za-z0-9_-]+)/, 60_000)
    await direct.waitFor(/http server listening/, 60_000)
    const proxiedReplica = spawnImgsrv({ env: { ...env, IMGSRV_LISTEN: `127.0.0.1:${plainPort}` } })
    processes.push(proxiedReplica)
    await proxiedReplica.waitFor(/http server listening/, 60_000)

    // nginx with the documented server blocks, only addresses and certificate paths replaced.
    const documented = await readFile(new URL("../../deploy/nginx/imgsrv.conf", import.meta.url), "utf8")
    let site = documented
    for (
      const [from, to] of [
        ["server 127.0.0.1:8080;", `server 127.0.0.1:${plainPort};`],
        ["listen 443 ssl;", `listen 127.0.0.1:${nginxTlsPort} ssl;`],
        ["listen 80;", `listen 127.0.0.1:${nginxHttpPort};`],
        ["/etc/nginx/tls/images.crt", server.certFile],
        ["/etc/nginx/tls/images.key", server.keyFile]
      ] as const
    ) {
      expect(site.split(from).length - 1, `deploy/nginx/imgsrv.conf has "${from}" once`).toBe(1)
      site = site.replace(from, to)
    }
    const nginxDir = path.join(dir, "nginx")
    await mkdir(nginxDir, { mode: 0o755 })
    await writeFile(path.join(nginxDir, "imgsrv.conf"), site)
    const temp = (name: string) => `${name}_temp_path ${path.join(nginxDir, name)};`
    await writeFile(
      path.join(nginxDir, "nginx.conf"),
      [
        "daemon off;",
        "worker_processes 1;",
        `pid ${path.join(nginxDir, "nginx.pid")};`,
        "events { worker_connections 256; }",
        "http {",
        `  access_log ${path.join(nginxDir, "access.log")};`,
        ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((name) => `  ${temp(name)}`),
        `  include ${path.join(nginxDir, "imgsrv.conf")};`,
        "}",
        ""
      ].join("\n")
    )
    const nginxArgs = ["-p", nginxDir, "-c", path.join(nginxDir, "nginx.conf"), "-e", path.join(nginxDir, "error.log")]
    await run(NGINX, ["-t", ...nginxArgs])
    nginx = execFile(NGINX, nginxArgs)
    nginx.stderr?.on("data", (chunk: string) => (nginxLog += chunk))

    remotes.direct = `https://127.0.0.1:${tlsPort}`
    remotes.proxied = `https://127.0.0.1:${nginxTlsPort}`
    const caPem = await readFile(ca.certFile)
    const directApi = httpsApiClient(remotes.direct, caPem)
    const proxiedApi = httpsApiClient(remotes.proxied, caPem)
    for (let i = 0; (await proxiedApi.request("GET", "/healthz").catch(() => undefined))?.status !== 204; i++) {
      if (i > 100) throw new Error(`nginx did not come up: ${nginxLog}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    // The port-80 block redirects to HTTPS.
    const redirect = await fetch(`http://127.0.0.1:${nginxHttpPort}/streams/v1/index.json`, { redirect: "manual" })
    expect([redirect.status, redirect.headers.get("location")]).toEqual([
      301,
      "https://127.0.0.1/streams/v1/index.json"
    ])

    // A publisher (content-writer) and its token, through the API as an operator would.
    const admin = (method: string, url: string, json?: unknown) =>
      directApi.request(method, url, { token: bootstrapToken!, ...(json === undefined ? {} : { json }) })
    const principal = await expectStatus<{ id: string }>(
      await admin("POST", "/v1/auth/principals", { kind: "service", display_name: "lxc test publisher" }),
      201
    )
    await expectStatus(await admin("PUT", `/v1/auth/principals/${principal.id}/roles/content-writer`), 204)
    const { plaintext: token } = await expectStatus<{ plaintext: string }>(
      await admin("POST", `/v1/auth/principals/${principal.id}/api-tokens`, {
        name: "lxc test",
        expires_at: new Date(Date.now() + 3_600_000).toISOString()
      }),
      201
    )

    const images = path.join(dir, "images")
    await mkdir(images)
    const build = async (name: string, type: Build["type"], version: string, variant?: string) => {
      const meta = await metadataTarball(images, name, type)
      const root = type === "container"
        ? await squashfs(images, name)
        : await qcow2(images, name, `${16 + Object.keys(builds).length}M`)
      builds[name] = {
        type,
        meta,
        root,
        fingerprint: fingerprintOf(meta, root),
        rootFileName: type === "container" ? "rootfs.squashfs" : "disk.qcow2",
        version,
        ...(variant === undefined ? {} : { variant })
      }
      return builds[name]!
    }
    await expectStatus(await directApi.request("POST", "/v1/images", { token, json: { name: "demo" } }), 201)
    // Version 1.0 straight to imgsrv over its own TLS; 2.0 (and its variant) through nginx.
    await publish(directApi, token, "1.0", [
      await build("ct-1.0", "container", "1.0"),
      await build("vm-1.0", "virtual-machine", "1.0")
    ])
    await publish(proxiedApi, token, "2.0", [
      await build("ct-2.0", "container", "2.0"),
      await build("vm-2.0", "virtual-machine", "2.0"),
      await build("vm-2.0-cloud", "virtual-machine", "2.0", "cloud")
    ])
    await expectStatus(
      await proxiedApi.request("PUT", "/v1/images/demo/aliases/latest", { token, json: { version: "2.0" } }),
      200
    )

    await mkdir(path.join(dir, "lxd-conf"))
    await lxc("remote", "add", "direct", remotes.direct, "--protocol=simplestreams", "--public")
    await lxc("remote", "add", "proxied", remotes.proxied, "--protocol=simplestreams", "--public")
  }, 300_000)

  afterAll(async () => {
    nginx?.kill("SIGTERM")
    for (const proc of processes) await proc.stop()
    await dropDatabase?.()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  for (const remote of ["direct", "proxied"] as const) {
    describe(remote === "direct" ? "imgsrv serving TLS itself" : "through nginx (deploy/nginx/imgsrv.conf)", () => {
      it("lists every container and VM image with its fingerprint, type and aliases", async () => {
        const listed = JSON.parse(await lxc("image", "list", `${remote}:`, "--format", "json")) as Array<LxcImage>
        const expected = Object.values(builds).map((b) => [b.fingerprint, b.type]).sort()
        expect(listed.map((i) => [i.fingerprint, i.type]).sort()).toEqual(expected)
        const byFingerprint = new Map(listed.map((i) => [i.fingerprint, i]))
        const aliasesOf = (name: string) =>
          (byFingerprint.get(builds[name]!.fingerprint)!.aliases ?? []).map((a) => a.name).sort()
        // Short aliases (native architecture) and the medium `/<arch>` ones.
        expect(aliasesOf("ct-2.0")).toEqual(["demo/2.0", "demo/2.0/amd64", "demo/latest", "demo/latest/amd64"])
        expect(aliasesOf("vm-2.0")).toEqual(aliasesOf("ct-2.0"))
        expect(aliasesOf("vm-1.0")).toEqual(["demo/1.0", "demo/1.0/amd64"])
        expect(aliasesOf("vm-2.0-cloud")).toEqual([
          "demo/2.0/cloud",
          "demo/2.0/cloud/amd64",
          "demo/latest/cloud",
          "demo/latest/cloud/amd64"
        ])
        const ct = byFingerprint.get(builds["ct-2.0"]!.fingerprint)!
        expect(ct.size).toBe(builds["ct-2.0"]!.meta.byteLength + builds["ct-2.0"]!.root.byteLength)
        expect(ct.properties).toMatchObject({ os: "demo", release: "2.0", type: "squashfs", architecture: "amd64" })
      })

      it("shows image info by alias (container first, --vm for the VM) and by fingerprint prefix", async () => {
        const fingerprintIn = (info: string) => /Fingerprint: ([0-9a-f]{64})/.exec(info)?.[1]
        expect(fingerprintIn(await lxc("image", "info", `${remote}:demo/latest`))).toBe(builds["ct-2.0"]!.fingerprint)
        expect(fingerprintIn(await lxc("image", "info", `${remote}:demo/latest`, "--vm"))).toBe(
          builds["vm-2.0"]!.fingerprint
        )
        expect(fingerprintIn(await lxc("image", "info", `${remote}:demo/1.0`))).toBe(builds["ct-1.0"]!.fingerprint)
        expect(fingerprintIn(await lxc("image", "info", `${remote}:demo/latest/cloud`))).toBe(
          builds["vm-2.0-cloud"]!.fingerprint
        )
        for (const build of Object.values(builds)) {
          const info = await lxc("image", "info", `${remote}:${build.fingerprint.slice(0, 12)}`)
          expect(fingerprintIn(info)).toBe(build.fingerprint)
          expect(info).toContain(`Type: ${build.type}`)
        }
      })

      it("lists the aliases with their type and target", async () => {
        const aliases = JSON.parse(await lxc("image", "alias", "list", `${remote}:`, "--format", "json")) as Array<
          { name: string; target: string; type: string }
        >
        const target = (name: string, type: string) => aliases.find((a) => a.name === name && a.type === type)?.target
        expect(target("demo/latest", "container")).toBe(builds["ct-2.0"]!.fingerprint)
        expect(target("demo/latest", "virtual-machine")).toBe(builds["vm-2.0"]!.fingerprint)
        expect(target("demo/1.0/amd64", "virtual-machine")).toBe(builds["vm-1.0"]!.fingerprint)
        expect(target("demo/latest/cloud", "virtual-machine")).toBe(builds["vm-2.0-cloud"]!.fingerprint)
      })

      it("exports into a file and into a directory, byte for byte what was uploaded", async () => {
        const out = path.join(dir, `export-${remote}`)
        await mkdir(out)
        for (const [name, selector] of [["ct-2.0", []], ["vm-2.0", ["--vm"]], ["vm-1.0", ["--vm"]]] as const) {
          const build = builds[name]!
          const alias = `${remote}:demo/${build.version === "2.0" ? "latest" : build.version}`
          // Into a file: the metadata at the path given, the root beside it with `.root`.
          const file = path.join(out, `${name}-file`)
          await lxc("image", "export", alias, file, ...selector)
          expect(sha256(await readFile(file))).toBe(sha256(build.meta))
          expect(sha256(await readFile(`${file}.root`))).toBe(sha256(build.root))
          // Into a directory: each file under the last segment of its item path.
          const into = path.join(out, name)
          await mkdir(into)
          await lxc("image", "export", alias, `${into}/`, ...selector)
          expect((await readdir(into)).sort()).toEqual([build.rootFileName, "incus.tar.xz"].sort())
          expect(sha256(await readFile(path.join(into, "incus.tar.xz")))).toBe(sha256(build.meta))
          expect(sha256(await readFile(path.join(into, build.rootFileName)))).toBe(sha256(build.root))
        }
      })
    })
  }
})

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
