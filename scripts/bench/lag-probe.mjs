/**
 * Preloaded into the imgsrv process by `scripts/bench/uploads.ts` (`node --import`), never
 * by production: measures the event-loop delay of the server itself. On SIGUSR2 it writes
 * the percentiles since the previous signal (milliseconds) to $IMGSRV_BENCH_LAG_FILE and
 * starts a new window. Plain JavaScript so the compiled server runs without a TS loader.
 */
import { writeFileSync } from "node:fs"
import { monitorEventLoopDelay } from "node:perf_hooks"

const histogram = monitorEventLoopDelay({ resolution: 5 })
histogram.enable()
const target = process.env["IMGSRV_BENCH_LAG_FILE"]

process.on("SIGUSR2", () => {
  if (target !== undefined) {
    writeFileSync(
      target,
      JSON.stringify({
        p50: histogram.percentile(50) / 1e6,
        p99: histogram.percentile(99) / 1e6,
        max: histogram.max / 1e6,
        samples: histogram.count
      })
    )
  }
  histogram.reset()
})
