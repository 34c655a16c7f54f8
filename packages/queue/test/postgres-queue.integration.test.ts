import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { type Database, openDatabase, runMigrations } from '@moat/db'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// database.ts directly: the testkit index pulls in the whole stack (and its type errors)
import { createTestDatabase, type TestDatabase } from '../../testkit/src/database'
import { PostgresQueue } from '../src/index'
import { type QueueFixture, queueContract } from './contract'

/** Opens two independent pools on a fresh database (PGlite, or PostgreSQL when DATABASE_URL is set). */
async function openPostgres(): Promise<{
  database: TestDatabase
  a: Database
  b: Database
  close(): Promise<void>
}> {
  const database = await createTestDatabase()
  await runMigrations(database.url)
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-queue-'))
  const a = await openDatabase({ databaseUrl: database.url, dataDir, maxConnections: 4 })
  const b = await openDatabase({ databaseUrl: database.url, dataDir, maxConnections: 4 })
  return {
    database,
    a,
    b,
    async close() {
      await a.close()
      await b.close()
      await database.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    },
  }
}

queueContract(
  `PostgresQueue on ${process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'}`,
  async (): Promise<QueueFixture> => {
    const pg = await openPostgres()
    return {
      create: (name, options) => new PostgresQueue(pg.a.db, name, { pollMs: 100, ...options }),
      connect: (name, options) => new PostgresQueue(pg.b.db, name, { pollMs: 100, ...options }),
      transaction: async (fn) => {
        await pg.a.db.transaction(fn)
      },
      detectsStaleReceipts: true,
      close: () => pg.close(),
    }
  },
)

describe('PostgresQueue specifics', () => {
  let pg: Awaited<ReturnType<typeof openPostgres>>
  beforeAll(async () => {
    pg = await openPostgres()
  })
  afterAll(async () => {
    await pg?.close()
  })

  it('moves dead jobs to `<name>.dead`, where they can be read with their body', async () => {
    const queue = new PostgresQueue<{ messageId: string }>(pg.a.db, 'scan-dlq', { maxReceives: 1 })
    expect(queue.deadLetterName).toBe('scan-dlq.dead')
    await queue.send({ messageId: 'poison' })
    const [job] = await queue.receive({ visibilityTimeout: 60 })
    await queue.changeVisibility(job?.receipt ?? '', 0)
    expect(await queue.receive()).toEqual([])

    const dead = new PostgresQueue<{ messageId: string }>(pg.a.db, queue.deadLetterName)
    const [corpse] = await dead.receive()
    expect(corpse).toMatchObject({ id: job?.id, body: { messageId: 'poison' } })
    expect(await dead.delete(corpse?.receipt ?? '')).toBe(true)
    expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
  })

  it('with a real pool, 8 receivers on 200 jobs finish quickly and never duplicate', async () => {
    const queue = new PostgresQueue<number>(pg.a.db, 'bulk')
    const other = new PostgresQueue<number>(pg.b.db, 'bulk')
    await pg.a.db.transaction(async (tx) => {
      for (let i = 0; i < 200; i++) await queue.send(i, { tx })
    })
    const seen = new Map<number, number>()
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const q = i % 2 ? other : queue
        for (;;) {
          const jobs = await q.receive({ max: 1, visibilityTimeout: 60 })
          if (!jobs.length) return
          for (const job of jobs) {
            seen.set(job.body, (seen.get(job.body) ?? 0) + 1)
            expect(await q.delete(job.receipt)).toBe(true)
          }
        }
      }),
    )
    expect(seen.size).toBe(200)
    expect([...seen.values()].every((n) => n === 1)).toBe(true)
    expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
  })
})
