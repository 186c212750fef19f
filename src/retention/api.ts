import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { RequireContentWrite } from "../auth/api.js"
import { ImageNotFound } from "../catalog/errors.js"
import { InvalidRequest, Problem } from "../contract/problem.js"
import { RetentionPreview, RetentionRules, RetentionRulesNotFound, RetentionRulesRequest } from "./schema.js"

/** `/v1/images/{name}/retention`: an image's retention rules and the preview of their next run. */

const NamePath = Schema.Struct({ name: Schema.String })

export const RetentionGroup = HttpApiGroup.make("retention")
  // Every retention route validates the image name (and PUT its body).
  .addError(Problem(InvalidRequest))
  .add(
    HttpApiEndpoint.put("putRetention", "/v1/images/:name/retention")
      .middleware(RequireContentWrite)
      .setPath(NamePath)
      .setPayload(RetentionRulesRequest)
      .addSuccess(RetentionRules)
      .addError(Problem(ImageNotFound))
      .annotate(
        OpenApi.Description,
        "Sets (replaces) the image's retention rules, each optional: `keep_last` (the newest N published versions " +
          "are never yanked), `yank_older_than` and `retire_yanked_after` (durations like `90d`: s, m, h, d, w). " +
          "The worker applies them soon, then every `--retention-interval`; a version an alias points at is " +
          "never touched."
      )
  )
  .add(
    HttpApiEndpoint.get("getRetention", "/v1/images/:name/retention")
      .middleware(RequireContentWrite)
      .setPath(NamePath)
      .addSuccess(RetentionRules)
      .addError(Problem(ImageNotFound))
      .addError(Problem(RetentionRulesNotFound))
      .annotate(OpenApi.Description, "The image's retention rules; 404 when none are set.")
  )
  .add(
    HttpApiEndpoint.get("previewRetention", "/v1/images/:name/retention/preview")
      .middleware(RequireContentWrite)
      .setPath(NamePath)
      .addSuccess(RetentionPreview)
      .addError(Problem(ImageNotFound))
      .addError(Problem(RetentionRulesNotFound))
      .annotate(
        OpenApi.Description,
        "Exactly what the next run of the rules would yank and retire if it ran now (the worker computes its " +
          "run with the same function)."
      )
  )
  .annotate(OpenApi.Description, "Retention rules: yank and retire old versions automatically")
