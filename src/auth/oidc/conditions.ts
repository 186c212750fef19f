import { type ASTNode, Environment } from "@marcbachmann/cel-js"
import { Either } from "effect"

/**
 * CEL conditions of OIDC provisioning rules (spec/auth.md §5.4), evaluated with
 * `@marcbachmann/cel-js`: a typed environment, custom functions and a static type
 * check, so a condition that does not produce exactly `bool` is refused when the rule
 * is saved instead of failing at every login.
 *
 * Variables: `identity` (map<string,string>: provider, subject, credential_id) and
 * `claims` (map<string,dyn>: only the forwarded claims present in the token).
 * Functions: `hasAny(value, list<string>)` and `hasToken(value, string)`.
 *
 * Evaluation fails closed: an error (e.g. a claim the token lacks) or a non-bool is
 * `false`. The library has no runtime cost counter (cel-go's limit is 10 000), so
 * cost is bounded statically: at most 4096 bytes of text, 1000 AST nodes, and no
 * comprehension (`all`, `exists`, `map`, …) nested inside another — so the work of
 * one evaluation is linear in the size of the (signed, header-sized) claims.
 */

export const MAX_CONDITION_BYTES = 4096

const MAX_AST_NODES = 1000

const COMPREHENSIONS = new Set(["all", "exists", "exists_one", "map", "filter"])

const stringsOf = (value: unknown): ReadonlyArray<string> =>
  typeof value === "string"
    ? [value]
    : Array.isArray(value)
    ? value.filter((v): v is string => typeof v === "string")
    : []

/** True when `value` is a string in `accepted`, or a list holding at least one string in it. */
export const hasAny = (value: unknown, accepted: unknown): boolean => {
  const wanted = new Set(stringsOf(accepted))
  return wanted.size > 0 && stringsOf(value).some((v) => wanted.has(v))
}

/** True when the whitespace-separated words of `value` (a string or a list of strings) include `token`. */
export const hasToken = (value: unknown, token: unknown): boolean =>
  typeof token === "string" && token !== "" &&
  stringsOf(value).some((text) => text.split(/\s+/).includes(token))

const environment = new Environment({ limits: { maxAstNodes: MAX_AST_NODES, maxDepth: 64 } })
  .registerVariable("identity", "map<string, string>")
  .registerVariable("claims", "map<string, dyn>")
  .registerFunction("hasAny(dyn, list<string>): bool", (value: unknown, accepted: unknown) => hasAny(value, accepted))
  .registerFunction("hasToken(dyn, string): bool", (value: unknown, token: unknown) => hasToken(value, token))

/** What a condition sees of an authenticated OIDC identity. */
export interface ConditionInput {
  readonly identity: { readonly provider: string; readonly subject: string; readonly credential_id: string }
  readonly claims: Readonly<Record<string, unknown>>
}

export interface CompiledCondition {
  readonly text: string
  /** True only when the condition evaluates to the boolean `true`. */
  readonly matches: (input: ConditionInput) => boolean
}

const firstLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split("\n")[0]!.trim()

const byteLength = (text: string) => Buffer.byteLength(text, "utf8")

/** The deepest nesting of comprehension macros in `node`. */
const comprehensionDepth = (node: unknown): number => {
  if (Array.isArray(node)) return Math.max(0, ...node.map(comprehensionDepth))
  if (node === null || typeof node !== "object" || !("op" in node)) return 0
  const ast = node as ASTNode
  const inner = comprehensionDepth(ast.args)
  const isComprehension = ast.op === "rcall" && Array.isArray(ast.args) && typeof ast.args[0] === "string" &&
    COMPREHENSIONS.has(ast.args[0])
  return isComprehension ? inner + 1 : inner
}

type Parsed = ReturnType<typeof environment.parse>

const parse = (text: string): Either.Either<Parsed, string> => {
  try {
    return Either.right(environment.parse(text))
  } catch (error) {
    return Either.left(`condition is invalid: ${firstLine(error)}`)
  }
}

