import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { LocalObjectStore } from '../src/index'
import { objectStoreContract } from './contract'

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
}

objectStoreContract('LocalObjectStore', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-objects-'))
  return {
    store: new LocalObjectStore(root),
    // temporary files are `<key>.<12 hex digits>.tmp`
    leftovers: async () => (await filesUnder(root)).filter((f) => /\.[0-9a-f]{12}\.tmp$/.test(f)),
    close: () => fs.rm(root, { recursive: true, force: true }),
  }
})

describe('LocalObjectStore on disk', () => {
  let root: string
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-objects-'))
  })
  afterEach(async () => {
    await fs.rm(root, { recursive: true, force: true })
  })

  it('keeps each object in a file at its key under the root, readable by a new store on the same root', async () => {
    await new LocalObjectStore(root).put('inbound/2026/11/27/m1.eml', Buffer.from('body'))
    expect(await fs.readFile(path.join(root, 'inbound', '2026', '11', '27', 'm1.eml'), 'utf8')).toBe('body')
    expect((await new LocalObjectStore(root).get('inbound/2026/11/27/m1.eml')).toString()).toBe('body')
  })

  it('never writes outside its root, whatever the key', async () => {
    const store = new LocalObjectStore(path.join(root, 'objects'))
    for (const key of ['../escape', 'a/../../escape', '/tmp/escape']) {
      await expect(store.put(key, Buffer.from('x'))).rejects.toThrow(/invalid object key/)
    }
    expect(await filesUnder(root)).toEqual([])
  })

  it('does not list a temporary file of an unfinished put', async () => {
    const store = new LocalObjectStore(root)
    await store.put('inbound/done.eml', Buffer.from('done'))
    await fs.writeFile(path.join(root, 'inbound', 'busy.eml.0123456789ab.tmp'), 'half')
    const keys: string[] = []
    for await (const key of store.list('inbound/')) keys.push(key)
    expect(keys).toEqual(['inbound/done.eml'])
  })
})
