// `npm start`: run imgsrv from compiled JavaScript, like the container image does, so a
// source checkout is as lean as production (issue 15; figures in docs/performance.md).
//
// Running src/ through tsx costs a second Node process (the tsx CLI re-launches node with
// its loader) and a loader thread with its own V8 heap. Instead, `src/**/*.ts` is
// transpiled to `dist/` with esbuild (a dependency of tsx, so `npm install` already has
// it; type checking stays with `npm run typecheck`) whenever the sources changed since the
// last transpile — about a second, once — and `dist/main.js` is then loaded in this very
// process. Nothing is printed unless the transpile fails (stdout carries only the
// bootstrap banner).
import { build } from "esbuild"
import { createHash } from "node:crypto"
import { readdir, readFile, stat, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const src = path.join(root, "src")
const out = path.join(root, "dist")
/** What `dist/` was transpiled from: a digest of the sources' names, sizes and mtimes. */
const stampFile = path.join(out, ".transpiled-from")

const sources = async () =>
  (await readdir(src, { recursive: true }))
    .filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"))
    .sort()

const digestOf = async (files) => {
  const hash = createHash("sha256")
  // A different transpiler or launcher means a different output.
  hash.update(`esbuild:${(await import("esbuild")).version};launcher:1\n`)
  for (const file of files) {
    const st = await stat(path.join(src, file))
    hash.update(`${file}\0${st.size}\0${st.mtimeMs}\n`)
  }
  return hash.digest("hex")
}

const files = await sources()
const digest = await digestOf(files)
const stamp = await readFile(stampFile, "utf8").catch(() => "")
if (stamp.trim() !== digest) {
  try {
    await build({
      entryPoints: files.map((file) => path.join(src, file)),
      outdir: out,
      outbase: src,
      format: "esm",
      platform: "node",
      target: "node20",
      bundle: false,
      logLevel: "error"
    })
  } catch (error) {
    process.stderr.write(
      `imgsrv: could not transpile src/ to dist/: ${error instanceof Error ? error.message : error}\n`
    )
    process.exit(1)
  }
  await writeFile(stampFile, `${digest}\n`)
}

await import(pathToFileURL(path.join(out, "main.js")).href)
