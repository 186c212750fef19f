import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { NotModified } from "../contract/http.js"

/** The Incus Simple Streams documents (api.md §2.12, spec/streams.md). Anonymous. */

const StreamsDocument = Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
  identifier: "SimpleStreamsDocument"
})

export const StreamsGroup = HttpApiGroup.make("streams")
  .add(
    HttpApiEndpoint.get("getSimpleStreamsIndex", "/streams/v1/index.json")
      .addSuccess(StreamsDocument)
      .addSuccess(NotModified)
      .annotate(
        OpenApi.Description,
        "Simple Streams index: one `images` entry listing every product. Strong ETag; If-None-Match → 304."
      )
  )
  .add(
    HttpApiEndpoint.get("getSimpleStreamsImages", "/streams/v1/images.json")
      .addSuccess(StreamsDocument)
      .addSuccess(NotModified)
      .annotate(
        OpenApi.Description,
        "Simple Streams products: one product per published image version, architecture and variant, offering " +
          "a VM (qcow2 artifact → disk-kvm.img item) and/or a container (squashfs artifact → squashfs item), each " +
          "with its incus.tar.xz attachment as incus.tar.xz and lxd.tar.xz items; aliases resolved live. " +
          "Strong ETag; If-None-Match → 304."
      )
  )
  .annotate(
    OpenApi.Description,
    "Incus Simple Streams (`incus remote add <name> https://<host> --protocol simplestreams`)"
  )
