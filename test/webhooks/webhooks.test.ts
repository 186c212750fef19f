import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Webhook, WebhookWithSecret } from "../../src/webhooks/schema.js"
import {
  addArtifact,
  addAttachment,
  createDraft,
  expectProblem,
  expectStatus,
  publishVersion,
  startPublish,
  waitForJob
} from "../catalog/fixtures.js"
import { query, removeBlobBytes, seedBlob, type SeededBlob } from "../support/blobs.js"
import { startTestApp, type TestApp } from "../support/harness.js"
import {
  beginUpload,
  completeUpload,
  putPart,
  sha256Digest,
  uploadBlob,
  waitForUploadState
} from "../support/uploads.js"
import { type Received, type Receiver, signaturesMatching, startReceiver, verifySignature } from "./receiver.js"

/**
 * Webhooks end to end (issue 14): a real imgsrv, real PostgreSQL, and real HTTP
 * receivers on 127.0.0.1 that verify every signature with the Standard Webhooks algorithm
 * (written out in receiver.ts, independently of the server's code).
 */

const encoder = new TextEncoder()

/** Fast retries so the schedule is exercised without slow sleeps; private networks allowed (receivers are local). */
const FAST = {
  "webhook-allow-private-networks": "true",
  "webhook-worker-poll-interval": "50ms",
  "webhook-retry-delays": "150ms,300ms",
  "webhook-retry-window": "1m",
  "webhook-timeout": "2s",
  "webhook-delivery-lease": "5s"
} as const

interface DeliveryJson {
  readonly id: string
  readonly webhook_id: string
  readonly event_id: string
  readonly event_type: string
  readonly status: string
  readonly attempts: number
  readonly last_response_status?: number
  readonly last_error?: string
  readonly next_attempt_at?: string
  readonly last_attempt_at?: string
  readonly delivered_at?: string
}

interface EventJson {
  readonly id: string
  readonly type: string
  readonly timestamp: string
  readonly data: Record<string, unknown>
}

const subscribe = (app: TestApp, token: string, body: Record<string, unknown>) =>
  app.request("POST", "/v1/webhooks", { token, json: body }).then((r) => expectStatus<WebhookWithSecret>(r, 201))

const deliveriesOf = (app: TestApp, token: string, webhookId: string) =>
  app.request("GET", `/v1/webhooks/${webhookId}/deliveries`, { token })
    .then((r) => expectStatus<{ deliveries: ReadonlyArray<DeliveryJson> }>(r, 200))
    .then((body) => body.deliveries)

const waitForDeliveries = async (
  app: TestApp,
  token: string,
  webhookId: string,
  predicate: (deliveries: ReadonlyArray<DeliveryJson>) => boolean,
  timeoutMs = 15_000
) => {
  const deadline = Date.now() + timeoutMs
  let last: ReadonlyArray<DeliveryJson> = []
  while (Date.now() < deadline) {
    last = await deliveriesOf(app, token, webhookId)
    if (predicate(last)) return last
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`deliveries never matched: ${JSON.stringify(last)}`)
}

const putAlias = (app: TestApp, token: string, name: string, alias: string, version: string) =>
  app.request("PUT", `/v1/images/${name}/aliases/${alias}`, { token, json: { version } }).then((r) =>
    expectStatus(r, 200)
  )

const ALL_TYPES = [
  "upload.ready",
  "upload.failed",
  "version.published",
  "publish_job.failed",
  "alias.updated",
  "alias.deleted"
]

const typesOf = (received: ReadonlyArray<Received>) => received.map((r) => r.event.type)

