import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { RequireAuthManage } from "../auth/api.js"
import { InvalidRequest, Problem } from "../contract/problem.js"
import { GcAlreadyRunning } from "./errors.js"
import { GcReportJson, GcRequest } from "./schema.js"

/** `POST /v1/admin/gc` (`auth.manage`): one garbage collection now, or a dry run of one. */
export class GcGroup extends HttpApiGroup.make("gc")
  .add(
    HttpApiEndpoint.post("runGc", "/v1/admin/gc")
      .middleware(RequireAuthManage)
      .setPayload(GcRequest)
      .addSuccess(GcReportJson)
      .addError(Problem(InvalidRequest))
      .addError(Problem(GcAlreadyRunning))
      .annotate(
        OpenApi.Description,
        "Collects now: deletes CAS blobs that no artifact, attachment or unfinished upload references and that " +
          "have been unreferenced for longer than --gc-grace-period, leftover staging objects and orphaned " +
          "multipart uploads older than --upload-ttl, and answers the report. `dry_run: true` only counts. " +
          "409 while another collection runs (one replica collects at a time)."
      )
  )
  .annotate(OpenApi.Description, "Garbage collection")
{}
