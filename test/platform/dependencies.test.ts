import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"

/**
 * Unpinned `@effect/*` installs now pull the incompatible effect 4.x line. The
 * lockfile must hold exactly one `effect`, on the 3.x line, and package.json must pin
 * every Effect package exactly.
 */
describe("dependencies", () => {
  const lock = JSON.parse(readFileSync(new URL("../../package-lock.json", import.meta.url), "utf8")) as {
    packages: Record<string, { version?: string }>
  }
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    dependencies: Record<string, string>
    devDependencies: Record<string, string>
    overrides: Record<string, string>
  }

  it("the lockfile holds exactly one effect, on the 3.x line", () => {
    const effects = Object.entries(lock.packages)
      .filter(([path]) => path === "node_modules/effect" || path.endsWith("/node_modules/effect"))
      .map(([path, entry]) => ({ path, version: entry.version }))
    expect(effects).toHaveLength(1)
    expect(effects[0]!.version).toMatch(/^3\./)
  })

  it("pins effect and every @effect package to an exact version, with an override for effect", () => {
    const all = { ...pkg.dependencies, ...pkg.devDependencies }
    for (const [name, range] of Object.entries(all)) {
      if (name === "effect" || name.startsWith("@effect/")) expect(range, name).toMatch(/^\d+\.\d+\.\d+$/)
    }
    expect(pkg.overrides["effect"]).toBe(all["effect"])
  })
})

describe("lockfile completeness", () => {
  it("has an entry for every optional platform package it names, so `npm ci` accepts it", () => {
    const lock = JSON.parse(readFileSync(new URL("../../package-lock.json", import.meta.url), "utf8")) as {
      packages: Record<string, { optionalDependencies?: Record<string, string> }>
    }
    const missing: Array<string> = []
    for (const [path, entry] of Object.entries(lock.packages)) {
      for (const name of Object.keys(entry.optionalDependencies ?? {})) {
        const nested = `${path === "" ? "" : `${path}/`}node_modules/${name}`
        if (!lock.packages[nested] && !lock.packages[`node_modules/${name}`]) missing.push(`${path} -> ${name}`)
      }
    }
    expect(missing).toEqual([])
  })
})