describe("webhooks", () => {
  let app: TestApp
  let manager: string
  let writer: string
  let disk: SeededBlob
  const receivers: Array<Receiver> = []
  const receiver = async () => {
    const r = await startReceiver()
    receivers.push(r)
    return r
  }

  beforeAll(async () => {
    app = await startTestApp({ settings: FAST })
    manager = await app.tokenFor("auth-manager")
    writer = await app.tokenFor("content-writer")
    disk = await seedBlob(app, encoder.encode("webhook disk bytes"))
  })
  afterAll(async () => {
    for (const r of receivers) await r.close()
    await app?.close()
  })

  it(
    "delivers every event type of real flows once, signed, with its payload; the feed lists the same events in order",
    async () => {
      const hook = await receiver()
      const created = await subscribe(app, manager, { url: hook.url, events: ALL_TYPES, description: "all of them" })
      expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]+={0,2}$/)
      expect(Buffer.from(created.secret.slice(6), "base64").length).toBe(32)
      const shown = await app.request("GET", `/v1/webhooks/${created.id}`, { token: manager }).then((r) =>
        expectStatus<Webhook>(r, 200)
      )
      expect(shown).not.toHaveProperty("secret")
      expect(shown).toMatchObject({ url: hook.url, events: ALL_TYPES, images: [], enabled: true })
      const feedStart = await app.request("GET", "/v1/events?limit=1000", { token: writer })
        .then((r) => expectStatus<{ events: ReadonlyArray<EventJson>; next_after?: string }>(r, 200))

      // upload.ready and upload.failed: real uploads through the promotion worker.
      const good = encoder.encode("a verified upload for webhooks")
      const uploaded = await uploadBlob(app, writer, good)
      const bad = encoder.encode("bytes that do not match")
      const begun = await beginUpload(app, writer, {
        expected_digest: sha256Digest(encoder.encode("something else entirely")),
        expected_size_bytes: bad.byteLength
      })
      const part = await putPart(app, writer, begun.session.id, 1, bad)
      await completeUpload(app, writer, begun.session.id, [part])
      await waitForUploadState(app, begun.session.id, ["failed"])

      // version.published, alias.updated (created, moved, same target = no event), alias.deleted.
      await publishVersion(app, writer, { name: "hooked", version: "1.0", artifacts: [{ blob: disk }] })
      await publishVersion(app, writer, { name: "hooked", version: "2.0", artifacts: [{ blob: disk }] })
      await putAlias(app, writer, "hooked", "stable", "1.0")
      await putAlias(app, writer, "hooked", "stable", "2.0")
      await putAlias(app, writer, "hooked", "stable", "2.0")
      await expectStatus(await app.request("DELETE", "/v1/images/hooked/aliases/stable", { token: writer }), 204)

      // publish_job.failed: the incus_index step cannot read the metadata blob.
      const missing = await seedBlob(app, encoder.encode("metadata that will vanish"))
      await removeBlobBytes(app, missing)
      await createDraft(app, writer, "hooked", "3.0")
      const artifact = await addArtifact(app, writer, "hooked", "3.0", { blob: disk })
      await addAttachment(app, writer, "hooked", "3.0", artifact.id, { name: "incus.tar.xz", blob: missing })
      const job = await startPublish(app, writer, "hooked", "3.0")
      expect((await waitForJob(app, writer, job.id)).state).toBe("failed")

      const expected = [
        "upload.ready",
        "upload.failed",
        "version.published",
        "version.published",
        "alias.updated",
        "alias.updated",
        "alias.deleted",
        "publish_job.failed"
      ]
      const got = await hook.waitFor((r) => r.length >= expected.length, 20_000, "eight events")
      // Deliveries to one endpoint follow the event order.
      expect(typesOf(got)).toEqual(expected)
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(hook.received()).toHaveLength(expected.length)
      for (const request of got) {
        expect(verifySignature(created.secret, request), `signature of ${request.event.type}`).toBe(true)
        expect(request.id).toBe(request.event.id)
        expect(request.headers["content-type"]).toBe("application/json")
        expect(Math.abs(Number(request.timestamp) - Date.now() / 1000)).toBeLessThan(60)
      }
      expect(new Set(got.map((r) => r.id)).size).toBe(expected.length)

      const [ready, failed, published, , created1, moved, deleted, jobFailed] = got.map((r) => r.event)
      expect(ready!.data).toMatchObject({
        upload: { id: uploaded.uploadId, state: "ready", expected_digest: uploaded.digest },
        blob: { digest: uploaded.digest, size_bytes: good.byteLength, url: `/v1/blobs/${uploaded.digest}` },
        url: `/v1/uploads/${uploaded.uploadId}`
      })
      expect(failed!.data).toMatchObject({
        upload: { id: begun.session.id, state: "failed", failure_reason: "digest_mismatch" },
        url: `/v1/uploads/${begun.session.id}`
      })
      expect(published!.data).toMatchObject({
        image: "hooked",
        version: { version: "1.0", state: "published" },
        url: "/v1/images/hooked/versions/1.0"
      })
      expect(created1!.data).toMatchObject({
        image: "hooked",
        alias: { alias: "stable", version: "1.0" },
        version: "1.0"
      })
      expect(created1!.data).not.toHaveProperty("previous_version")
      expect(moved!.data).toMatchObject({
        version: "2.0",
        previous_version: "1.0",
        url: "/v1/images/hooked/aliases/stable"
      })
      expect(deleted!.data).toMatchObject({
        alias: { alias: "stable", version: "2.0" },
        url: "/v1/images/hooked/aliases/stable"
      })
      expect(jobFailed!.data).toMatchObject({
        image: "hooked",
        publish_job: { id: job.id, state: "failed", failed_step: "incus_index" },
        url: `/v1/publish-jobs/${job.id}`
      })

      // The feed: the same events, in the same order, after where this test started reading.
      const from = feedStart.next_after === undefined ? "" : `after=${feedStart.next_after}&`
      const feed = await app.request("GET", `/v1/events?${from}limit=1000`, { token: writer })
        .then((r) => expectStatus<{ events: ReadonlyArray<EventJson> }>(r, 200))
      const mine = new Set(got.map((r) => r.id))
      expect(feed.events.filter((e) => mine.has(e.id)).map((e) => e.id)).toEqual(got.map((r) => r.id))
      expect(feed.events.find((e) => e.id === got[0]!.id)).toEqual(got[0]!.event)

      const log = await deliveriesOf(app, manager, created.id)
      expect(log).toHaveLength(expected.length)
      expect(log.every((d) => d.status === "delivered" && d.attempts === 1 && d.last_response_status === 200)).toBe(
        true
      )
    },
    60_000
  )

  it("sends upload.ready for an upload that begins ready (its digest already trusted)", async () => {
    const hook = await receiver()
    const sub = await subscribe(app, manager, { url: hook.url, events: ["upload.ready"] })
    const begun = await beginUpload(app, writer, { expected_digest: disk.digest, expected_size_bytes: disk.size })
    expect(begun.session.state).toBe("ready")
    const mine = (r: Received) => r.event.data["url"] === `/v1/uploads/${begun.session.id}`
    const request = (await hook.waitFor((r) => r.some(mine))).find(mine)
    expect(verifySignature(sub.secret, request!)).toBe(true)
    expect(request!.event.data).toMatchObject({ upload: { id: begun.session.id, state: "ready" } })
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(hook.received().filter(mine)).toHaveLength(1)
    await expectStatus(await app.request("DELETE", `/v1/webhooks/${sub.id}`, { token: manager }), 204)
  })

  it(
    "retries a failing receiver with the same webhook-id and keeps that endpoint's order; other endpoints are not held up",
    async () => {
      const flaky = await receiver()
      const healthy = await receiver()
      flaky.script([500, 503])
      const a = await subscribe(app, manager, { url: flaky.url, events: ["alias.updated"], images: ["ordered"] })
      const b = await subscribe(app, manager, { url: healthy.url, events: ["alias.updated"], images: ["ordered"] })
      await publishVersion(app, writer, { name: "ordered", version: "1", artifacts: [{ blob: disk }] })
      await publishVersion(app, writer, { name: "ordered", version: "2", artifacts: [{ blob: disk }] })
      await putAlias(app, writer, "ordered", "first", "1")
      await putAlias(app, writer, "ordered", "second", "2")

      const healthyGot = await healthy.waitFor((r) => r.length >= 2, 10_000, "both events at the healthy endpoint")
      expect(healthyGot.map((r) => r.event.data["version"])).toEqual(["1", "2"])
      const flakyGot = await flaky.waitFor((r) => r.filter((x) => x.status === 200).length >= 2, 15_000, "retries")
      // 500, 503, then 200 for the first event; only then the second (no overtaking).
      const [firstId, secondId] = healthyGot.map((r) => r.id)
      expect(flakyGot.map((r) => [r.id, r.status])).toEqual([
        [firstId, 500],
        [firstId, 503],
        [firstId, 200],
        [secondId, 200]
      ])
      for (const r of flakyGot) expect(verifySignature(a.secret, r)).toBe(true)
      for (const r of healthyGot) expect(verifySignature(b.secret, r)).toBe(true)

      const log = await waitForDeliveries(
        app,
        manager,
        a.id,
        (d) => d.length === 2 && d.every((x) => x.status === "delivered")
      )
      const first = log.find((d) => d.event_id === firstId)!
      expect(first).toMatchObject({
        status: "delivered",
        attempts: 3,
        last_response_status: 200,
        event_type: "alias.updated"
      })
      expect(first).not.toHaveProperty("last_error")
      expect(first).not.toHaveProperty("next_attempt_at")
      const webhook = await app.request("GET", `/v1/webhooks/${a.id}`, { token: manager }).then((r) =>
        expectStatus<Webhook>(r, 200)
      )
      expect(webhook).not.toHaveProperty("failing_since")
    },
    60_000
  )

  it("counts a receiver that does not answer in time as a failed attempt, and retries it", async () => {
    const slow = await receiver()
    slow.script([], "hang")
    const sub = await subscribe(app, manager, { url: slow.url, events: ["alias.updated"], images: ["slowpoke"] })
    await publishVersion(app, writer, { name: "slowpoke", version: "1", artifacts: [{ blob: disk }] })
    await putAlias(app, writer, "slowpoke", "a", "1")
    // The receiver never answers: each attempt ends at --webhook-timeout (2 s here).
    const pending = await waitForDeliveries(app, manager, sub.id, (d) => d[0]?.last_error === "timed out")
    expect(pending[0]).not.toHaveProperty("last_response_status")
    expect(pending[0]!.last_attempt_at).toBeDefined()
    const webhook = await app.request("GET", `/v1/webhooks/${sub.id}`, { token: manager }).then((r) =>
      expectStatus<Webhook>(r, 200)
    )
    expect(webhook.failing_since).toBeDefined()
    slow.script([], 200)
    const done = await waitForDeliveries(app, manager, sub.id, (d) => d[0]?.status === "delivered")
    expect(done[0]!.attempts).toBeGreaterThanOrEqual(2)
    expect(new Set(slow.received().map((r) => r.id))).toEqual(new Set([pending[0]!.event_id]))
  }, 30_000)

  it("shows when a pending delivery is tried next", async () => {
    const down = await receiver()
    down.script([], 500)
    const sub = await subscribe(app, manager, { url: down.url, events: ["alias.updated"], images: ["later"] })
    await publishVersion(app, writer, { name: "later", version: "1", artifacts: [{ blob: disk }] })
    await putAlias(app, writer, "later", "a", "1")
    const log = await waitForDeliveries(app, manager, sub.id, (d) => d[0]?.status === "pending" && d[0].attempts > 0)
    expect(log[0]).toMatchObject({ last_response_status: 500, last_error: "HTTP 500" })
    expect(Date.parse(log[0]!.next_attempt_at!)).toBeGreaterThan(Date.parse(log[0]!.last_attempt_at!))
    await expectStatus(await app.request("DELETE", `/v1/webhooks/${sub.id}`, { token: manager }), 204)
  }, 30_000)

  it("does not follow redirects: a 302 is a failed attempt and the redirect target is never called", async () => {
    const target = await receiver()
    const redirecting = await receiver()
    redirecting.script([], { redirect: target.url })
    const sub = await subscribe(app, manager, { url: redirecting.url, events: ["alias.updated"], images: ["redir"] })
    await publishVersion(app, writer, { name: "redir", version: "1", artifacts: [{ blob: disk }] })
    await putAlias(app, writer, "redir", "a", "1")
    const log = await waitForDeliveries(app, manager, sub.id, (d) => (d[0]?.attempts ?? 0) >= 2)
    expect(log[0]).toMatchObject({ last_response_status: 302 })
    expect(log[0]!.last_error).toContain("redirects are not followed")
    expect(target.received()).toHaveLength(0)
    await expectStatus(await app.request("DELETE", `/v1/webhooks/${sub.id}`, { token: manager }), 204)
  }, 30_000)

  it("signs with both secrets for 24 h after a rotation, and shows the new secret once", async () => {
    const hook = await receiver()
    const sub = await subscribe(app, manager, { url: hook.url, events: ["alias.updated"], images: ["rotated"] })
    const rotated = await app.request("POST", `/v1/webhooks/${sub.id}/rotate-secret`, { token: manager })
    expect(rotated.headers.get("cache-control")).toBe("no-store")
    const body = await expectStatus<WebhookWithSecret>(rotated, 200)
    expect(body.secret).not.toBe(sub.secret)
    const overlapHours = (Date.parse(body.previous_secret_expires_at!) - Date.now()) / 3_600_000
    expect(overlapHours).toBeGreaterThan(23.9)
    expect(overlapHours).toBeLessThanOrEqual(24)

    await publishVersion(app, writer, { name: "rotated", version: "1", artifacts: [{ blob: disk }] })
    await putAlias(app, writer, "rotated", "a", "1")
    const [request] = await hook.waitFor((r) => r.length >= 1)
    expect(request!.signature.split(" ")).toHaveLength(2)
    expect(signaturesMatching(body.secret, request!)).toBe(1)
    expect(signaturesMatching(sub.secret, request!)).toBe(1)
    expect(verifySignature("whsec_" + Buffer.alloc(32, 7).toString("base64"), request!)).toBe(false)

    // Once the overlap is over, only the new secret signs.
    await query(app, "UPDATE webhook_subscriptions SET previous_secret_expires_at = now() WHERE id = $1", [sub.id])
    await putAlias(app, writer, "rotated", "b", "1")
    const [, later] = await hook.waitFor((r) => r.length >= 2)
    expect(later!.signature.split(" ")).toHaveLength(1)
    expect(verifySignature(body.secret, later!)).toBe(true)
    expect(verifySignature(sub.secret, later!)).toBe(false)
  }, 30_000)

  it("pings, lists the delivery log, and redelivers with the same webhook-id", async () => {
    const hook = await receiver()
    const sub = await subscribe(app, manager, { url: hook.url, events: ["alias.deleted"] })
    const ping = await app.request("POST", `/v1/webhooks/${sub.id}/ping`, { token: manager })
      .then((r) => expectStatus<DeliveryJson>(r, 202))
    expect(ping).toMatchObject({ webhook_id: sub.id, event_type: "webhook.ping", status: "pending", attempts: 0 })
    const [pinged] = await hook.waitFor((r) => r.length >= 1)
    expect(pinged!.event).toMatchObject({ type: "webhook.ping", data: { webhook_id: sub.id } })
    expect(verifySignature(sub.secret, pinged!)).toBe(true)
    const delivered = await waitForDeliveries(app, manager, sub.id, (d) => d[0]?.status === "delivered")
    expect(delivered[0]).toMatchObject({ id: ping.id, attempts: 1, last_response_status: 200 })
    expect(delivered[0]!.delivered_at).toBeDefined()

    const again = await app.request("POST", `/v1/webhooks/${sub.id}/deliveries/${ping.id}/redeliver`, {
      token: manager
    }).then((r) => expectStatus<DeliveryJson>(r, 202))
    expect(again).toMatchObject({ id: ping.id, status: "pending" })
    const both = await hook.waitFor((r) => r.length >= 2)
    expect(both[1]!.id).toBe(both[0]!.id)
    expect(verifySignature(sub.secret, both[1]!)).toBe(true)
    await waitForDeliveries(app, manager, sub.id, (d) => d[0]?.status === "delivered" && d[0].attempts === 2)

    // Pings are not events of the feed.
    const feed = await app.request("GET", "/v1/events?limit=1000", { token: writer })
      .then((r) => expectStatus<{ events: ReadonlyArray<EventJson> }>(r, 200))
    expect(feed.events.some((e) => e.id === pinged!.id)).toBe(false)

    const unknown = "00000000-0000-4000-8000-000000000000"
    await expectProblem(
      await app.request("POST", `/v1/webhooks/${sub.id}/deliveries/${unknown}/redeliver`, { token: manager }),
      404
    )
    await expectProblem(await app.request("POST", `/v1/webhooks/${unknown}/ping`, { token: manager }), 404)
    const disabled = await app.request("PATCH", `/v1/webhooks/${sub.id}`, { token: manager, json: { enabled: false } })
      .then((r) => expectStatus<Webhook>(r, 200))
    expect(disabled).toMatchObject({ enabled: false, disabled_reason: "disabled through the API" })
    await expectProblem(await app.request("POST", `/v1/webhooks/${sub.id}/ping`, { token: manager }), 409)
    await expectProblem(
      await app.request("POST", `/v1/webhooks/${sub.id}/deliveries/${ping.id}/redeliver`, { token: manager }),
      409
    )
    const enabled = await app.request("PATCH", `/v1/webhooks/${sub.id}`, { token: manager, json: { enabled: true } })
      .then((r) => expectStatus<Webhook>(r, 200))
    expect(enabled.enabled).toBe(true)
    expect(enabled).not.toHaveProperty("disabled_reason")
  }, 30_000)

  it("pages the event feed with after and limit", async () => {
    const start = await app.request("GET", "/v1/events?limit=1000", { token: writer })
      .then((r) => expectStatus<{ events: ReadonlyArray<EventJson>; next_after?: string }>(r, 200))
    await publishVersion(app, writer, { name: "paged", version: "1", artifacts: [{ blob: disk }] })
    for (const alias of ["a", "b", "c"]) await putAlias(app, writer, "paged", alias, "1")
    // Events become readable once every older transaction has ended (normally at once).
    const from = start.next_after === undefined ? "" : `after=${start.next_after}&`
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const all = await app.request("GET", `/v1/events?${from}limit=1000`, { token: writer })
        .then((r) => expectStatus<{ events: ReadonlyArray<EventJson> }>(r, 200))
      if (all.events.length >= 4) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const seen: Array<EventJson> = []
    let after = start.next_after
    for (let page = 0; page < 10; page++) {
      const cursor = after === undefined ? "" : `after=${after}&`
      const body = await app.request("GET", `/v1/events?${cursor}limit=2`, { token: writer })
        .then((r) => expectStatus<{ events: ReadonlyArray<EventJson>; next_after?: string }>(r, 200))
      expect(body.events.length).toBeLessThanOrEqual(2)
      seen.push(...body.events)
      if (body.events.length === 0) {
        expect(body.next_after).toBe(after)
        break
      }
      after = body.next_after
    }
    expect(
      seen.map((
        e
      ) => [e.type, e.data["alias"] === undefined ? e.data["image"] : (e.data["alias"] as { alias: string }).alias])
    )
      .toEqual([["version.published", "paged"], ["alias.updated", "a"], ["alias.updated", "b"], ["alias.updated", "c"]])

    await expectProblem(await app.request("GET", "/v1/events"), 401)
    const bad = await expectProblem(await app.request("GET", "/v1/events?after=nope", { token: writer }), 400)
    expect(bad.detail).toBe("after must be a UUID")
    await expectProblem(
      await app.request("GET", "/v1/events?after=00000000-0000-4000-8000-000000000000", { token: writer }),
      400
    )
    await expectProblem(await app.request("GET", "/v1/events?limit=0", { token: writer }), 400)
    await expectProblem(await app.request("GET", "/v1/events?limit=1001", { token: writer }), 400)
  }, 30_000)

  it("needs auth.manage for subscriptions and validates their bodies", async () => {
    const hook = await receiver()
    await expectProblem(await app.request("GET", "/v1/webhooks"), 401)
    await expectProblem(await app.request("GET", "/v1/webhooks", { token: writer }), 403)
    await expectProblem(
      await app.request("POST", "/v1/webhooks", { token: writer, json: { url: hook.url, events: ["alias.updated"] } }),
      403
    )
    const invalid = async (json: unknown) =>
      expectProblem(await app.request("POST", "/v1/webhooks", { token: manager, json }), 400)
    expect((await invalid({ url: hook.url, events: [] })).detail).toContain("at least one event type")
    expect((await invalid({ url: hook.url, events: ["nope"] })).detail).toContain("event type must be one of")
    await invalid({ url: hook.url, events: ["alias.updated"], extra: 1 })
    await invalid({ url: hook.url, events: ["alias.updated"], images: ["Not An Image"] })
    expect((await invalid({ url: "ftp://example.com/x", events: ["alias.updated"] })).detail).toBe(
      "url refused: only http and https URLs"
    )
    expect((await invalid({ url: "http://user:pw@example.com/", events: ["alias.updated"] })).detail).toContain(
      "credentials"
    )
    await expectProblem(await app.request("GET", "/v1/webhooks/42", { token: manager }), 400)

    const sub = await subscribe(app, manager, {
      url: hook.url,
      events: ["version.yanked", "blob.collected", "version.yanked"]
    })
    expect(sub.events).toEqual(["version.yanked", "blob.collected"])
    const list = await app.request("GET", "/v1/webhooks", { token: manager })
      .then((r) => expectStatus<{ webhooks: ReadonlyArray<Webhook> }>(r, 200))
    expect(list.webhooks.some((w) => w.id === sub.id)).toBe(true)
    expect(JSON.stringify(list)).not.toContain("whsec_")
    const patched = await app.request("PATCH", `/v1/webhooks/${sub.id}`, {
      token: manager,
      json: { events: ["alias.deleted"], images: ["x"], description: "changed" }
    }).then((r) => expectStatus<Webhook>(r, 200))
    expect(patched).toMatchObject({ events: ["alias.deleted"], images: ["x"], description: "changed" })
    const cleared = await app.request("PATCH", `/v1/webhooks/${sub.id}`, {
      token: manager,
      json: { description: null }
    })
      .then((r) => expectStatus<Webhook>(r, 200))
    expect(cleared).not.toHaveProperty("description")
    await expectStatus(await app.request("DELETE", `/v1/webhooks/${sub.id}`, { token: manager }), 204)
    await expectProblem(await app.request("GET", `/v1/webhooks/${sub.id}`, { token: manager }), 404)
    await expectProblem(await app.request("DELETE", `/v1/webhooks/${sub.id}`, { token: manager }), 404)
  })

  it("documents the routes in the OpenAPI document", async () => {
    const spec = await app.request("GET", "/openapi.json").then((r) =>
      expectStatus<{ paths: Record<string, Record<string, unknown>> }>(r, 200)
    )
    const routes = Object.entries(spec.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`))
    expect(routes).toEqual(expect.arrayContaining([
      "post /v1/webhooks",
      "get /v1/webhooks",
      "get /v1/webhooks/{webhook_id}",
      "patch /v1/webhooks/{webhook_id}",
      "delete /v1/webhooks/{webhook_id}",
      "post /v1/webhooks/{webhook_id}/rotate-secret",
      "post /v1/webhooks/{webhook_id}/ping",
      "get /v1/webhooks/{webhook_id}/deliveries",
      "post /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
      "get /v1/events"
    ]))
  })
})

describe("webhooks that keep failing", () => {
  let app: TestApp
  let manager: string
  let writer: string
  let disk: SeededBlob
  let hook: Receiver

  beforeAll(async () => {
    app = await startTestApp({
      settings: {
        ...FAST,
        "webhook-retry-delays": "100ms",
        "webhook-retry-window": "1s",
        "webhook-disable-after": "1500ms"
      }
    })
    manager = await app.tokenFor("auth-manager")
    writer = await app.tokenFor("content-writer")
    disk = await seedBlob(app, encoder.encode("failing disk"))
    hook = await startReceiver()
  })
  afterAll(async () => {
    await hook?.close()
    await app?.close()
  })

  it(
    "gives a delivery up after the retry window, lets the next one through, and disables the subscription after failing long enough",
    async () => {
      hook.script([], 500)
      const sub = await subscribe(app, manager, { url: hook.url, events: ["alias.updated"] })
      await publishVersion(app, writer, { name: "doomed", version: "1", artifacts: [{ blob: disk }] })
      await putAlias(app, writer, "doomed", "a", "1")
      await putAlias(app, writer, "doomed", "b", "1")
      // The first gives up after ~1 s; the second, which waited behind it, then gets its own window.
      const failed = await waitForDeliveries(app, manager, sub.id, (d) => d.some((x) => x.status === "failed"), 15_000)
      const first = failed.find((x) => x.status === "failed")!
      expect(first.attempts).toBeGreaterThan(2)
      expect(first.last_error).toBe("HTTP 500")
      expect(first).not.toHaveProperty("next_attempt_at")
      const disabled = await (async () => {
        const deadline = Date.now() + 15_000
        while (Date.now() < deadline) {
          const w = await app.request("GET", `/v1/webhooks/${sub.id}`, { token: manager }).then((r) =>
            expectStatus<Webhook>(r, 200)
          )
          if (!w.enabled) return w
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        throw new Error("the subscription was never disabled")
      })()
      expect(disabled.disabled_reason).toMatch(/^every delivery attempt failed since .*; last error: HTTP 500$/)
      expect(disabled.disabled_at).toBeDefined()
      // Disabled: nothing more is sent, and new events queue nothing for it.
      await new Promise((resolve) => setTimeout(resolve, 300))
      const count = hook.received().length
      await putAlias(app, writer, "doomed", "c", "1")
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(hook.received()).toHaveLength(count)
      expect((await deliveriesOf(app, manager, sub.id)).length).toBe(2)
    },
    40_000
  )
})

describe("webhook SSRF safety (private networks refused)", () => {
  let app: TestApp
  let manager: string
  let hook: Receiver

  beforeAll(async () => {
    app = await startTestApp({
      settings: {
        ...FAST,
        "webhook-allow-private-networks": "false",
        "webhook-retry-delays": "10m",
        "webhook-retry-window": "24h"
      }
    })
    manager = await app.tokenFor("auth-manager")
    hook = await startReceiver()
  })
  afterAll(async () => {
    await hook?.close()
    await app?.close()
  })

  it("refuses loopback, private, link-local, metadata and reserved targets at creation", async () => {
    const refused = async (url: string) => {
      const problem = await expectProblem(
        await app.request("POST", "/v1/webhooks", { token: manager, json: { url, events: ["alias.updated"] } }),
        400
      )
      return problem.detail ?? ""
    }
    expect(await refused(hook.url)).toBe("url refused: 127.0.0.1 is a loopback address")
    expect(await refused(`http://localhost:${hook.port}/`)).toMatch(
      /^url refused: localhost resolves to .*loopback address$/
    )
    expect(await refused("http://169.254.169.254/latest/meta-data/")).toContain("link-local")
    expect(await refused("http://[fd00:ec2::254]/")).toContain("private")
    expect(await refused("http://100.100.100.200/")).toContain("carrier-grade NAT")
    expect(await refused("http://10.1.2.3/")).toContain("private")
    expect(await refused("http://192.168.0.10/")).toContain("private")
    expect(await refused("http://172.20.0.1/")).toContain("private")
    expect(await refused("http://[::1]:8080/")).toContain("loopback")
    expect(await refused("http://[::ffff:127.0.0.1]/")).toContain("loopback")
    expect(await refused("http://0x7f000001/")).toContain("loopback")
    expect(await refused("http://0.0.0.0/")).toContain("unspecified")
    expect(await refused("http://[fe80::1]/")).toContain("link-local")
    expect(await refused("http://224.0.0.1/")).toContain("multicast")
    expect(await refused("https://no-such-host.invalid/")).toBe(
      "url refused: host no-such-host.invalid does not resolve"
    )
    // A public address is accepted (nothing is sent to it here).
    const ok = await subscribe(app, manager, { url: "https://93.184.215.14/hook", events: ["version.retired"] })
    expect(ok.url).toBe("https://93.184.215.14/hook")
    await expectProblem(
      await app.request("PATCH", `/v1/webhooks/${ok.id}`, { token: manager, json: { url: hook.url } }),
      400
    )
  })

  it("refuses again at connect time: a host that resolves to loopback only when delivering is never called", async () => {
    // What a DNS rebinding looks like from here: the name passed the creation check, and now
    // resolves to 127.0.0.1. (Written to the database directly: no public name rebinds on cue.)
    const id = "0f0e0d0c-0b0a-4908-8706-050403020100"
    await query(
      app,
      `INSERT INTO webhook_subscriptions (id, url, event_types, secret) VALUES ($1, $2, '{alias.updated}', $3)`,
      [id, `http://localhost:${hook.port}/hook`, "whsec_" + Buffer.alloc(32, 1).toString("base64")]
    )
    await app.request("POST", `/v1/webhooks/${id}/ping`, { token: manager }).then((r) => expectStatus(r, 202))
    const literal = "1f0e0d0c-0b0a-4908-8706-050403020100"
    await query(
      app,
      `INSERT INTO webhook_subscriptions (id, url, event_types, secret) VALUES ($1, $2, '{alias.updated}', $3)`,
      [literal, hook.url, "whsec_" + Buffer.alloc(32, 2).toString("base64")]
    )
    await app.request("POST", `/v1/webhooks/${literal}/ping`, { token: manager }).then((r) => expectStatus(r, 202))

    const byName = await waitForDeliveries(app, manager, id, (d) => d[0]?.last_error !== undefined)
    expect(byName[0]).toMatchObject({ status: "pending", attempts: 1 })
    expect(byName[0]!.last_error).toMatch(/^refused: localhost resolves to .*, a loopback address$/)
    expect(byName[0]).not.toHaveProperty("last_response_status")
    const byLiteral = await waitForDeliveries(app, manager, literal, (d) => d[0]?.last_error !== undefined)
    expect(byLiteral[0]!.last_error).toBe("refused: 127.0.0.1 is a loopback address")
    expect(hook.received()).toHaveLength(0)
  })
})