/**
 * Checks an operator's condition: non-empty, ≤ 4096 bytes, valid CEL over the
 * environment, of type exactly `bool`, within the cost bounds. Left = the 400 detail.
 */
export const checkCondition = (text: string): Either.Either<Parsed, string> =>
  Either.gen(function*() {
    if (text.trim() === "") return yield* Either.left("condition is required")
    if (byteLength(text) > MAX_CONDITION_BYTES) {
      return yield* Either.left(`condition exceeds ${MAX_CONDITION_BYTES} bytes`)
    }
    const parsed = yield* parse(text)
    const checked = parsed.check()
    if (!checked.valid) return yield* Either.left(`condition is invalid: ${firstLine(checked.error)}`)
    if (checked.type !== "bool") {
      return yield* Either.left(`condition must produce bool, not ${checked.type ?? "an unknown type"}`)
    }
    if (comprehensionDepth(parsed.ast) > 1) {
      return yield* Either.left("condition is too expensive: comprehensions may not be nested")
    }
    return parsed
  })

/** `hasAny(claims.aud, ["<audience>"]) && (<condition>)` — the audience guard every stored condition carries. */
export const guardedCondition = (audience: string, condition: string): string => `${guardPrefix(audience)}${condition})`

// JSON string syntax is a valid CEL string literal (same escapes), so any audience quotes safely.
const guardPrefix = (audience: string) => `hasAny(claims.aud, [${JSON.stringify(audience)}]) && (`

/** The operator's condition back from a stored, guarded one. */
export const unguardedCondition = (audience: string, stored: string): string => {
  const prefix = guardPrefix(audience)
  return stored.startsWith(prefix) && stored.endsWith(")") ? stored.slice(prefix.length, -1) : stored
}

/**
 * Checks the guarded form as well: it must still be a conjunction whose left side is
 * exactly the audience guard. An operator condition that only parses when glued to
 * the guard (e.g. `x) || (true`) is refused here, so no rule can skip the audience.
 */
export const checkGuardedCondition = (audience: string, condition: string): Either.Either<string, string> =>
  Either.gen(function*() {
    yield* checkCondition(condition)
    const guarded = guardedCondition(audience, condition)
    const parsed = yield* Either.mapLeft(parse(guarded), () => INCOMPLETE)
    const root = parsed.ast
    const guardOnly = yield* parse(`hasAny(claims.aud, [${JSON.stringify(audience)}])`)
    const sameGuard = root.op === "&&" && Array.isArray(root.args) &&
      JSON.stringify(stripPositions((root.args as ReadonlyArray<unknown>)[0])) ===
        JSON.stringify(stripPositions(guardOnly.ast))
    if (!sameGuard || byteLength(guarded) > MAX_CONDITION_BYTES + 1024) {
      return yield* Either.left(INCOMPLETE)
    }
    const checked = parsed.check()
    if (!checked.valid || checked.type !== "bool") {
      return yield* Either.left(INCOMPLETE)
    }
    return guarded
  })

const INCOMPLETE =
  "condition is invalid: it must be one complete expression (no unbalanced parentheses, no trailing comment)"

const stripPositions = (node: unknown): unknown => {
  if (Array.isArray(node)) return node.map(stripPositions)
  if (node === null || typeof node !== "object") return typeof node === "bigint" ? node.toString() : node
  if (!("op" in node)) return node
  const ast = node as { op: unknown; args: unknown }
  return { op: ast.op, args: stripPositions(ast.args) }
}

const cache = new Map<string, CompiledCondition>()
const CACHE_LIMIT = 512

/**
 * Compiles a stored (guarded) condition for evaluation, cached by its text. A stored
 * condition that no longer compiles never matches.
 */
export const compileCondition = (text: string): CompiledCondition => {
  const cached = cache.get(text)
  if (cached) return cached
  const parsed = parse(text)
  const compiled: CompiledCondition = {
    text,
    matches: Either.isLeft(parsed)
      ? () => false
      : (input) => {
        try {
          return parsed.right({ identity: input.identity, claims: input.claims }) === true
        } catch {
          return false
        }
      }
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!)
  cache.set(text, compiled)
  return compiled
}
