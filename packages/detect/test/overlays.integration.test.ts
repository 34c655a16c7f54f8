import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { type Database, newId, openDatabase, runMigrations, tenants } from '@moat/db'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// database.ts directly: the testkit index pulls in the whole stack
import { createTestDatabase, type TestDatabase } from '../../testkit/src/database'
import { addToOverlay, TenantOverlays } from '../src/store'

describe(`tenant model overlays on ${process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'}`, () => {
  let database: TestDatabase
  let a: Database
  let b: Database
  let dataDir: string
  const acme = newId('ten')
  const globex = newId('ten')

  beforeAll(async () => {
    database = await createTestDatabase()
    await runMigrations(database.url)
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-overlay-'))
    // two pools stand for a scan worker and the process that records feedback
    a = await openDatabase({ databaseUrl: database.url, dataDir, maxConnections: 2 })
    b = await openDatabase({ databaseUrl: database.url, dataDir, maxConnections: 2 })
    await a.db.insert(tenants).values([
      { id: acme, name: 'acme' },
      { id: globex, name: 'globex' },
    ])
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await database?.close()
    if (dataDir) await fs.rm(dataDir, { recursive: true, force: true })
  })

  it('is empty until a tenant gives feedback, then follows every change made elsewhere', async () => {
    const worker = new TenantOverlays()
    expect(await worker.get(a.db, acme)).toEqual(new Map())

    await b.db.transaction((tx) =>
      addToOverlay(
        tx,
        acme,
        new Map([
          [7, 0.5],
          [9, -1],
        ]),
      ),
    )
    expect(await worker.get(a.db, acme)).toEqual(
      new Map([
        [7, 0.5],
        [9, -1],
      ]),
    )

    // a second report adds to the same weights; the worker sees it at once
    await b.db.transaction((tx) => addToOverlay(tx, acme, new Map([[7, 0.25]])))
    expect(await worker.get(a.db, acme)).toEqual(
      new Map([
        [7, 0.75],
        [9, -1],
      ]),
    )

    // another tenant's overlay is untouched
    expect(await worker.get(a.db, globex)).toEqual(new Map())
    const [row] = await a.db.select().from(tenants).where(eq(tenants.id, acme))
    expect(row?.spamModelVersion).toBe(2)
  })
})
