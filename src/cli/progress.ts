import type { ClientEvent, EventSink } from "../client/events.js"
import { formatBytes } from "./args.js"

/**
 * How push and pull report while they work:
 * - `--json`: every event but `progress` as one JSON object per line on stdout, nothing else there;
 * - a terminal (stderr is a TTY): one live bar per file — phase, bytes, rate, ETA — redrawn in place;
 * - otherwise (a pipe, a CI log): one plain line per milestone, and a progress line at most
 *   every 5 seconds.
 */

export interface Reporter {
  readonly sink: EventSink
  /** A line for a person (stderr; suppressed under --json). */
  readonly note: (line: string) => void
  /** Leaves the terminal clean (final bars drawn). */
  readonly close: () => void
}

const LINE_INTERVAL_MS = 5_000
const REDRAW_INTERVAL_MS = 100

interface Bar {
  phase: string
  done: number
  total: number
  /** When the current phase started, and its bytes then (rate and ETA are per phase). */
  since: number
  from: number
  finished: string | undefined
}

/** Moves a file's bar to `event`: a new phase starts a new bar (its rate counts from here). */
const track = (
  bars: Map<string, Bar>,
  event: Extract<ClientEvent, { readonly event: "progress" }>,
  t: number
): void => {
  const bar = bars.get(event.file)
  if (bar === undefined || bar.phase !== event.phase) {
    bars.set(event.file, {
      phase: event.phase,
      done: event.done_bytes,
      total: event.total_bytes,
      since: t,
      from: event.done_bytes,
      finished: undefined
    })
  } else bar.done = event.done_bytes
}

const rateOf = (bar: Bar, now: number) => {
  const seconds = (now - bar.since) / 1000
  return seconds > 0 ? (bar.done - bar.from) / seconds : 0
}

const describe = (file: string, bar: Bar, now: number, width: number | undefined) => {
  if (bar.finished !== undefined) return `${file}  ${bar.finished}`
  const rate = rateOf(bar, now)
  const percent = bar.total === 0 ? 100 : Math.floor((bar.done / bar.total) * 100)
  const eta = rate > 0 ? `ETA ${Math.ceil((bar.total - bar.done) / rate)}s` : "ETA -"
  const numbers = `${formatBytes(bar.done)} / ${formatBytes(bar.total)}  ${formatBytes(rate)}/s  ${eta}`
  if (width === undefined) return `${file}: ${bar.phase} ${percent}%  ${numbers}`
  const cells = 20
  const filled = Math.min(cells, Math.floor((percent / 100) * cells))
  const line = `${file}  ${bar.phase.padEnd(11)} [${"#".repeat(filled)}${" ".repeat(cells - filled)}] ${
    String(percent).padStart(3)
  }%  ${numbers}`
  return line.length > width ? line.slice(0, width - 1) : line
}

const milestone = (event: ClientEvent): string | undefined => {
  switch (event.event) {
    case "hashing":
      return event.cached ? `${event.file}: digest known from an earlier run` : undefined
    case "uploaded":
      return `${event.file}: ${event.parts_sent} part(s) sent, ${event.parts_skipped} already on the server; verifying`
    case "ready":
      return event.already_stored
        ? `${event.file}: already stored as ${event.digest}`
        : `${event.file}: verified as ${event.digest}`
    case "published":
      return event.already_published
        ? `${event.image}:${event.version}: already published`
        : `${event.image}:${event.version}: published (job ${event.job_id})`
    case "draft":
      return `${event.image}:${event.version}: left as a draft`
    case "alias":
      return `${event.image}:${event.alias} -> ${event.version}`
    case "downloaded":
      return `${event.file}: sha256 verified${
        event.resumed_from > 0 ? ` (resumed at ${formatBytes(event.resumed_from)})` : ""
      }`
    case "part":
    case "progress":
      return undefined
  }
}

export const jsonReporter = (write: (text: string) => void): Reporter => ({
  sink: (event) => {
    if (event.event !== "progress") write(`${JSON.stringify(event)}\n`)
  },
  note: () => {},
  close: () => {}
})

export const lineReporter = (write: (text: string) => void, now: () => number = Date.now): Reporter => {
  let lastLine = now()
  const bars = new Map<string, Bar>()
  return {
    sink: (event) => {
      if (event.event === "progress") {
        const t = now()
        track(bars, event, t)
        if (t - lastLine >= LINE_INTERVAL_MS) {
          lastLine = t
          write(`${describe(event.file, bars.get(event.file)!, t, undefined)}\n`)
        }
        return
      }
      const line = milestone(event)
      if (line !== undefined) write(`${line}\n`)
    },
    note: (line) => write(`${line}\n`),
    close: () => {}
  }
}

export const ttyReporter = (stream: NodeJS.WriteStream, now: () => number = Date.now): Reporter => {
  const bars = new Map<string, Bar>()
  let drawn = 0
  let lastDraw = 0
  const draw = (force: boolean) => {
    const t = now()
    if (!force && t - lastDraw < REDRAW_INTERVAL_MS) return
    lastDraw = t
    const width = stream.columns ?? 100
    let text = drawn > 0 ? `\x1b[${drawn}F` : ""
    for (const [file, bar] of bars) text += `\x1b[2K${describe(file, bar, t, width)}\n`
    drawn = bars.size
    stream.write(text)
  }
  const above = (line: string) => {
    // Milestones scroll above the bars: clear the bars, print, redraw them below.
    stream.write(`${drawn > 0 ? `\x1b[${drawn}F\x1b[0J` : ""}${line}\n`)
    drawn = 0
    draw(true)
  }
  return {
    sink: (event) => {
      const t = now()
      if (event.event === "progress") {
        track(bars, event, t)
        draw(false)
        return
      }
      if (event.event === "ready" || event.event === "downloaded") {
        const bar = bars.get(event.file)
        if (bar !== undefined) bar.finished = event.event === "ready" ? `ready ${event.digest}` : "downloaded, verified"
      }
      const line = milestone(event)
      if (line !== undefined) above(line)
      else draw(false)
    },
    note: above,
    close: () => draw(true)
  }
}
