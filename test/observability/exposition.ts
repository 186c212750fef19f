/**
 * A small reader of the Prometheus text exposition for tests: samples with their
 * labels, and families with their type and distinct label sets.
 */

export interface PromSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  readonly text: string
  readonly samples: ReadonlyArray<PromSample>
  /** `# TYPE` of each family. */
  readonly types: ReadonlyMap<string, string>
}

const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g

export const parseExposition = (text: string): Exposition => {
  const samples: Array<PromSample> = []
  const types = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line === "") continue
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type) {
      types.set(type[1]!, type[2]!)
      continue
    }
    if (line.startsWith("#")) continue
    const match = /^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$/.exec(line)
    if (!match) throw new Error(`not an exposition line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? "").matchAll(LABEL)) labels[key!] = value!.replace(/\\(.)/g, "$1")
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return { text, samples, types }
}

export const scrapeExposition = async (url: string): Promise<Exposition> => {
  const response = await fetch(url)
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`)
  return parseExposition(await response.text())
}

const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k])
}

/** The value of the sample with exactly these labels (undefined when absent). */
export const valueOf = (e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined =>
  e.samples.find((s) => s.name === name && sameLabels(s.labels, labels))?.value

/** `valueOf`, with absent counted as 0 (a counter that has not moved yet). */
export const counterOf = (e: Exposition, name: string, labels: Record<string, string> = {}): number =>
  valueOf(e, name, labels) ?? 0

/** The sum over the samples whose labels include `labels` (other labels may vary). */
export const sumOf = (e: Exposition, name: string, labels: Record<string, string>): number =>
  e.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0)

/** The value of one series written as in the exposition, `name{a="x",b="y"}` (undefined when absent). */
export const seriesValue = (e: Exposition, series: string): number | undefined => {
  const [wanted] = parseExposition(`${series} 0`).samples
  return wanted === undefined ? undefined : valueOf(e, wanted.name, wanted.labels)
}

/** How much a counter moved between two scrapes. */
export const deltaOf = (before: Exposition, after: Exposition, name: string, labels: Record<string, string> = {}) =>
  counterOf(after, name, labels) - counterOf(before, name, labels)

/** The family a sample belongs to (histogram `_bucket`/`_sum`/`_count` fold into theirs). */
export const familyOf = (e: Exposition, sampleName: string): string => {
  if (e.types.has(sampleName)) return sampleName
  const base = sampleName.replace(/_(bucket|sum|count)$/, "")
  return e.types.has(base) ? base : sampleName
}

/** Distinct label sets (ignoring `le`/`quantile`) per family: the series count that cardinality is about. */
export const seriesPerFamily = (e: Exposition): Map<string, number> => {
  const sets = new Map<string, Set<string>>()
  for (const s of e.samples) {
    const { le: _le, quantile: _q, ...labels } = s.labels
    const family = familyOf(e, s.name)
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))
    let set = sets.get(family)
    if (!set) sets.set(family, set = new Set())
    set.add(key)
  }
  return new Map([...sets].map(([family, set]) => [family, set.size]))
}

/** The label names used by a family's samples. */
export const labelNamesOf = (e: Exposition, family: string): ReadonlyArray<string> => {
  const names = new Set<string>()
  for (const s of e.samples) {
    if (familyOf(e, s.name) !== family) continue
    for (const key of Object.keys(s.labels)) if (key !== "le" && key !== "quantile") names.add(key)
  }
  return [...names].sort()
}
