import { rm } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { WebhookWithSecret } from "../../src/webhooks/schema.js"
import { expectStatus } from "../catalog/fixtures.js"
import { apiClient, createDatabase, tempDir } from "../support/harness.js"
import { freePort, spawnImgsrv, waitForStatus, writerToken } from "../support/process.js"
import { uploadBlob } from "../support/uploads.js"
import { type Receiver, startReceiver, verifySignature } from "./receiver.js"

/**
 * At-least-once across a crash: imgsrv runs as a real process, is killed with SIGKILL while
 * an event's delivery is in flight (the receiver holds the request open), and the restarted
 * process delivers the event again — same webhook-id, valid signature — once the dead
 * worker's lease has run out.
 */

describe("webhook delivery across kill -9", () => {
  let receiver: Receiver
  let db: { url: string; drop: () => Promise<void> }
  let dataDir: string

  beforeAll(async () => {
    receiver = await startReceiver()
    db = await createDatabase()
    dataDir = await tempDir()
  })
  afterAll(async () => {
    await receiver?.close()
    await db?.drop()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  it("delivers the event after a restart when the process died mid-delivery", async () => {
    const port = await freePort()
    const baseUrl = `http://127.0.0.1:${port}`
    const env = {
      IMGSRV_POSTGRES_URL: db.url,
      IMGSRV_DATA_DIR: dataDir,
      IMGSRV_LISTEN: `127.0.0.1:${port}`,
      IMGSRV_METRICS_LISTEN: "",
      IMGSRV_CAS_PROMOTION_POLL_INTERVAL: "200ms",
      IMGSRV_WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true",
      IMGSRV_WEBHOOK_WORKER_POLL_INTERVAL: "100ms",
      IMGSRV_WEBHOOK_TIMEOUT: "5s",
      IMGSRV_WEBHOOK_DELIVERY_LEASE: "6s"
    }
    const first = spawnImgsrv({ env })
    let second: ReturnType<typeof spawnImgsrv> | undefined
    try {
      await waitForStatus(`${baseUrl}/readyz`, 204, 60_000)
      await first.waitFor(/imgsrv_at_/)
      const admin = first.stdout().match(/imgsrv_at_[A-Za-z0-9_-]+/)![0]
      const writer = await writerToken(baseUrl, first.stdout())
      const api = apiClient(baseUrl)
      const sub = await api.request("POST", "/v1/webhooks", {
        token: admin,
        json: { url: receiver.url, events: ["upload.ready"] }
      }).then((r) => expectStatus<WebhookWithSecret>(r, 201))

      // The receiver holds the first request open; the process dies while it waits.
      receiver.script(["hang"], 200)
      const uploaded = await uploadBlob(api, writer, new TextEncoder().encode("bytes that outlive a crash"))
      const [inFlight] = await receiver.waitFor((r) => r.length >= 1, 15_000, "the first attempt")
      expect(await first.stop("SIGKILL")).toBe("SIGKILL")

      // A fresh process; the dead worker's claim runs out (6 s lease) and it is sent again.
      second = spawnImgsrv({ env })
      await waitForStatus(`${baseUrl}/readyz`, 204, 60_000)
      const [, again] = await receiver.waitFor((r) => r.length >= 2, 60_000, "the delivery after the restart")
      expect(again!.id).toBe(inFlight!.id)
      expect(again!.event).toMatchObject({
        type: "upload.ready",
        data: { upload: { id: uploaded.uploadId, state: "ready" } }
      })
      expect(verifySignature(sub.secret, again!)).toBe(true)
      expect(again!.status).toBe(200)
      const log = await api.request("GET", `/v1/webhooks/${sub.id}/deliveries`, { token: admin })
        .then((r) => expectStatus<{ deliveries: ReadonlyArray<{ status: string; attempts: number }> }>(r, 200))
      expect(log.deliveries).toEqual([expect.objectContaining({ status: "delivered", attempts: 2 })])
      expect(receiver.received()).toHaveLength(2)
    } finally {
      await first.stop("SIGKILL")
      await second?.stop("SIGTERM")
    }
  }, 150_000)
})
