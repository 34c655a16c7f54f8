import fs from 'node:fs/promises'
import path from 'node:path'
import { runMigrations, startEmbeddedPostgres } from '@moat/db'
import { loadOrBuildModel } from '@moat/detect'
import type { TestProject } from 'vitest/node'
import './provided'
import { CLAMD_BINARY, type Clamd, startClamd, tempDir } from './peers'

let clamd: Clamd | undefined
let snapshotDir: string | undefined
let modelDir: string | undefined

/** The default spam model, built once per test run from the bundled corpus (a few seconds). */
async function spamModel(): Promise<void> {
  modelDir = await tempDir('moat-model-')
  const file = path.join(modelDir, 'spam-model.bin')
  loadOrBuildModel(file)
  process.env.MOAT_TEST_SPAM_MODEL = file
}

/** A migrated embedded database, saved for every test file to start from (see createTestDatabase). */
async function pgliteSnapshot(): Promise<void> {
  if (process.env.DATABASE_URL) return
  const pg = await startEmbeddedPostgres({ dataDir: 'memory://' })
  try {
    await runMigrations(pg.url)
    snapshotDir = await tempDir('moat-pglite-')
    const file = path.join(snapshotDir, 'snapshot.tar')
    await fs.writeFile(file, Buffer.from(await (await pg.snapshot()).arrayBuffer()))
    process.env.MOAT_TEST_PGLITE_SNAPSHOT = file
  } finally {
    await pg.close()
  }
}

/** Starts one clamd for the whole test run. Without it, clamd tests skip, except under CI=true. */
export async function setup(project: TestProject): Promise<void> {
  await Promise.all([pgliteSnapshot(), spamModel()])
  if (!CLAMD_BINARY) {
    if (process.env.CI === 'true')
      throw new Error('CI=true but clamd is not installed: apt-get install clamav-daemon')
    project.provide('clamdUrl', '')
    project.provide('clamdMissing', 'clamd is not installed (apt-get install clamav-daemon)')
    return
  }
  clamd = await startClamd()
  project.provide('clamdUrl', clamd.url)
  project.provide('clamdMissing', '')
}

export async function teardown(): Promise<void> {
  await clamd?.stop()
  if (snapshotDir) await fs.rm(snapshotDir, { recursive: true, force: true })
  if (modelDir) await fs.rm(modelDir, { recursive: true, force: true })
}
