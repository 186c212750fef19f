// `npm start`: run imgsrv from compiled JavaScript, like the container image does, so a
// source checkout is as lean as production (issue 15; figures in docs/performance.md).
//
// Running src/ through tsx costs a second Node process (the tsx CLI re-launches node with
// its loader) and a loader thread with its own V8 heap. Instead, `src/` is transpiled to
// `dist/` when it changed (scripts/transpile.mjs, shared with bin/imgsrv.mjs) and
// `dist/main.js` is then loaded in this very process. Nothing is printed unless the
// transpile fails (stdout carries only the bootstrap banner).
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { dist, transpile } from "./transpile.mjs"

await transpile()
await import(pathToFileURL(path.join(dist, "main.js")).href)
