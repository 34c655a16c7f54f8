import { Readable, Transform } from 'node:stream'
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { checkKey, ObjectNotFoundError, type ObjectStore } from './index'

/** Where and how the S3 adapter stores objects; every field but `bucket` is optional. */
export interface S3StoreOptions {
  bucket: string
  /** prepended to every key (`moat/` → `moat/inbound/…`); '' for the bucket's root */
  prefix?: string
  region?: string
  /** an S3-compatible endpoint (MinIO, Ceph, R2); unset: AWS */
  endpoint?: string
  /** `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (MinIO, most emulators) */
  forcePathStyle?: boolean
  /** passed through on every write: `AES256` (SSE-S3) or `aws:kms` (SSE-KMS, with `kmsKeyId`) */
  serverSideEncryption?: 'AES256' | 'aws:kms'
  kmsKeyId?: string
  /** credentials; unset: the AWS SDK's default chain (environment, profile, instance role) */
  credentials?: { accessKeyId: string; secretAccessKey: string }
  /** streamed bodies go up in parts of this size (at least 5 MiB, S3's minimum) */
  partSize?: number
}

const MIN_PART = 5 * 1024 * 1024

/**
 * Object store on S3 or any S3-compatible service. A buffer is one `PutObject`; a stream goes
 * through `@aws-sdk/lib-storage`'s `Upload`, which sends one `PutObject` when the body fits in one
 * part and a multipart upload otherwise (parts of `partSize`, four in flight, so memory stays
 * bounded whatever the message size). A failed upload is aborted, leaving no object and no parts.
 * S3 writes are atomic and strongly consistent, so readers never see half an object.
 *
 * @example
 * const store = new S3ObjectStore({ bucket: 'moat-mail', prefix: 'prod/', region: 'eu-west-1' })
 * await store.put('inbound/2026/11/27/a.eml', Buffer.from('Subject: hi\r\n\r\nhello'))
 */
export class S3ObjectStore implements ObjectStore {
  readonly client: S3Client
  private readonly prefix: string
  private readonly partSize: number

  constructor(readonly options: S3StoreOptions) {
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    }
    this.client = new S3Client(config)
    this.prefix = options.prefix ?? ''
    this.partSize = Math.max(options.partSize ?? 8 * 1024 * 1024, MIN_PART)
  }

  private objectKey(key: string): string {
    checkKey(key)
    return this.prefix + key
  }

  private encryption(): { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } {
    const { serverSideEncryption, kmsKeyId } = this.options
    if (!serverSideEncryption) return {}
    return { ServerSideEncryption: serverSideEncryption, ...(kmsKeyId ? { SSEKMSKeyId: kmsKeyId } : {}) }
  }

  async put(key: string, body: Readable | Buffer): Promise<{ size: number }> {
    const Key = this.objectKey(key)
    if (Buffer.isBuffer(body)) {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.options.bucket, Key, Body: body, ...this.encryption() }),
      )
      return { size: body.length }
    }
    let size = 0
    let sourceError: unknown
    // counts bytes (also when the source yields strings) and carries the source's own error
    const counted = new Transform({
      transform(chunk: Buffer | string, _enc, done) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
        size += bytes.length
        done(null, bytes)
      },
    })
    body.on('error', (err) => {
      sourceError = err
      counted.destroy(err)
    })
    body.pipe(counted)
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.options.bucket, Key, Body: counted, ...this.encryption() },
      partSize: this.partSize,
      queueSize: 4,
      leavePartsOnError: false,
    })
    try {
      await upload.done()
    } catch (err) {
      throw sourceError ?? err
    }
    if (sourceError) throw sourceError
    return { size }
  }

  private async getObject(key: string) {
    const Key = this.objectKey(key)
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key }))
      if (!out.Body) throw new ObjectNotFoundError(key)
      return out.Body as Readable
    } catch (err) {
      const name = (err as { name?: string }).name
      if (name === 'NoSuchKey' || name === 'NotFound') throw new ObjectNotFoundError(key)
      throw err
    }
  }

  async get(key: string): Promise<Buffer> {
    const body = await this.getObject(key)
    const chunks: Buffer[] = []
    for await (const chunk of body) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }

  async stream(key: string): Promise<Readable> {
    const body = await this.getObject(key)
    return body instanceof Readable ? body : Readable.from(body as AsyncIterable<Buffer>)
  }

  async delete(key: string): Promise<void> {
    // S3 answers 204 for a missing key too
    await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.objectKey(key) }))
  }

  async *list(prefix: string): AsyncIterable<string> {
    let token: string | undefined
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.options.bucket,
          Prefix: this.prefix + prefix,
          ContinuationToken: token,
        }),
      )
      // S3 lists in UTF-8 byte order, which is lexical order for the ASCII keys Moat writes
      for (const item of out.Contents ?? []) if (item.Key) yield item.Key.slice(this.prefix.length)
      token = out.IsTruncated ? out.NextContinuationToken : undefined
    } while (token)
  }
}
