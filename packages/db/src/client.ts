import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import { startEmbeddedPostgres } from './embedded'
import * as schema from './schema'

export type Db = PostgresJsDatabase<typeof schema>
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0]
/** Anything that runs queries: the database or an open transaction. */
export type Executor = Db | Tx

export interface Database {
  db: Db
  sql: postgres.Sql
  /** the URL other processes can use to reach the same database */
  url: string
  /** true when this process serves the embedded database (it must stay up for the others) */
  embeddedOwner: boolean
  close(): Promise<void>
}

export const migrationsFolder = fileURLToPath(new URL('../../../migrations', import.meta.url))

/**
 * Opens the database: PostgreSQL at `databaseUrl`, or else the embedded PGlite database under
 * `dataDir`. The first process to open the embedded database serves it on loopback and records
 * where in `dataDir/postgres.json`; later processes (the CLI, a separate worker) connect to it.
 * A long-running `role: 'server'` process waits for a short-lived CLI owner to finish, so that
 * the stack, not a CLI command, ends up owning the database.
 */
export async function openDatabase(options: {
  databaseUrl?: string | undefined
  dataDir: string
  role?: 'server' | 'cli'
  maxConnections?: number
}): Promise<Database> {
  if (options.databaseUrl)
    return connect(options.databaseUrl, options.maxConnections ?? 20, false, async () => {})
  const embedded = await openEmbedded(options.dataDir, options.role ?? 'cli')
  return connect(embedded.url, options.maxConnections ?? 4, embedded.owner, embedded.close)
}

function connect(url: string, max: number, embeddedOwner: boolean, after: () => Promise<void>): Database {
  const sql = postgres(url, { max, onnotice: () => {}, connection: { application_name: 'moat' } })
  return {
    db: drizzle(sql, { schema }),
    sql,
    url,
    embeddedOwner,
    async close() {
      await sql.end({ timeout: 5 })
      await after()
    },
  }
}

interface Owner {
  pid: number
  port: number
  role: 'server' | 'cli'
}

async function openEmbedded(
  dataDir: string,
  role: 'server' | 'cli',
): Promise<{ url: string; owner: boolean; close(): Promise<void> }> {
  mkdirSync(dataDir, { recursive: true })
  const lockPath = path.join(dataDir, 'postgres.json')
  const deadline = Date.now() + 60_000
  for (;;) {
    let fd: number | undefined
    try {
      fd = openSync(lockPath, 'wx')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    if (fd !== undefined) {
      try {
        const pg = await startEmbeddedPostgres({ dataDir: path.join(dataDir, 'pglite') })
        writeFileSync(fd, JSON.stringify({ pid: process.pid, port: pg.port, role } satisfies Owner))
        closeSync(fd)
        return {
          url: pg.url,
          owner: true,
          async close() {
            await pg.close()
            rmSync(lockPath, { force: true })
          },
        }
      } catch (err) {
        closeSync(fd)
        rmSync(lockPath, { force: true })
        throw err
      }
    }
    const owner = readOwner(lockPath)
    if (owner && !alive(owner.pid)) {
      rmSync(lockPath, { force: true }) // left behind by a process that died
      continue
    }
    if (owner && !(role === 'server' && owner.role === 'cli')) {
      return { url: `postgres://postgres@127.0.0.1:${owner.port}/postgres`, owner: false, async close() {} }
    }
    if (Date.now() > deadline) {
      throw new Error(
        `the embedded database in ${dataDir} is held by process ${owner?.pid ?? '?'}; stop it and retry`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function readOwner(lockPath: string): Owner | undefined {
  try {
    const owner = JSON.parse(readFileSync(lockPath, 'utf8')) as Owner
    return typeof owner.port === 'number' ? owner : undefined
  } catch {
    return undefined // being written, or gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Applies the SQL migrations in `migrations/`. Several processes starting at once are serialised
 * by an advisory lock, so each migration runs once.
 */
export async function runMigrations(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    await sql`select pg_advisory_lock(7461637)`
    await migrate(drizzle(sql), { migrationsFolder })
    await sql`select pg_advisory_unlock(7461637)`
  } finally {
    await sql.end({ timeout: 5 })
  }
}
