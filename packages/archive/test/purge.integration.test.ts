import path from 'node:path'
import { LocalObjectStore, type ObjectStore, S3ObjectStore } from '@moat/blobstore'
import { archivedMessages, auditLog, messages } from '@moat/db'
import { and, eq, inArray } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// the file directly: the testkit index pulls in the whole stack
import { startS3Emulator, type TestS3 } from '../../testkit/src/s3'
import {
  indexMessage,
  placeHold,
  purgeArchive,
  RETENTION_PRESETS,
  releaseHold,
  setArchiveSettings,
} from '../src/index'
import { type ArchiveFixture, archiveFixture, keys } from './fixtures'

/**
 * Retention on both object stores: the local directory, and S3 on the `fauxqs` emulator (an S3
 * wire-protocol endpoint started on loopback in this process; no AWS involved).
 */

let fx: ArchiveFixture
let s3: TestS3
beforeAll(async () => {
  fx = await archiveFixture()
  s3 = await startS3Emulator()
})
afterAll(async () => {
  await fx?.close()
  await s3?.stop()
})

const stores: [string, () => ObjectStore][] = [
  ['local directory', () => new LocalObjectStore(path.join(fx.dataDir, 'objects'))],
  ['S3 (fauxqs emulator)', () => new S3ObjectStore({ ...s3.options(s3.bucket()), prefix: 'moat/' })],
]

const raw = (subject: string) =>
  `From: sender@partner.example\nTo: user@customer.test\nSubject: ${subject}\n\nbody of ${subject}\n`

for (const [label, makeStore] of stores) {
  describe(`retention purge on the ${label} store`, () => {
    it('deletes expired index rows and their objects in batches, leaves everything else alone, respects legal holds, and audits', async () => {
      const store = makeStore()
      const db = fx.database.db
      const deps = { db, store }
      const month = await fx.tenant()
      const forever = await fx.tenant()
      const held = await fx.tenant()
      await setArchiveSettings(db, {
        tenantId: month,
        actor: 'test',
        retentionDays: RETENTION_PRESETS['30d'],
      })
      await setArchiveSettings(db, { tenantId: held, actor: 'test', retentionDays: RETENTION_PRESETS['30d'] })
      // forever keeps the default: unlimited

      const archive = async (tenantId: string, subject: string, daysAgo: number) => {
        const id = await fx.message(store, tenantId, raw(subject), { daysAgo })
        await indexMessage(deps, id)
        const [row] = await db.select().from(archivedMessages).where(eq(archivedMessages.messageId, id))
        if (!row) throw new Error('not archived')
        return row
      }
      const expired = await Promise.all([1, 2, 3, 4, 5].map((i) => archive(month, `old ${i}`, 31 + i)))
      const evidence = await archive(month, 'contract dispute', 60)
      const recent = await archive(month, 'recent', 29)
      const keptForever = await archive(forever, 'ancient', 4000)
      const heldTenant = await archive(held, 'held by tenant hold', 90)

      const searchHold = await placeHold(db, {
        tenantId: month,
        actor: 'test',
        reason: 'Case 17: contract dispute',
        scope: 'messages',
        filter: { q: 'dispute' },
      })
      expect(searchHold.messageCount).toBe(1)
      const tenantHold = await placeHold(db, {
        tenantId: held,
        actor: 'test',
        reason: 'regulator inquiry',
        scope: 'tenant',
      })

      const inboundBefore = await keys(store, 'inbound/')
      const messageRowsBefore = await db.select({ id: messages.id }).from(messages)

      const result = await purgeArchive(deps, { batch: 2 })
      expect(result.purged).toBe(5)
      expect(result.batches).toBe(3)
      expect(result.tenants).toEqual({ [month]: 5 })

      // the expired ones: rows and objects really gone
      const left = await db
        .select({ id: archivedMessages.id })
        .from(archivedMessages)
        .where(
          inArray(
            archivedMessages.id,
            expired.map((r) => r.id),
          ),
        )
      expect(left).toEqual([])
      for (const r of expired) await expect(store.get(r.objectKey)).rejects.toThrow('object not found')
      // everything else untouched: held, recent, unlimited, other tenants, inbound objects, the message log
      for (const r of [evidence, recent, keptForever, heldTenant]) {
        expect((await store.get(r.objectKey)).toString()).toContain(r.subject ?? '')
        expect(
          await db
            .select({ id: archivedMessages.id })
            .from(archivedMessages)
            .where(eq(archivedMessages.id, r.id)),
        ).toHaveLength(1)
      }
      expect(await keys(store, 'inbound/')).toEqual(inboundBefore)
      expect(await db.select({ id: messages.id }).from(messages)).toEqual(messageRowsBefore)

      const audits = await db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.tenantId, month), eq(auditLog.action, 'archive.purge')))
      expect(audits.map((a) => a.detail.messages)).toEqual([2, 2, 1])
      expect(audits[0]).toMatchObject({
        actor: 'system:retention',
        target: month,
        detail: { retentionDays: 30 },
      })

      // a second run finds nothing more
      expect((await purgeArchive(deps, { batch: 2 })).purged).toBe(0)

      // released holds no longer protect
      await releaseHold(db, { tenantId: month, id: searchHold.id, actor: 'test' })
      await releaseHold(db, { tenantId: held, id: tenantHold.id, actor: 'test' })
      const after = await purgeArchive(deps, { batch: 100 })
      expect(after.tenants).toEqual({ [month]: 1, [held]: 1 })
      await expect(store.get(evidence.objectKey)).rejects.toThrow('object not found')
      await expect(store.get(heldTenant.objectKey)).rejects.toThrow('object not found')
      expect((await store.get(recent.objectKey)).length).toBeGreaterThan(0)
      expect((await store.get(keptForever.objectKey)).length).toBeGreaterThan(0)
    })

    it('a purge that dies part-way is finished by the next run', async () => {
      const store = makeStore()
      const db = fx.database.db
      const tenantId = await fx.tenant()
      await setArchiveSettings(db, { tenantId, actor: 'test', retentionDays: 30 })
      const rows = []
      for (let i = 0; i < 4; i++) {
        const id = await fx.message(store, tenantId, raw(`crash ${i}`), { daysAgo: 40 })
        await indexMessage({ db, store }, id)
        const [row] = await db.select().from(archivedMessages).where(eq(archivedMessages.messageId, id))
        rows.push(row)
      }
      // a store that fails on the third delete, as a crash or an outage would
      let deletes = 0
      const failing: ObjectStore = Object.create(store, {
        delete: {
          value: async (key: string) => {
            if (++deletes === 3) throw new Error('store unreachable')
            return store.delete(key)
          },
        },
      })
      await expect(purgeArchive({ db, store: failing }, { batch: 4 })).rejects.toThrow('store unreachable')
      // the batch rolled back: every row is still there, even those whose object went
      const still = await db.select().from(archivedMessages).where(eq(archivedMessages.tenantId, tenantId))
      expect(still).toHaveLength(4)
      const again = await purgeArchive({ db, store }, { batch: 4 })
      expect(again.tenants[tenantId]).toBe(4)
      expect(await db.select().from(archivedMessages).where(eq(archivedMessages.tenantId, tenantId))).toEqual(
        [],
      )
      expect(await keys(store, `archive/${tenantId}/`)).toEqual([])
    })
  })
}

