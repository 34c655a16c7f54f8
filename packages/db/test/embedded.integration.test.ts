import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
// database.ts directly: the testkit index pulls in the whole stack
import { createTestDatabase } from '../../testkit/src/database'
import { openDatabase, startEmbeddedPostgres } from '../src/index'
import { connectWire } from './wire'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects when `promise` takes longer than `ms`: a blocked database shows up as a failure, not a hung test. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms}ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/**
 * What several clients of one database must be able to count on. It runs against the embedded
 * server, and also against real PostgreSQL when DATABASE_URL is set, which shows the expectations
 * are PostgreSQL's own.
 */
function multiClientSuite(
  label: string,
  start: () => Promise<{ url: string; close(): Promise<void> }>,
): void {
  describe(`several clients on ${label}`, () => {
    let url: string
    let close: () => Promise<void>
    let a: postgres.Sql
    let b: postgres.Sql
    const opened: postgres.Sql[] = []
    const client = (options: postgres.Options<Record<string, postgres.PostgresType>> = {}) => {
      const sql = postgres(url, { max: 4, onnotice: () => {}, ...options })
      opened.push(sql)
      return sql
    }

    beforeAll(async () => {
      ;({ url, close } = await start())
      a = client()
      b = client()
      await a`create table items (id serial primary key, client text not null, n int not null)`
    })
    afterEach(async () => {
      await a`truncate items`
    })
    afterAll(async () => {
      await Promise.all(opened.map((sql) => sql.end({ timeout: 1 })))
      await close?.()
    })

    it('interleaved transactions from two pools each see only their own writes and keep only committed ones', async () => {
      const expected: string[] = []
      await within(
        30_000,
        'the transactions',
        Promise.all(
          [a, b].flatMap((sql, c) =>
            Array.from({ length: 20 }, async (_, i) => {
              const name = `client${c}`
              const commit = i % 3 !== 0
              if (commit) expected.push(`${name}:${i + 1000}`)
              try {
                await sql.begin(async (tx) => {
                  await tx`insert into items (client, n) values (${name}, ${i})`
                  await sleep(i % 4)
                  const mine = await tx`select n from items where client = ${name} and n = ${i}`
                  if (mine.length !== 1) throw new Error(`${name} saw ${mine.length} rows for ${i}`)
                  await tx`update items set n = n + 1000 where client = ${name} and n = ${i}`
                  if (!commit) throw new Error('roll back')
                })
              } catch (err) {
                if (commit || (err as Error).message !== 'roll back') throw err
              }
            }),
          ),
        ),
      )
      const rows = await a<{ client: string; n: number }[]>`select client, n from items`
      expect(rows.map((r) => `${r.client}:${r.n}`).sort()).toEqual(expected.sort())
    })

    it('the same statement text with different parameters never mixes up results, prepared or not', async () => {
      const unprepared = client({ prepare: false })
      const checks = Array.from({ length: 300 }, async (_, i) => {
        const sql = [a, b, unprepared][i % 3] as postgres.Sql
        const [row] =
          await sql`select ${i}::int as i, ${`value ${i}`}::text as s, ${i % 2 === 0}::boolean as even`
        expect(row).toEqual({ i, s: `value ${i}`, even: i % 2 === 0 })
        const [sum] = await sql.unsafe('select $1::int + $2::int as total', [i, 1])
        expect(sum).toEqual({ total: i + 1 })
      })
      await within(30_000, 'the queries', Promise.all(checks))
    })

    it('two connections can prepare the same statement name with different text', async () => {
      const x = await connectWire(url)
      const y = await connectWire(url)
      try {
        expect((await x.parse('s1', "select 'from x'::text")).error).toBeUndefined()
        expect((await y.parse('s1', "select 'from y ' || $1::text")).error).toBeUndefined()
        expect(await x.execute('s1')).toMatchObject({ rows: ['from x'], error: undefined })
        expect(await y.execute('s1', ['!'])).toMatchObject({ rows: ['from y !'], error: undefined })
        expect(await x.execute('s1')).toMatchObject({ rows: ['from x'] })
      } finally {
        await x.end()
        await y.end()
      }
    })

    it('a statement parsed without a name keeps working until it is executed, whatever other connections run', async () => {
      const x = await connectWire(url)
      const y = await connectWire(url)
      try {
        await x.parse('', "select 'x unnamed'::text")
        const other = y.query("select 'y simple'")
        const alsoOther = b`select ${'y extended'}::text as v`
        await sleep(50)
        expect(await within(5_000, 'the execute', x.execute(''))).toMatchObject({ rows: ['x unnamed'] })
        expect(await within(5_000, 'the simple query', other)).toMatchObject({ rows: ['y simple'] })
        expect(await within(5_000, 'the extended query', alsoOther)).toEqual([{ v: 'y extended' }])
      } finally {
        await x.end()
        await y.end()
      }
    })

    it('a client that drops its connection mid-transaction has its writes rolled back and blocks nobody', async () => {
      const x = await connectWire(url)
      const begun = await x.query("begin; insert into items (client, n) values ('crashed', 1)")
      expect(begun).toMatchObject({ status: 'T', error: undefined })
      x.destroy()

      const [count] = await within(5_000, 'a query after the crash', b`select count(*)::int as n from items`)
      expect(count).toEqual({ n: 0 })
      await within(5_000, 'a write after the crash', a`insert into items (client, n) values ('alive', 1)`)
      expect(await a`select client from items`).toEqual([{ client: 'alive' }])
    })

    it('a pool closed in the middle of a transaction has its writes rolled back and blocks nobody', async () => {
      const doomed = postgres(url, { max: 1, onnotice: () => {} })
      let inserted!: () => void
      const insertedPromise = new Promise<void>((resolve) => {
        inserted = resolve
      })
      const transaction = doomed
        .begin(async (tx) => {
          await tx`insert into items (client, n) values ('doomed', 1)`
          inserted()
          await sleep(60_000)
        })
        .catch((err: unknown) => err)
      await within(5_000, 'the insert', insertedPromise)
      await doomed.end({ timeout: 0 })
      expect(await transaction).toBeInstanceOf(Error)

      const rows = await within(5_000, 'a query after the close', a`select client from items`)
      expect(rows).toEqual([])
      await within(
        5_000,
        'a transaction after the close',
        a.begin((tx) => tx`insert into items (client, n) values ('next', 2)`),
      )
    })

    it("an error in one connection's query or transaction does not break another's", async () => {
      const failing = client({ max: 1 })
      let inTransaction!: () => void
      const bStarted = new Promise<void>((resolve) => {
        inTransaction = resolve
      })
      const healthy = b.begin(async (tx) => {
        await tx`insert into items (client, n) values ('healthy', 1)`
        inTransaction()
        await sleep(20)
        await tx`insert into items (client, n) values ('healthy', 2)`
        return tx`select count(*)::int as n from items where client = 'healthy'`
      })
      await bStarted
      await expect(failing`select 1/0`).rejects.toThrow('division by zero')
      await expect(failing`select ${'abc'}::int`).rejects.toThrow(/invalid input syntax/)
      await expect(failing.unsafe('select * from no_such_table where n = $1', [1])).rejects.toThrow(
        /no_such_table/,
      )
      await expect(failing`selec 1`).rejects.toThrow(/syntax error/)
      await expect(
        failing.begin(async (tx) => {
          await tx`insert into items (client, n) values ('failing', 1)`
          await tx`select 1/0`
        }),
      ).rejects.toThrow('division by zero')
      expect(await within(5_000, 'the healthy transaction', healthy)).toEqual([{ n: 2 }])

      // after all that, both connections still work and only the healthy writes exist
      expect(await within(5_000, 'the failing connection', failing`select 1 as one`)).toEqual([{ one: 1 }])
      const rows = await within(5_000, 'another connection', a`select client, n from items order by n`)
      expect(rows).toEqual([
        { client: 'healthy', n: 1 },
        { client: 'healthy', n: 2 },
      ])
    })

    it('a query that fails to parse does not hold up other connections', async () => {
      const failing = client({ max: 1 })
      // drizzle sends parameterised queries as unnamed statements, described before they run
      await expect(failing.unsafe('select * from no_such_table where n = $1', [1])).rejects.toThrow(
        /no_such_table/,
      )
      expect(await within(5_000, 'another connection', b`select 2 as two`)).toEqual([{ two: 2 }])
    })
  })
}

