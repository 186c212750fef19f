import { Layer } from "effect"
import { AuthenticationLive } from "./authentication.js"
import { AuthBootstrapLive } from "./bootstrap.js"
import { AuthHandlersLive } from "./http.js"
import { AuthorizationLive } from "./middleware.js"
import { OidcAuthenticatorsLive } from "./oidc/authenticator.js"
import { OidcHttpLive } from "./oidc/http.js"
import { OidcVerifierLive } from "./oidc/verifier.js"
import { AuthRepositoryLive } from "./repository.js"
import { AuthManagementLive } from "./service.js"

/**
 * How the auth pieces fit together, so `app.ts` adds two layers and nothing else:
 * API tokens first, then OIDC JWTs (through `BearerAuthenticators`), behind the two
 * security middlewares; the management service; the repository (also exported for
 * handlers of other concerns that might need it). Needs `SqlClient` and `AppConfig`.
 */
const Storage = Layer.merge(AuthRepositoryLive, OidcHttpLive)

const Authentication = AuthenticationLive.pipe(
  Layer.provide(OidcAuthenticatorsLive),
  Layer.provide(OidcVerifierLive)
)

// `Authentication` is an output too: a handler may authorize a second action (retiring a
// published version needs auth.manage on a content.write route, catalog/http.ts).
export const AuthLive = Layer.mergeAll(AuthorizationLive, AuthManagementLive).pipe(
  Layer.provideMerge(Authentication),
  Layer.provideMerge(Storage)
)

/** Start-up bootstrap of the first auth-manager (after migrations, before serving). */
export const AuthStartupLive = AuthBootstrapLive.pipe(Layer.provide(AuthRepositoryLive))

/**
 * The `auth` handler group. Its service comes with `AuthLive`, which the app provides to
 * every group, since every group's security middleware is implemented there.
 */
export const AuthApiLive = AuthHandlersLive

/** Nothing: auth has no loop of its own (the bootstrap is `AuthStartupLive`, run once). */
export const AuthBackgroundLive = Layer.empty