describe('legal holds and settings', () => {
  it('a hold needs a reason, and one released cannot be released again', async () => {
    const db = fx.database.db
    const tenantId = await fx.tenant()
    await expect(placeHold(db, { tenantId, actor: 'test', reason: '  ', scope: 'tenant' })).rejects.toThrow(
      'a legal hold needs a reason',
    )
    const hold = await placeHold(db, { tenantId, actor: 'test', reason: 'audit', scope: 'tenant' })
    await releaseHold(db, { tenantId, id: hold.id, actor: 'test' })
    await expect(releaseHold(db, { tenantId, id: hold.id, actor: 'test' })).rejects.toThrow(
      `legal hold ${hold.id} was already released`,
    )
    const other = await fx.tenant()
    await expect(releaseHold(db, { tenantId: other, id: hold.id, actor: 'test' })).rejects.toThrow(
      `no legal hold ${hold.id}`,
    )
  })

  it('retention is a whole number of days, or unlimited', async () => {
    const db = fx.database.db
    const tenantId = await fx.tenant()
    await expect(setArchiveSettings(db, { tenantId, actor: 'test', retentionDays: 0 })).rejects.toThrow(
      'retention must be a whole number of days above 0, not 0',
    )
    expect(await setArchiveSettings(db, { tenantId, actor: 'test', retentionDays: 2557 })).toEqual({
      enabled: true,
      retentionDays: 2557,
    })
    expect(await setArchiveSettings(db, { tenantId, actor: 'test', retentionDays: null })).toEqual({
      enabled: true,
      retentionDays: null,
    })
  })
})
