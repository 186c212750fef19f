/**
 * A throwaway S3 endpoint for tests: s3rver on 127.0.0.1 and a free port, silent, storing its
 * data in a fresh temp directory that `stop()` removes. Plain async (no vitest imports) so it
 * can run from vitest's globalSetup as well as from a test file's `beforeAll`.
 */
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3"
import { mkdtemp, rm } from "node:fs/promises"
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import * as path from "node:path"

/** The part of s3rver's (untyped, CommonJS) API used here. */
interface S3rverInstance {
  run(): Promise<AddressInfo>
  close(): Promise<void>
  readonly httpServer?: Server
}
type S3rverConstructor = new (options: {
  readonly address: string
  readonly port: number
  readonly silent: boolean
  readonly directory: string
  readonly resetOnClose: boolean
}) => S3rverInstance

const S3rver = createRequire(import.meta.url)("s3rver") as S3rverConstructor

export interface S3TestServer {
  /** `127.0.0.1:<port>`, no scheme (the shape `S3Options.endpoint` takes). */
  readonly endpoint: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly createBucket: (name: string) => Promise<void>
  /** Closes the listener but keeps the data, like an object store going down. */
  readonly pause: () => Promise<void>
  /** Listens again on the same port with the same data. */
  readonly resume: () => Promise<void>
  readonly stop: () => Promise<void>
}

export async function startS3Server(): Promise<S3TestServer> {
  const directory = await mkdtemp(path.join(tmpdir(), "imgsrv-s3rver-"))
  let server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory, resetOnClose: false })
  let address: AddressInfo
  try {
    address = await server.run()
  } catch (error) {
    await rm(directory, { recursive: true, force: true })
    throw error
  }
  const endpoint = `127.0.0.1:${address.port}`
  // s3rver accepts any SigV4 signature from its built-in account.
  const accessKeyId = "S3RVER"
  const secretAccessKey = "S3RVER"

  const createBucket = async (name: string): Promise<void> => {
    const client = new S3Client({
      endpoint: `http://${endpoint}`,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey }
    })
    try {
      await client.send(new CreateBucketCommand({ Bucket: name }))
    } finally {
      client.destroy()
    }
  }

  let running = true
  const pause = async (): Promise<void> => {
    if (!running) return
    running = false
    // s3rver leaves some handlers pending forever (e.g. a part whose request was aborted);
    // drop every connection so close() does not wait for them.
    server.httpServer?.closeAllConnections()
    await server.close()
  }
  const resume = async (): Promise<void> => {
    if (running) return
    server = new S3rver({ address: "127.0.0.1", port: address.port, silent: true, directory, resetOnClose: false })
    await server.run()
    running = true
  }
  const stop = async (): Promise<void> => {
    try {
      await pause()
    } finally {
      await rm(directory, { recursive: true, force: true })
    }
  }

  return { endpoint, accessKeyId, secretAccessKey, createBucket, pause, resume, stop }
}
