import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { ObjectStore } from '@moat/blobstore'
import { createTenant } from '@moat/core'
import { type Database, messages, newId, openDatabase, runMigrations } from '@moat/db'
// the file directly: the testkit index pulls in the whole stack
import { createTestDatabase, type TestDatabase } from '../../testkit/src/database'

export interface ArchiveFixture {
  database: Database
  dataDir: string
  tenant(name?: string): Promise<string>
  /**
   * A message as ingest and scan leave it: the raw object under `inbound/…` and its `messages` row,
   * received `daysAgo` days ago. Returns the message id.
   */
  message(
    store: ObjectStore,
    tenantId: string,
    raw: string | Buffer,
    options?: { daysAgo?: number; action?: string; virus?: boolean; direction?: string; rcptTo?: string[] },
  ): Promise<string>
  close(): Promise<void>
}

/** A fresh database (PGlite, or a new database on the server at DATABASE_URL) with migrations applied. */
export async function archiveFixture(): Promise<ArchiveFixture> {
  const testDb: TestDatabase = await createTestDatabase()
  await runMigrations(testDb.url)
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-archive-'))
  const database = await openDatabase({ databaseUrl: testDb.url, dataDir, maxConnections: 4 })
  return {
    database,
    dataDir,
    async tenant(name = `t${randomBytes(4).toString('hex')}`) {
      return (await createTenant(database.db, { name, actor: 'test' })).id
    },
    async message(store, tenantId, raw, o = {}) {
      const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.replace(/\r?\n/g, '\r\n'))
      const id = newId('msg')
      const receivedAt = new Date(Date.now() - (o.daysAgo ?? 0) * 86_400_000)
      const objectKey = `inbound/${receivedAt.toISOString().slice(0, 10).replace(/-/g, '/')}/${id}.eml`
      await store.put(objectKey, bytes)
      const subject = /^Subject: (.*)$/m.exec(bytes.toString())?.[1]?.trim() ?? null
      await database.db.insert(messages).values({
        id,
        tenantId,
        queueId: id.slice(4, 16),
        direction: o.direction ?? 'inbound',
        status: 'delivered',
        mailFrom:
          /^From: .*?<?([^<>\s]+@[^<>\s]+)>?\s*$/m.exec(bytes.toString())?.[1] ?? 'sender@example.org',
        rcptTo: o.rcptTo ?? ['user@customer.test'],
        objectKey,
        size: bytes.length,
        subject,
        virusScan: o.virus ? 'infected' : 'clean',
        virusName: o.virus ? 'Eicar-Test-Signature' : null,
        spamScore: 1.5,
        action: o.action ?? 'deliver',
        receivedAt,
      })
      return id
    },
    async close() {
      await database.close()
      await testDb.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    },
  }
}

/** Every key in a store under a prefix. */
export async function keys(store: ObjectStore, prefix = ''): Promise<string[]> {
  const out: string[] = []
  for await (const key of store.list(prefix)) out.push(key)
  return out
}
