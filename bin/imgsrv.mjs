#!/usr/bin/env node
// The `imgsrv` command of a checkout (`npx imgsrv <command>` after `npm install`): like
// `npm start`, it runs the JavaScript in dist/, transpiled from src/ when the sources changed
// (scripts/transpile.mjs: about a second, once; no build step), and loads it in this very
// process, so signals (Ctrl-C, kill) reach the command itself. Running src/ through tsx
// instead kept esbuild's service and tsx's loader thread in every command's memory.
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { setFlagsFromString } from "node:v8"
import { dist, transpile } from "../scripts/transpile.mjs"

// A short-lived command trades V8's speed-ups for memory: a smaller young generation and less
// optimized code (what `npm start` and the container pass on the command line, set here
// because a `bin` cannot take node options). Measured in docs/publishers.md: `imgsrv images`
// peaks at 97 instead of 119 MiB, a push at about 125 instead of 160 MiB, no slower.
setFlagsFromString("--optimize-for-size")

await transpile()
await import(pathToFileURL(path.join(dist, "cli", "main.js")).href)
