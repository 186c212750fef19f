import { readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { describe, expect, it } from "vitest"

/**
 * The typed client (`imgsrv/client`) loads API declarations only: walking every runtime
 * import from src/client/index.ts reaches the client itself, the wire contract
 * (src/contract/), the root API (src/api.ts) and the domains' endpoint groups, schemas and
 * errors — never a service, repository, handler, worker or platform module, and no
 * server-only package. Type-only imports are not followed: they load no code.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))

const DECLARATION = [
  /^src\/client\//,
  /^src\/contract\//,
  /^src\/api\.ts$/,
  /^src\/[a-z-]+\/(api|schema|errors)\.ts$/
]
const ALLOWED_PACKAGES = [/^effect(\/|$)/, /^@effect\/platform(\/|$)/, /^@effect\/platform-node(\/|$)/, /^node:/]

/** The runtime imports of one module: skips `import type`, and imports whose every name is a type. */
const runtimeImports = (file: string): Array<string> => {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true)
  const found: Array<string> = []
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause
      const typeOnly = clause !== undefined && (clause.isTypeOnly || (
        clause.name === undefined && clause.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings) &&
        clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)
      ))
      if (!typeOnly) found.push(node.moduleSpecifier.text)
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && !node.isTypeOnly) {
      if (ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text)
    } else if (
      ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined && ts.isStringLiteral(node.arguments[0])
    ) {
      found.push(node.arguments[0].text)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/** Every module reachable from `entry`, with the module that first imported it. */
const graphOf = (entry: string) => {
  const modules = new Map<string, string>()
  const packages = new Map<string, string>()
  const walk = (file: string, from: string) => {
    const relative = path.relative(root, file)
    if (modules.has(relative)) return
    modules.set(relative, from)
    for (const specifier of runtimeImports(file)) {
      if (specifier.startsWith(".")) walk(path.resolve(path.dirname(file), specifier.replace(/\.js$/, ".ts")), relative)
      else packages.set(specifier, relative)
    }
  }
  walk(path.join(root, entry), "(entry)")
  return { modules, packages }
}

const violations = (entry: string) => {
  const { modules, packages } = graphOf(entry)
  return [
    ...[...modules].filter(([file]) => !DECLARATION.some((p) => p.test(file))).map(([file, from]) =>
      `${file} (imported by ${from})`
    ),
    ...[...packages].filter(([name]) => !ALLOWED_PACKAGES.some((p) => p.test(name))).map(([name, from]) =>
      `package ${name} (imported by ${from})`
    )
  ]
}

describe("the client's import graph", () => {
  it("holds API declarations only: no service, repository, handler or platform module", () => {
    const { modules } = graphOf("src/client/index.ts")
    expect(violations("src/client/index.ts")).toEqual([])
    // The walk does reach the declarations the client is derived from.
    expect([...modules.keys()]).toEqual(
      expect.arrayContaining(["src/api.ts", "src/uploads/api.ts", "src/catalog/schema.ts"])
    )
  })

  it("is what the package exports as imgsrv/client", async () => {
    const client = await import("imgsrv/client")
    expect(typeof client.uploadFile).toBe("function")
    expect(typeof client.publishVersion).toBe("function")
    expect(typeof client.download).toBe("function")
  })

  it("would name a server module the client came to import", () => {
    // The same check on the server's composition root finds what the client must not load.
    expect(violations("src/app.ts")).toEqual(expect.arrayContaining([
      expect.stringMatching(/^src\/uploads\/service\.ts /),
      expect.stringMatching(/^src\/platform\/storage\/database\.ts /),
      expect.stringMatching(/^package @effect\/sql-pg /)
    ]))
  })
})
