#!/usr/bin/env node
// The `imgsrv` command of a checkout (`npx imgsrv <command>` after `npm install`): the
// TypeScript sources run through tsx, registered in this process, so there is no build
// step and signals (Ctrl-C, kill) reach the command itself.
import { register } from "tsx/esm/api"

register()
await import("../src/cli/main.ts")
