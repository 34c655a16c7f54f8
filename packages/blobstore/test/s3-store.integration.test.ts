import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// the file directly: the testkit index pulls in the whole stack
import { startS3Emulator, type TestS3 } from '../../testkit/src/s3'
import { S3ObjectStore } from '../src/index'
import { objectStoreContract } from './contract'

/**
 * The S3 adapter against a real S3 wire-protocol endpoint on loopback: the `fauxqs` emulator (npm),
 * started in this process on an ephemeral port. No AWS account or network is involved; what the
 * emulator does not implement (server-side encryption is accepted and ignored) is said below.
 */

let s3: TestS3
beforeAll(async () => {
  s3 = await startS3Emulator()
})
afterAll(async () => {
  await s3?.stop()
})

/**
 * Unfinished multipart uploads left in the bucket. Limitation of the emulator: fauxqs 1.9.2 answers
 * ListMultipartUploads with an empty list even while an upload is open, so on it this check cannot
 * catch a leaked upload (the adapter aborts failed uploads: `leavePartsOnError: false`); against
 * MinIO or AWS it does.
 */
async function unfinishedUploads(store: S3ObjectStore, bucket: string): Promise<string[]> {
  const out = await store.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
  return (out.Uploads ?? []).map((u) => u.Key ?? '')
}

for (const prefix of ['', 'tenant-data/']) {
  objectStoreContract(
    `S3ObjectStore on the fauxqs emulator${prefix ? `, prefix ${prefix}` : ''}`,
    async () => {
      const bucket = s3.bucket()
      // parts of 5 MiB, S3's minimum: the 5 MB contract test goes up as a multipart upload
      const store = new S3ObjectStore({ ...s3.options(bucket), prefix, partSize: 5 * 1024 * 1024 })
      return { store, leftovers: () => unfinishedUploads(store, bucket), close: async () => {} }
    },
  )
}

describe('S3ObjectStore specifics', () => {
  it('keeps every object under its prefix, and lists keys without it', async () => {
    const bucket = s3.bucket()
    const store = new S3ObjectStore({ ...s3.options(bucket), prefix: 'moat/' })
    const other = new S3ObjectStore({ ...s3.options(bucket), prefix: 'other/' })
    await store.put('archive/t1/a.eml', Buffer.from('a'))
    await other.put('archive/t1/b.eml', Buffer.from('b'))
    const raw = await store.client.send(new ListObjectsV2Command({ Bucket: bucket }))
    expect((raw.Contents ?? []).map((c) => c.Key).sort()).toEqual([
      'moat/archive/t1/a.eml',
      'other/archive/t1/b.eml',
    ])
    const keys: string[] = []
    for await (const key of store.list('archive/')) keys.push(key)
    expect(keys).toEqual(['archive/t1/a.eml'])
  })

  it('streams a 12 MiB body in three parts and reads it back whole', async () => {
    const bucket = s3.bucket()
    const store = new S3ObjectStore({ ...s3.options(bucket), partSize: 5 * 1024 * 1024 })
    const size = 12 * 1024 * 1024
    const body = Buffer.alloc(size, 'x')
    const { Readable } = await import('node:stream')
    const chunks = Array.from({ length: size / 65536 }, (_, i) => body.subarray(i * 65536, (i + 1) * 65536))
    expect(await store.put('big/twelve.eml', Readable.from(chunks))).toEqual({ size })
    const head = await store.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'big/' }))
    expect(head.Contents?.[0]?.Size).toBe(size)
    // a multipart ETag ends in -<number of parts>
    expect(head.Contents?.[0]?.ETag).toMatch(/-3"?$/)
    expect((await store.get('big/twelve.eml')).equals(body)).toBe(true)
  })

  it('sends the server-side encryption setting with every write (the emulator accepts and ignores it)', async () => {
    const bucket = s3.bucket()
    const store = new S3ObjectStore({ ...s3.options(bucket), serverSideEncryption: 'AES256' })
    const seen: unknown[] = []
    store.client.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { ServerSideEncryption?: string }
        seen.push(input.ServerSideEncryption)
        return next(args)
      },
      { step: 'initialize' },
    )
    await store.put('sse/buffer.eml', Buffer.from('x'))
    const { Readable } = await import('node:stream')
    await store.put('sse/stream.eml', Readable.from([Buffer.from('y')]))
    expect(seen).toEqual(['AES256', 'AES256'])
    expect((await store.get('sse/stream.eml')).toString()).toBe('y')
  })

  it('a wrong bucket is an error, not a missing object', async () => {
    const store = new S3ObjectStore({ ...s3.options('no-such-bucket') })
    await expect(store.put('a.eml', Buffer.from('x'))).rejects.toThrow(/bucket/i)
  })
})
