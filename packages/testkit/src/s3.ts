import { startFauxqs } from 'fauxqs'

export interface TestS3 {
  /** the emulator's endpoint, `http://127.0.0.1:<port>` (path-style addressing) */
  endpoint: string
  /** creates an empty bucket and gives its name */
  bucket(name?: string): string
  /** what the S3 adapter needs to reach a bucket on the emulator */
  options(bucket: string): {
    bucket: string
    endpoint: string
    region: string
    forcePathStyle: true
    credentials: { accessKeyId: string; secretAccessKey: string }
  }
  stop(): Promise<void>
}

let buckets = 0

/**
 * An S3-compatible endpoint on loopback for tests: the `fauxqs` emulator (npm), in this process, on
 * an ephemeral port. It speaks the S3 wire protocol (PutObject, GetObject, ListObjectsV2, multipart
 * uploads) over HTTP, so the S3 adapter runs unchanged against it. fauxqs is pinned to 1.9.2, the
 * last release that runs on Node.js 20 (2.x needs node:sqlite, Node.js 22.5+).
 */
export async function startS3Emulator(): Promise<TestS3> {
  const server = await startFauxqs({ port: 0, host: '127.0.0.1', logger: false })
  const endpoint = `http://127.0.0.1:${server.port}`
  return {
    endpoint,
    bucket(name = `moat-test-${++buckets}`) {
      server.createBucket(name)
      return name
    },
    options: (bucket) => ({
      bucket,
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    }),
    stop: () => server.stop(),
  }
}
