// The transpile shared by `npm start` (scripts/start.mjs) and the `imgsrv` command of a
// checkout (bin/imgsrv.mjs): `src/**/*.ts` to `dist/` with esbuild (a dependency of tsx, so
// `npm install` already has it; type checking stays with `npm run typecheck`), only when the
// sources changed since the last transpile — about a second, once. Both then load the
// JavaScript in their own process, so there is no build step, no second process, and signals
// (Ctrl-C, kill) reach the command itself.
//
// Several processes may start on a stale `dist/` at once (a test suite running the server and
// the CLI, two shells): each transpiles into a directory of its own and renames the files into
// place one by one, so a module is always read whole, and the stamp is written last.
import { createHash } from "node:crypto"
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const src = path.join(root, "src")
/** Where the JavaScript goes. */
export const dist = path.join(root, "dist")
/** What `dist/` was transpiled from: a digest of the sources' names, sizes and mtimes. */
const stampFile = path.join(dist, ".transpiled-from")

const sources = async () =>
  (await readdir(src, { recursive: true }))
    .filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"))
    .sort()

/**
 * esbuild's version, read from its package.json: loading esbuild itself (its JavaScript API)
 * is left to the runs that transpile, which keeps it out of every command's memory.
 */
const esbuildVersion = async () =>
  JSON.parse(await readFile(createRequire(import.meta.url).resolve("esbuild/package.json"), "utf8")).version

const digestOf = async (files) => {
  const hash = createHash("sha256")
  // A different transpiler or launcher means a different output.
  hash.update(`esbuild:${await esbuildVersion()};launcher:2\n`)
  const stats = await Promise.all(files.map((file) => stat(path.join(src, file))))
  files.forEach((file, i) => hash.update(`${file}\0${stats[i].size}\0${stats[i].mtimeMs}\n`))
  return hash.digest("hex")
}

/** Moves every file under `from` to the same place under `to`. */
const moveInto = async (from, to) => {
  for (const entry of await readdir(from, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const relative = path.relative(from, path.join(entry.parentPath ?? entry.path, entry.name))
    await rename(path.join(from, relative), path.join(to, relative)).catch(async (error) => {
      if (error.code !== "ENOENT") throw error
      // The first transpile of this directory: its folder is not there yet.
      await mkdir(path.dirname(path.join(to, relative)), { recursive: true })
      await rename(path.join(from, relative), path.join(to, relative))
    })
  }
}

/**
 * Makes `dist/` the JavaScript of the current `src/`, transpiling when a source changed.
 * Prints nothing unless the transpile fails, then one line on stderr and exits 1.
 */
export const transpile = async () => {
  const files = await sources()
  const digest = await digestOf(files)
  const stamp = await readFile(stampFile, "utf8").catch(() => "")
  if (stamp.trim() === digest) return
  await mkdir(dist, { recursive: true })
  const scratch = await mkdtemp(path.join(dist, ".transpiling-"))
  try {
    const { build } = await import("esbuild")
    await build({
      entryPoints: files.map((file) => path.join(src, file)),
      outdir: scratch,
      outbase: src,
      format: "esm",
      platform: "node",
      target: "node20",
      bundle: false,
      logLevel: "error"
    })
    await moveInto(scratch, dist)
  } catch (error) {
    await rm(scratch, { recursive: true, force: true })
    process.stderr.write(
      `imgsrv: could not transpile src/ to dist/: ${error instanceof Error ? error.message : error}\n`
    )
    process.exit(1)
  }
  await rm(scratch, { recursive: true, force: true })
  await writeFile(stampFile, `${digest}\n`)
}
