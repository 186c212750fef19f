import pg from "pg"
import { describe, expect, it } from "vitest"
import { createDatabase } from "../support/harness.js"
import { freePort, spawnImgsrv, waitForStatus } from "../support/process.js"

/** Errors as clients and operators see them: problem+json outside, the cause in the log. */
describe("error rendering", () => {
  it("a 404 from a route is problem+json with the reason phrase as title", async () => {
    const db = await createDatabase()
    const port = await freePort()
    const proc = spawnImgsrv({
      env: { IMGSRV_POSTGRES_URL: db.url, IMGSRV_LISTEN: `127.0.0.1:${port}`, IMGSRV_METRICS_LISTEN: "" }
    })
    try {
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204)
      const missing = await fetch(`http://127.0.0.1:${port}/v1/images/nothing-here`)
      expect(missing.status).toBe(404)
      expect(missing.headers.get("content-type")).toBe("application/problem+json")
      const body = (await missing.json()) as Record<string, unknown>
      expect(Object.keys(body).sort()).toEqual(["detail", "status", "title", "type"])
      expect(body).toMatchObject({ type: "about:blank", title: "Not Found", status: 404 })
    } finally {
      await proc.stop()
      await db.drop()
    }
  })

  it("an unexpected failure is a 500 without internal text; the log has the cause and the request id", async () => {
    const db = await createDatabase()
    const port = await freePort()
    const proc = spawnImgsrv({
      env: {
        IMGSRV_POSTGRES_URL: db.url,
        IMGSRV_LISTEN: `127.0.0.1:${port}`,
        IMGSRV_METRICS_LISTEN: "",
        IMGSRV_LOG_FORMAT: "json"
      }
    })
    try {
      await waitForStatus(`http://127.0.0.1:${port}/readyz`, 204)
      // Break the catalog underneath the running server.
      const client = new pg.Client({ connectionString: db.url })
      await client.connect()
      await client.query("ALTER TABLE images RENAME TO images_secret_internal_name")
      await client.end()

      const res = await fetch(`http://127.0.0.1:${port}/v1/images`, { headers: { "x-request-id": "req-defect-1" } })
      expect(res.status).toBe(500)
      expect(res.headers.get("content-type")).toBe("application/problem+json")
      const text = await res.text()
      expect(JSON.parse(text)).toEqual({
        type: "about:blank",
        title: "Internal Server Error",
        status: 500,
        detail: "internal error"
      })
      expect(text).not.toContain("images_secret_internal_name")
      expect(text).not.toMatch(/relation|sql|stack/i)

      await proc.waitFor(/request failed with an internal error/)
      const line = proc.stderr().split("\n").find((l) => l.includes("request failed with an internal error"))!
      const record = JSON.parse(line) as Record<string, unknown>
      expect(record["request_id"]).toBe("req-defect-1")
      expect(record["level"]).toBe("error")
      expect(String(record["cause"])).toContain("images")
    } finally {
      await proc.stop()
      await db.drop()
    }
  })
})
