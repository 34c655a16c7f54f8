import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs'
import { type Database, openDatabase, queueOutbox, runMigrations } from '@moat/db'
import { createLogger } from '@moat/log'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// the files directly: the testkit index pulls in the whole stack
import { createTestDatabase, type TestDatabase } from '../../testkit/src/database'
import { startSqsEmulator, type TestSqs } from '../../testkit/src/sqs'
import { OutboxRelay, SqsQueue } from '../src/index'
import { type QueueFixture, queueContract } from './contract'

/**
 * `SqsQueue` against a real SQS wire-protocol endpoint on loopback: the `fauxqs` emulator (npm),
 * started in this process on an ephemeral port, not a mock and not AWS. Jobs sent or deleted inside
 * a transaction go through the `queue_outbox` table of a real database (PGlite, or PostgreSQL when
 * DATABASE_URL is set) and the outbox relay.
 */

const log = createLogger({ level: 'silent' })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

let sqs: TestSqs
let database: TestDatabase
let db: Database
let dataDir: string
let prefixes = 0

beforeAll(async () => {
  sqs = await startSqsEmulator()
  database = await createTestDatabase()
  await runMigrations(database.url)
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-sqs-'))
  db = await openDatabase({ databaseUrl: database.url, dataDir, maxConnections: 4 })
})
afterAll(async () => {
  await db?.close()
  await database?.close()
  await sqs?.stop()
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true })
})

function makeQueue<T>(
  name: string,
  options: { maxReceives?: number; prefix?: string; maxDelaySeconds?: number } = {},
) {
  return new SqsQueue<T>({
    client: sqs.client(),
    name,
    queueUrl: `${sqs.queueUrlPrefix}${options.prefix ?? ''}${name}`,
    db: db.db,
    create: { maxReceives: options.maxReceives ?? 10 },
    ...(options.maxDelaySeconds ? { maxDelaySeconds: options.maxDelaySeconds } : {}),
  })
}

queueContract('SqsQueue on the fauxqs emulator', async (): Promise<QueueFixture> => {
  const prefix = `c${++prefixes}-`
  const queues: SqsQueue<unknown>[] = []
  const track = <T>(q: SqsQueue<T>) => {
    queues.push(q as SqsQueue<unknown>)
    return q
  }
  return {
    create: (name, options) => track(makeQueue(name, { ...options, prefix })),
    // a second client, as another worker process would have
    connect: (name, options) => track(makeQueue(name, { ...options, prefix })),
    async transaction(fn) {
      await db.db.transaction(fn)
      await new OutboxRelay({ db: db.db, queues, log }).flush()
    },
    detectsStaleReceipts: false,
    close: async () => {},
  }
})

describe('SqsQueue specifics', () => {
  it('a dead job lands in the dead-letter queue the redrive policy names, body intact', async () => {
    const queue = makeQueue<{ messageId: string }>('dlq', { maxReceives: 1, prefix: 's1-' })
    await queue.send({ messageId: 'poison' })
    const [job] = await queue.receive({ visibilityTimeout: 60 })
    await queue.changeVisibility(job?.receipt ?? '', 0)
    expect(await queue.receive()).toEqual([])
    expect(queue.deadLetterUrl).toBe(`${sqs.queueUrlPrefix}s1-dlq-dead`)
    const out = await queue.client.send(new ReceiveMessageCommand({ QueueUrl: queue.deadLetterUrl }))
    expect(out.Messages?.map((m) => JSON.parse(m.Body ?? ''))).toEqual([{ messageId: 'poison' }])
  })

  it('a delay beyond the SQS cap is re-sent until due, without counting as a receive', async () => {
    // the cap lowered from 900 to 1 second, so that the re-send happens within a test
    const queue = makeQueue<string>('long-delay', { prefix: 's2-', maxDelaySeconds: 1 })
    const sent = Date.now()
    await queue.send('in three seconds', { delaySeconds: 3 })
    // polling all along: the early copies are re-sent, never handed out
    const got = await queue.receive({ waitSeconds: 6, visibilityTimeout: 30 })
    const early = Date.now() - sent
    expect(got.map((j) => j.body)).toEqual(['in three seconds'])
    expect(early).toBeGreaterThanOrEqual(2_000)
    expect(early).toBeLessThan(5_500)
    expect(got[0]?.receiveCount).toBe(1)
    // sentAt is the original send, not the last re-send
    expect(Math.abs((got[0]?.sentAt.getTime() ?? 0) - sent)).toBeLessThan(1_000)
  })

  it('send with tx writes an outbox row and nothing reaches SQS until the relay runs', async () => {
    const queue = makeQueue<{ messageId: string }>('outbox-only', { prefix: 's3-' })
    await queue.ensure()
    await db.db.transaction(async (tx) => {
      expect(await queue.send({ messageId: 'm-1' }, { tx })).toMatch(/^outbox:\d+$/)
    })
    expect(await queue.receive({ waitSeconds: 1 })).toEqual([])
    const relay = new OutboxRelay({ db: db.db, queues: [queue as SqsQueue<unknown>], log })
    expect(await relay.flush()).toBe(1)
    expect((await queue.receive()).map((j) => j.body)).toEqual([{ messageId: 'm-1' }])
    expect(await relay.backlog()).toMatchObject({ rows: 0 })
  })

  it('a send in the same transaction as a delete of the job it replaces: both or neither', async () => {
    const queue = makeQueue<string>('replace', { prefix: 's4-' })
    await queue.send('first try')
    const [job] = await queue.receive({ visibilityTimeout: 1 })
    await db.db.transaction(async (tx) => {
      await queue.send('second try', { tx, delaySeconds: 1 })
      await queue.delete(job?.receipt ?? '', { tx })
    })
    await new OutboxRelay({ db: db.db, queues: [queue as SqsQueue<unknown>], log }).flush()
    await sleep(1_200)
    const after = await queue.receive({ max: 10, waitSeconds: 2 })
    expect(after.map((j) => j.body)).toEqual(['second try'])
  })

  it('direct SQS calls with a stale receipt do nothing', async () => {
    const queue = makeQueue<string>('stale', { prefix: 's5-' })
    await queue.send('x')
    const [job] = await queue.receive({ visibilityTimeout: 30 })
    await queue.client.send(
      new DeleteMessageCommand({ QueueUrl: queue.queueUrl, ReceiptHandle: job?.receipt }),
    )
    expect(await queue.changeVisibility(job?.receipt ?? '', 0)).toBe(false)
    expect(await db.db.select().from(queueOutbox)).toEqual([])
  })
})
