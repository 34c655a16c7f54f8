import { type ChildProcess, spawn } from 'node:child_process'
import path from 'node:path'
import { S3ObjectStore } from '@moat/blobstore'
import { messageEvents, queueOutbox } from '@moat/db'
import { createLogger } from '@moat/log'
import { OutboxRelay, type SqsQueue } from '@moat/queue'
import {
  eventually,
  freePort,
  type Harness,
  type SmtpSink,
  startHarness,
  startSmtpSink,
  startSqsEmulator,
  type TestSqs,
} from '@moat/testkit'
import { and, eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const silent = createLogger({ level: 'silent' })
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')
/** the queue path is under test here, not the verdicts: scanning is off to keep it quick */
const QUICK = { MOAT_VIRUS_SCAN: 'off', MOAT_SPAM_SCAN: 'off' }

function mail(subject: string) {
  return { from: 'alice@sender.example', to: 'bob@acme.test', subject, text: `${subject}\n` }
}

/**
 * The stack on SQS and S3: the `fauxqs` emulator on loopback (in this process, SQS and S3
 * wire-protocol endpoints; no AWS). Ingest writes the scan job to the outbox in the message's
 * transaction; the relay carries it to SQS; raw messages are objects in a bucket.
 */
describe('on SQS and S3, with the transactional outbox', () => {
  let sqs: TestSqs
  let h: Harness
  let sink: SmtpSink

  beforeAll(async () => {
    sqs = await startSqsEmulator()
    sink = await startSmtpSink()
    const store = new S3ObjectStore({ ...sqs.s3.options(sqs.s3.bucket()), prefix: 'moat/' })
    h = await startHarness({ env: { ...sqs.env('e2e-'), ...QUICK }, store })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}`] })
  })
  afterAll(async () => {
    await h?.close()
    await sink?.stop()
    await sqs?.stop()
  })

  const outboxRows = async () => (await h.stack.database.db.select().from(queueOutbox)).length
  const events = async (queueId: string, type: string) => {
    const [trace] = await import('@moat/core').then((core) => core.showMessage(h.stack.database.db, queueId))
    return (
      await h.stack.database.db
        .select()
        .from(messageEvents)
        .where(and(eq(messageEvents.messageId, trace?.message.id ?? ''), eq(messageEvents.kind, type)))
    ).length
  }
  const queues = () => [h.stack.scanQueue, h.stack.deliverQueue, h.stack.archiveQueue] as SqsQueue<unknown>[]

  it('a message goes ingest → SQS scan → SQS deliver → the customer, and the outbox empties', async () => {
    const queueId = await h.send(mail('through SQS'))
    await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(sink.messages.filter((m) => m.raw.includes('Subject: through SQS'))).toHaveLength(1)
    await eventually('the outbox to empty', async () => (await outboxRows()) === 0)
    expect(await h.stack.scanQueue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
  })

  it('a crash between the commit and the send to SQS loses nothing: another relay sends it later', async () => {
    const relay = h.stack.relay
    if (!relay) throw new Error('no outbox relay on SQS')
    // this process's relay "dies" right after ingest committed: the job is only in the outbox
    await relay.stop()
    const queueId = await h.send(mail('relay died'))
    expect(await outboxRows()).toBe(1)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(await h.stack.scanQueue.depth()).toMatchObject({ visible: 0, inFlight: 0 })
    const [waiting] = await import('@moat/core').then((core) =>
      core.showMessage(h.stack.database.db, queueId),
    )
    expect(waiting?.message.status).toBe('received')

    // a relay in any other process (here: a new one) finds the committed row and sends it
    const other = new OutboxRelay({ db: h.stack.database.db, queues: queues(), log: silent })
    other.start()
    try {
      await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    } finally {
      await other.stop()
      relay.start()
    }
    expect(sink.messages.filter((m) => m.raw.includes('Subject: relay died'))).toHaveLength(1)
    expect(await events(queueId, 'scanned')).toBe(1)
  })

  it('a relay that dies after SQS took the job but before it cleared the row sends it twice; the scan worker does the work once', async () => {
    const relay = h.stack.relay
    if (!relay) throw new Error('no outbox relay on SQS')
    await relay.stop()
    const queueId = await h.send(mail('sent twice'))
    const dying = new OutboxRelay({
      db: h.stack.database.db,
      queues: queues(),
      log: silent,
      claimSeconds: 1,
      afterSend: async () => {
        throw new Error('killed after sending, before clearing the outbox')
      },
    })
    await expect(dying.round()).rejects.toThrow('killed after sending, before clearing the outbox')
    expect(await outboxRows()).toBe(1)
    // the claim runs out; the next relay sends the same job again
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    relay.start()
    await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    await eventually('both copies of the scan job to be consumed', async () => {
      const d = await h.stack.scanQueue.depth()
      return d.visible + d.inFlight + d.delayed === 0 && (await outboxRows()) === 0
    })
    // one verdict, one delivery, one copy at the customer
    expect(await events(queueId, 'scanned')).toBe(1)
    expect(await events(queueId, 'delivered')).toBe(1)
    expect(sink.messages.filter((m) => m.raw.includes('Subject: sent twice'))).toHaveLength(1)
  })
})

function scanWorker(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [MOAT, 'start', '--only', 'scan'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[scan worker] ${d}`))
  return child
}

async function scrape(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line ? Number(line.slice(name.length + 1)) : 0
}

describe('two scan worker processes against one database and queue', () => {
  let h: Harness
  let sink: SmtpSink
  const workers: { child: ChildProcess; port: number }[] = []

  beforeAll(async () => {
    sink = await startSmtpSink()
    h = await startHarness({ only: ['ingest', 'deliver'], env: QUICK })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}`] })
  })
  afterAll(async () => {
    for (const w of workers) w.child.kill('SIGKILL')
    await h?.close()
    await sink?.stop()
  })

  it('share the work, each message scanned once, and stop gracefully on SIGTERM', async () => {
    for (let i = 0; i < 2; i++) {
      const port = await freePort()
      // each with one job at a time, so that neither can take the whole batch
      workers.push({
        child: scanWorker({ ...h.env, MOAT_METRICS_PORT: String(port), MOAT_SCAN_CONCURRENCY: '1' }),
        port,
      })
    }
    for (const w of workers)
      await eventually(
        'the scan worker to be ready',
        async () => (await fetch(`http://127.0.0.1:${w.port}/readyz`).catch(() => undefined))?.status === 200,
        30_000,
      )

    const total = 16
    const ids = await Promise.all(Array.from({ length: total }, (_, i) => h.send(mail(`batch ${i}`))))
    for (const id of ids) await h.traceWhen(id, (t) => t.message.status === 'delivered', 30_000)

    const name = 'moat_scan_verdicts_total{action="deliver",virus="not_scanned"}'
    const counts = await Promise.all(workers.map((w) => scrape(w.port, name)))
    expect(counts.reduce((a, b) => a + b, 0)).toBe(total)
    expect(Math.min(...counts)).toBeGreaterThan(0)
    for (const id of ids)
      expect(await h.traceWhen(id, (t) => t.events.filter((e) => e.kind === 'scanned').length === 1))
    expect(sink.messages).toHaveLength(total)

    // SIGTERM: each worker finishes, releases nothing it still holds, and exits 0 within the deadline
    const exits = workers.map(
      (w) => new Promise<number | null>((resolve) => w.child.once('exit', (code) => resolve(code))),
    )
    const stopping = Date.now()
    for (const w of workers) w.child.kill('SIGTERM')
    expect(await Promise.all(exits)).toEqual([0, 0])
    expect(Date.now() - stopping).toBeLessThan(10_000)
  })
})