multiClientSuite('the embedded PGlite server', async () => {
  const server = await startEmbeddedPostgres({ dataDir: 'memory://' })
  return { url: server.url, close: () => server.close() }
})

// the same expectations on real PostgreSQL, when there is one (defined only then, so that the
// embedded-only run reports no skipped tests)
if (process.env.DATABASE_URL) {
  describe('reference run', () => {
    multiClientSuite('PostgreSQL (DATABASE_URL)', () => createTestDatabase())
  })
}

describe('the embedded server', () => {
  it('closes promptly while a client is in the middle of a transaction, and keeps none of its writes', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-embedded-'))
    try {
      const server = await startEmbeddedPostgres({ dataDir })
      const setup = postgres(server.url, { max: 1, onnotice: () => {} })
      await setup`create table items (n int)`
      await setup.end()
      const x = await connectWire(server.url)
      expect(await x.query('begin; insert into items values (1)')).toMatchObject({
        status: 'T',
        error: undefined,
      })
      await within(5_000, 'close()', server.close())

      const reopened = await startEmbeddedPostgres({ dataDir })
      const check = postgres(reopened.url, { max: 1, onnotice: () => {} })
      try {
        expect(await check`select count(*)::int as n from items`).toEqual([{ n: 0 }])
      } finally {
        await check.end()
        await reopened.close()
      }
    } finally {
      await fs.rm(dataDir, { recursive: true, force: true })
    }
  })

  it('closes promptly while a client holds a parsed statement it has not executed yet', async () => {
    const server = await startEmbeddedPostgres({ dataDir: 'memory://' })
    const x = await connectWire(server.url)
    expect(await x.parse('', 'select 1')).toMatchObject({ error: undefined })
    await within(5_000, 'close()', server.close())
  })

  it("forgets a connection's prepared statements when it disconnects", async () => {
    const server = await startEmbeddedPostgres({ dataDir: 'memory://' })
    const observer = postgres(server.url, { max: 1, onnotice: () => {} })
    try {
      const count = async () => (await observer`select count(*)::int as n from pg_prepared_statements`)[0]?.n
      const baseline = await count()
      for (let i = 0; i < 5; i++) {
        const sql = postgres(server.url, { max: 2, onnotice: () => {} })
        await Promise.all([
          sql`select ${i}::int as a`,
          sql`select ${i}::text as b`,
          sql`select ${i}::int + 1 as c`,
        ])
        await sql.end()
      }
      await sleep(100)
      expect(await count()).toBe(baseline)
    } finally {
      await observer.end()
      await server.close()
    }
  })
})

