import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ObjectNotFoundError, type ObjectStore } from '../src/index'

/** What an object store backend gives the contract suite. */
export interface ObjectStoreFixture {
  store: ObjectStore
  /** Anything the store keeps besides finished objects (temporary files, unfinished uploads). */
  leftovers(): Promise<string[]>
  close(): Promise<void>
}

async function collect(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  return Buffer.concat(chunks)
}

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const found: string[] = []
  for await (const key of store.list(prefix)) found.push(key)
  return found
}

/** A readable that yields `size` pseudo-random bytes in `chunk`-sized pieces. */
function randomStream(size: number, chunk = 64 * 1024): { stream: Readable; bytes: Buffer } {
  const bytes = randomBytes(size)
  let at = 0
  const stream = new Readable({
    read() {
      if (at >= size) return this.push(null)
      this.push(bytes.subarray(at, at + chunk))
      at += chunk
    },
  })
  return { stream, bytes }
}

/**
 * The behaviour every `ObjectStore` must have: LocalObjectStore and S3ObjectStore both run it, each with
 * its own fixture.
 */
export function objectStoreContract(label: string, makeFixture: () => Promise<ObjectStoreFixture>): void {
  describe(`object store contract: ${label}`, () => {
    let fx: ObjectStoreFixture
    let store: ObjectStore
    beforeAll(async () => {
      fx = await makeFixture()
      store = fx.store
    })
    afterAll(async () => {
      await fx?.close()
    })

    it('round-trips a buffer and reports its size in bytes', async () => {
      const body = Buffer.from('Subject: hi ✉\r\n\r\nhello\r\n')
      expect(await store.put('inbound/2026/11/27/a.eml', body)).toEqual({ size: body.length })
      expect(await store.get('inbound/2026/11/27/a.eml')).toEqual(body)
      expect(await collect(await store.stream('inbound/2026/11/27/a.eml'))).toEqual(body)
    })

    it('round-trips a stream and reports its size in bytes', async () => {
      const { stream, bytes } = randomStream(200_000, 10_000)
      expect(await store.put('streamed/one.eml', stream)).toEqual({ size: 200_000 })
      expect((await store.get('streamed/one.eml')).equals(bytes)).toBe(true)
    })

    it('counts bytes, not characters, for a stream of strings', async () => {
      const text = ['Subject: Grüße\r\n', '\r\n', 'naïve café — ✉\r\n']
      const bytes = Buffer.from(text.join(''), 'utf8')
      expect(await store.put('streamed/strings.eml', Readable.from(text))).toEqual({ size: bytes.length })
      expect(await store.get('streamed/strings.eml')).toEqual(bytes)
    })

    it('stores an empty object', async () => {
      expect(await store.put('empty/buffer', Buffer.alloc(0))).toEqual({ size: 0 })
      expect(await store.put('empty/stream', Readable.from([]))).toEqual({ size: 0 })
      expect(await store.get('empty/buffer')).toEqual(Buffer.alloc(0))
      expect(await collect(await store.stream('empty/stream'))).toEqual(Buffer.alloc(0))
    })

    it('streams a 5 MB body in and out intact', async () => {
      const size = 5 * 1024 * 1024
      const { stream, bytes } = randomStream(size)
      expect(await store.put('big/five-mb.eml', stream)).toEqual({ size })
      const out = await store.stream('big/five-mb.eml')
      let chunks = 0
      const received: Buffer[] = []
      for await (const chunk of out) {
        chunks++
        received.push(chunk as Buffer)
      }
      expect(chunks).toBeGreaterThan(1) // it really streams rather than handing over one buffer
      expect(Buffer.concat(received).equals(bytes)).toBe(true)
    })

    it('a second put of a key replaces the object', async () => {
      await store.put('replace/me', Buffer.from('old and longer'))
      expect(await store.put('replace/me', Readable.from([Buffer.from('new')]))).toEqual({ size: 3 })
      expect((await store.get('replace/me')).toString()).toBe('new')
      expect(await keys(store, 'replace/')).toEqual(['replace/me'])
    })

    it('get and stream of a missing key throw ObjectNotFoundError naming the key', async () => {
      const get = store.get('missing/nothing.eml')
      await expect(get).rejects.toBeInstanceOf(ObjectNotFoundError)
      await expect(get).rejects.toMatchObject({
        key: 'missing/nothing.eml',
        message: 'object not found: missing/nothing.eml',
      })
      await expect(store.stream('missing/nothing.eml')).rejects.toBeInstanceOf(ObjectNotFoundError)
      await expect(store.get('never/seen/deep/x')).rejects.toBeInstanceOf(ObjectNotFoundError)
    })

    it('a key that is only a prefix of other keys is not an object', async () => {
      await store.put('prefix-only/inner/x.eml', Buffer.from('x'))
      await expect(store.get('prefix-only/inner')).rejects.toBeInstanceOf(ObjectNotFoundError)
      await expect(store.stream('prefix-only/inner')).rejects.toBeInstanceOf(ObjectNotFoundError)
      await expect(store.get('prefix-only/inner/x.eml/deeper')).rejects.toBeInstanceOf(ObjectNotFoundError)
      await store.delete('prefix-only/inner')
      expect(await store.get('prefix-only/inner/x.eml')).toEqual(Buffer.from('x'))
    })

    it('delete removes an object and deleting again, or a missing key, is not an error', async () => {
      await store.put('gone/soon.eml', Buffer.from('bye'))
      await store.delete('gone/soon.eml')
      await expect(store.get('gone/soon.eml')).rejects.toBeInstanceOf(ObjectNotFoundError)
      await expect(store.delete('gone/soon.eml')).resolves.toBeUndefined()
      await expect(store.delete('never/existed.eml')).resolves.toBeUndefined()
      expect(await keys(store, 'gone/')).toEqual([])
    })

    it('lists keys under a prefix in lexical order, and nothing else', async () => {
      const names = [
        'list/b/2.eml',
        'list/a/10.eml',
        'list/a/9.eml',
        'list/A.eml',
        'list/b.eml',
        'list/a.tmp',
        'listing/x',
      ]
      for (const key of names) await store.put(key, Buffer.from(key))
      expect(await keys(store, 'list/')).toEqual([
        'list/A.eml',
        'list/a.tmp',
        'list/a/10.eml',
        'list/a/9.eml',
        'list/b.eml',
        'list/b/2.eml',
      ])
      // a prefix is a string prefix, not a directory
      expect(await keys(store, 'list/a')).toEqual(['list/a.tmp', 'list/a/10.eml', 'list/a/9.eml'])
      expect(await keys(store, 'list')).toEqual([
        'list/A.eml',
        'list/a.tmp',
        'list/a/10.eml',
        'list/a/9.eml',
        'list/b.eml',
        'list/b/2.eml',
        'listing/x',
      ])
      expect(await keys(store, 'nope/')).toEqual([])
    })

    it('rejects keys that are empty, absolute, or climb out with . or ..', async () => {
      const bad = [
        '',
        '/etc/passwd',
        '../outside',
        'a/../../outside',
        'a/./b',
        'a//b',
        'trailing/',
        '.',
        '..',
      ]
      for (const key of bad) {
        await expect(store.put(key, Buffer.from('x')), key).rejects.toThrow(/invalid object key/)
        await expect(store.get(key), key).rejects.toThrow(/invalid object key/)
        await expect(store.stream(key), key).rejects.toThrow(/invalid object key/)
        await expect(store.delete(key), key).rejects.toThrow(/invalid object key/)
      }
      await expect(store.put('a/../../outside', Readable.from(['x'])), 'stream').rejects.toThrow(
        /invalid object key/,
      )
    })

    it('a source stream that fails leaves no object and nothing half-written behind, and reports its error', async () => {
      await store.put('failing/existing.eml', Buffer.from('keep me'))
      // one source fails while being read, the other some time after its last chunk (a dropped connection)
      const failsAtOnce = () => {
        let sent = 0
        return new Readable({
          read() {
            if (sent === 3) {
              this.destroy(new Error('client went away'))
              return
            }
            sent++
            this.push(randomBytes(100_000))
          },
        })
      }
      const failsLater = () => {
        const source = new Readable({ read() {} })
        source.push(randomBytes(100_000))
        setTimeout(() => source.destroy(new Error('client went away')), 30)
        return source
      }
      for (const key of ['failing/new.eml', 'failing/existing.eml']) {
        // made one at a time: a source whose timer fires before a put reads it would fail unheard
        for (const source of [failsAtOnce, failsLater]) {
          await expect(store.put(key, source())).rejects.toThrow('client went away')
        }
      }
      await expect(store.get('failing/new.eml')).rejects.toBeInstanceOf(ObjectNotFoundError)
      expect((await store.get('failing/existing.eml')).toString()).toBe('keep me')
      expect(await keys(store, 'failing/')).toEqual(['failing/existing.eml'])
      expect(await fx.leftovers()).toEqual([])
    })

    it('concurrent puts of the same key leave one whole object', async () => {
      const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(300_000, 65 + i))
      await Promise.all(
        bodies.map((body, i) => store.put('race/same.eml', i % 2 ? body : Readable.from([body]))),
      )
      const stored = await store.get('race/same.eml')
      expect(bodies.some((body) => body.equals(stored))).toBe(true)
      expect(await keys(store, 'race/')).toEqual(['race/same.eml'])
      expect(await fx.leftovers()).toEqual([])
    })
  })
}
