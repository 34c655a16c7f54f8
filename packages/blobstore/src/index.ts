import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'

/**
 * Where raw messages live. Keys are slash-separated paths (`inbound/2026/11/27/<id>.eml`).
 * Objects are immutable: `put` of an existing key replaces it atomically, nothing edits in place.
 */
export interface ObjectStore {
  /** Streams `body` under `key`; resolves only once the object is durable. Returns its size in bytes. */
  put(key: string, body: Readable | Buffer): Promise<{ size: number }>
  /** Reads a whole object. Throws `ObjectNotFoundError` when it does not exist. */
  get(key: string): Promise<Buffer>
  /** Streams an object. Throws `ObjectNotFoundError` when it does not exist. */
  stream(key: string): Promise<Readable>
  /** Deletes an object; deleting a missing key is not an error. */
  delete(key: string): Promise<void>
  /** Lists keys under a prefix, in lexical order. */
  list(prefix: string): AsyncIterable<string>
}

export class ObjectNotFoundError extends Error {
  override name = 'ObjectNotFoundError'
  constructor(readonly key: string) {
    super(`object not found: ${key}`)
  }
}

const WRITE_BATCH = 256 * 1024

/** Rejects keys that could escape the store's root or name a directory. */
export function checkKey(key: string): void {
  if (
    !key ||
    key.startsWith('/') ||
    key.endsWith('/') ||
    key.split('/').some((p) => p === '' || p === '.' || p === '..')
  ) {
    throw new Error(`invalid object key: ${JSON.stringify(key)}`)
  }
}

/**
 * Object store on a local directory. `put` writes a temporary file, fsyncs it and renames it into
 * place, so a crash never leaves a partial object under a real key.
 *
 * @example
 * const store = new LocalObjectStore('./data/objects')
 * await store.put('inbound/a.eml', Buffer.from('Subject: hi\r\n\r\nhello'))
 */
export class LocalObjectStore implements ObjectStore {
  constructor(readonly root: string) {}

  private file(key: string): string {
    checkKey(key)
    return path.join(this.root, ...key.split('/'))
  }

  async put(key: string, body: Readable | Buffer): Promise<{ size: number }> {
    const target = this.file(key)
    await fs.mkdir(path.dirname(target), { recursive: true })
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`
    try {
      const handle = await fs.open(temp, 'w', 0o640)
      let size = 0
      try {
        if (Buffer.isBuffer(body)) {
          await handle.writeFile(body)
          size = body.length
        } else {
          // written here rather than through a WriteStream on handle.fd: when the source failed, that
          // stream closed the descriptor behind the handle's back, and EBADF from the close below hid
          // the source's error. A failing source now throws its own error out of this loop.
          // SMTP data arrives a line or so per chunk: gather chunks into large writes, one write
          // system call per WRITE_BATCH bytes rather than one per line
          let batch: Buffer[] = []
          let batched = 0
          const flush = async () => {
            const bytes = batch.length === 1 && batch[0] ? batch[0] : Buffer.concat(batch, batched)
            batch = []
            batched = 0
            for (let at = 0; at < bytes.length; ) at += (await handle.write(bytes, at)).bytesWritten
          }
          for await (const chunk of body) {
            const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
            batch.push(bytes)
            batched += bytes.length
            size += bytes.length // bytes, also when the source yields strings
            if (batched >= WRITE_BATCH) await flush()
          }
          if (batched) await flush()
        }
        await handle.sync()
      } finally {
        await handle.close()
      }
      await fs.rename(temp, target)
      await syncDir(path.dirname(target))
      return { size }
    } catch (err) {
      await fs.rm(temp, { force: true })
      throw err
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.file(key))
    } catch (err) {
      throw notFound(err, key)
    }
  }

  async stream(key: string): Promise<Readable> {
    const handle = await fs.open(this.file(key), 'r').catch((err: unknown) => {
      throw notFound(err, key)
    })
    if (!(await handle.stat()).isFile()) {
      await handle.close()
      throw new ObjectNotFoundError(key) // a prefix of other keys, not an object
    }
    return handle.createReadStream()
  }

  async delete(key: string): Promise<void> {
    try {
      await fs.unlink(this.file(key))
    } catch (err) {
      if (!(notFound(err, key) instanceof ObjectNotFoundError)) throw err
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const keys: string[] = []
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[]
      try {
        entries = await fs.readdir(dir, { withFileTypes: true })
      } catch {
        return
      }
      for (const entry of entries) {
        const key = rel ? `${rel}/${entry.name}` : entry.name
        if (entry.isDirectory()) await walk(path.join(dir, entry.name), key)
        else if (!/\.[0-9a-f]{12}\.tmp$/.test(entry.name) && key.startsWith(prefix)) keys.push(key) // not a put's temp file
      }
    }
    await walk(this.root, '')
    keys.sort()
    yield* keys
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

function notFound(err: unknown, key: string): unknown {
  // ENOTDIR, EISDIR: a path through or at a prefix of other keys, which is not an object either
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' ? new ObjectNotFoundError(key) : err
}

export { S3ObjectStore, type S3StoreOptions } from './s3'
