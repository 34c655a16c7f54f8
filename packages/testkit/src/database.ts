import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import { startEmbeddedPostgres } from '@moat/db'
import postgres from 'postgres'

export interface TestDatabase {
  url: string
  kind: 'pglite' | 'postgres'
  close(): Promise<void>
}

/**
 * A fresh, empty database for one test file: a new database on the PostgreSQL server at
 * `DATABASE_URL` when it is set (dropped afterwards), or else an in-memory PGlite served on
 * loopback. Either way the URL works from other processes too.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL
  if (!serverUrl) {
    // the global setup leaves a migrated snapshot: loading it is several times faster than initdb
    const snapshotFile = process.env.MOAT_TEST_PGLITE_SNAPSHOT
    const snapshot = snapshotFile ? new Blob([await fs.readFile(snapshotFile)]) : undefined
    const embedded = await startEmbeddedPostgres({ dataDir: 'memory://', snapshot })
    return { url: embedded.url, kind: 'pglite', close: () => embedded.close() }
  }
  const name = `moat_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    kind: 'postgres',
    async close() {
      await admin.unsafe(`drop database if exists ${name} with (force)`)
      await admin.end()
    },
  }
}