describe('openDatabase on a data directory', () => {
  let dataDir: string
  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-db-'))
  })
  afterAll(async () => {
    await fs.rm(dataDir, { recursive: true, force: true })
  })

  it('the first opener serves the database; a second one connects to it and sees the same data', async () => {
    const lock = path.join(dataDir, 'postgres.json')
    const first = await openDatabase({ dataDir, role: 'server' })
    try {
      expect(first.embeddedOwner).toBe(true)
      const owner = JSON.parse(readFileSync(lock, 'utf8'))
      expect(owner).toEqual({ pid: process.pid, port: expect.any(Number), role: 'server' })
      expect(first.url).toBe(`postgres://postgres@127.0.0.1:${owner.port}/postgres`)
      await first.sql`create table notes (body text)`
      await first.sql`insert into notes values ('written by the server')`

      const second = await openDatabase({ dataDir, role: 'cli' })
      try {
        expect(second.embeddedOwner).toBe(false)
        expect(second.url).toBe(first.url)
        expect(await second.sql`select body from notes`).toEqual([{ body: 'written by the server' }])
        await second.sql`insert into notes values ('written by the cli')`
        expect((await first.sql`select body from notes order by body`).map((r) => r.body)).toEqual([
          'written by the cli',
          'written by the server',
        ])
      } finally {
        await second.close()
      }
      // the second closing leaves the owner serving
      expect(existsSync(lock)).toBe(true)
      expect(await first.sql`select count(*)::int as n from notes`).toEqual([{ n: 2 }])
    } finally {
      await first.close()
    }
    expect(existsSync(lock)).toBe(false)

    // the data outlives the process that served it
    const again = await openDatabase({ dataDir })
    try {
      expect(again.embeddedOwner).toBe(true)
      expect(await again.sql`select count(*)::int as n from notes`).toEqual([{ n: 2 }])
    } finally {
      await again.close()
    }
  })

  it('a server waits for a CLI that owns the database, then takes it over', async () => {
    const cli = await openDatabase({ dataDir, role: 'cli' })
    expect(cli.embeddedOwner).toBe(true)
    let settled = false
    const opening = openDatabase({ dataDir, role: 'server' }).finally(() => {
      settled = true
    })
    try {
      await sleep(500)
      expect(settled).toBe(false)
      await cli.sql`insert into notes values ('from the cli')`
    } finally {
      await cli.close()
    }
    const server = await within(10_000, 'the server open', opening)
    try {
      expect(server.embeddedOwner).toBe(true)
      expect(await server.sql`select count(*)::int as n from notes where body = 'from the cli'`).toEqual([
        { n: 1 },
      ])
    } finally {
      await server.close()
    }
  })

  it('takes over a lock file left behind by a process that died', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)'])
    expect(dead.pid).toBeGreaterThan(0)
    writeFileSync(
      path.join(dataDir, 'postgres.json'),
      JSON.stringify({ pid: dead.pid, port: 1, role: 'server' }),
    )
    const db = await within(10_000, 'the open', openDatabase({ dataDir }))
    try {
      expect(db.embeddedOwner).toBe(true)
      expect(await db.sql`select count(*)::int as n from notes`).toEqual([{ n: 3 }])
    } finally {
      await db.close()
    }
  })
})
