/**
 * The `imgsrv` binary (package.json `bin`, through bin/imgsrv.mjs): `imgsrv push|pull|
 * images|versions|inspect ...` are the publisher commands (src/cli/publisher.ts); anything
 * else — `imgsrv serve [options]`, or options alone, as `npm start` runs it — starts the
 * server (src/main.ts). Each side is loaded only when used.
 */
const PUBLISHER_COMMANDS = new Set(["push", "pull", "images", "versions", "inspect"])

const command = process.argv[2]
if (command !== undefined && PUBLISHER_COMMANDS.has(command)) {
  const { runPublisher } = await import("./publisher.js")
  runPublisher(command, process.argv.slice(3))
} else {
  await import("../main.js")
}
