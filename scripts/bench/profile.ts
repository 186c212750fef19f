/**
 * Reading V8 CPU profiles (`.cpuprofile`, from `node --cpu-prof` or the inspector): where the
 * time goes, by owner (our sources, a package, Node internals, native) and by function.
 *
 *   npx tsx scripts/bench/profile.ts FILE.cpuprofile [--top 25] [--callers writev]
 *
 * Self time: samples whose innermost frame is there. Inclusive time: samples with the owner
 * anywhere on the stack (so shares overlap and do not sum to 100 %).
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export interface CpuProfile {
  readonly nodes: ReadonlyArray<{
    readonly id: number
    readonly callFrame: { readonly url: string; readonly functionName: string; readonly lineNumber: number }
    readonly children?: ReadonlyArray<number>
  }>
  readonly samples?: ReadonlyArray<number>
}

type Frame = CpuProfile["nodes"][number]["callFrame"]

/** Who a frame belongs to: `imgsrv src/<file>`, a package name, node internals or a native/VM bucket. */
export const ownerOf = (frame: Frame): string => {
  const { url, functionName: fn } = frame
  if (url.includes("/node_modules/")) {
    const rest = url.split("/node_modules/").pop()!.split("/")
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  if (url.includes("/src/")) return `imgsrv src/${url.split("/src/").pop()}`
  if (url.includes("/dist/")) return `imgsrv src/${url.split("/dist/").pop()!.replace(/\.js$/, ".ts")}`
  if (url.startsWith("node:")) return "node internals"
  if (fn === "(garbage collector)") return "garbage collector"
  if (fn === "(idle)") return "idle"
  if (fn === "(program)") return "program (native, I/O)"
  return url === "" ? `native ${fn}` : url
}

const frameName = (frame: Frame): string => {
  const owner = ownerOf(frame)
  const file = frame.url.includes("/node_modules/")
    ? frame.url.split("/node_modules/").pop()!
    : owner.startsWith("imgsrv ")
    ? owner.slice("imgsrv ".length)
    : frame.url
  return `${frame.functionName || "(anonymous)"}${file === "" ? "" : ` ${file}:${frame.lineNumber + 1}`}`
}

const ranked = (counts: Map<string, number>, total: number) =>
  [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([name, n]) => ({ name, share: n / total }))

/** Self time by owner and by function, and inclusive time by owner. */
export const analyse = (profile: CpuProfile) => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const selfOwner = new Map<string, number>()
  const selfFrame = new Map<string, number>()
  const inclusiveOwner = new Map<string, number>()
  const samples = profile.samples ?? []
  for (const id of samples) {
    const node = byId.get(id)
    if (node === undefined) continue
    const owner = ownerOf(node.callFrame)
    selfOwner.set(owner, (selfOwner.get(owner) ?? 0) + 1)
    const name = frameName(node.callFrame)
    selfFrame.set(name, (selfFrame.get(name) ?? 0) + 1)
    const onStack = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame
      if (frame !== undefined && frame.functionName !== "(root)") onStack.add(ownerOf(frame))
    }
    for (const o of onStack) inclusiveOwner.set(o, (inclusiveOwner.get(o) ?? 0) + 1)
  }
  const total = Math.max(samples.length, 1)
  return {
    samples: samples.length,
    selfByOwner: ranked(selfOwner, total),
    selfByFrame: ranked(selfFrame, total),
    inclusiveByOwner: ranked(inclusiveOwner, total)
  }
}

/** For samples whose innermost frame is `functionName`: the share by the nearest non-Node owner on the stack. */
export const callersOf = (profile: CpuProfile, functionName: string) => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const counts = new Map<string, number>()
  let total = 0
  for (const id of profile.samples ?? []) {
    if (byId.get(id)?.callFrame.functionName !== functionName) continue
    total++
    let owner = "(none)"
    for (let at = parent.get(id); at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame
      const o = ownerOf(frame)
      if (o !== "node internals" && !o.startsWith("native ")) {
        owner = `${o} (${frame.functionName || "anonymous"})`
        break
      }
    }
    counts.set(owner, (counts.get(owner) ?? 0) + 1)
  }
  return ranked(counts, Math.max(total, 1))
}

export const printAnalysis = (profile: CpuProfile, top: number, print: (line: string) => void) => {
  const result = analyse(profile)
  const pct = (share: number) => `${(share * 100).toFixed(1).padStart(5)} %`
  print(`  ${result.samples} samples; self time by owner (top ${top}):`)
  for (const { name, share } of result.selfByOwner.slice(0, top)) print(`    ${pct(share)}  ${name}`)
  print(`  self time by function (top ${top}):`)
  for (const { name, share } of result.selfByFrame.slice(0, top)) print(`    ${pct(share)}  ${name}`)
  print(`  inclusive time by owner (on the stack; overlapping) (top ${top}):`)
  for (const { name, share } of result.inclusiveByOwner.slice(0, top)) print(`    ${pct(share)}  ${name}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write("usage: npx tsx scripts/bench/profile.ts FILE.cpuprofile [--top N]\n")
    process.exit(2)
  }
  const at = process.argv.indexOf("--top")
  const top = at === -1 ? 25 : Number(process.argv[at + 1])
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  printAnalysis(profile, top, (line) => process.stdout.write(`${line}\n`))
  const callers = process.argv.indexOf("--callers")
  if (callers !== -1) {
    const name = process.argv[callers + 1]!
    process.stdout.write(`  samples in ${name}, by the nearest caller outside Node:\n`)
    for (const { name: owner, share } of callersOf(profile, name).slice(0, top)) {
      process.stdout.write(`    ${(share * 100).toFixed(1).padStart(5)} %  ${owner}\n`)
    }
  }
}
