import { randomBytes } from 'node:crypto'
import type { Executor } from '@moat/db'
import { createLogger } from '@moat/log'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { consume, JobTooLargeError, MAX_JOB_BYTES, type Queue, type ReceivedJob } from '../src/index'

/**
 * What a queue backend must give the contract suite. Each call of `create` must return a queue
 * that no other test uses; `connect` opens the same queue through a second, independent client
 * (another pool or process), as a separate worker would.
 */
export interface QueueFixture {
  create<T>(name: string, options?: { maxReceives?: number }): Queue<T>
  connect<T>(name: string, options?: { maxReceives?: number }): Queue<T>
  /**
   * Runs `fn` in a transaction that `send(..., { tx })` can join. Rejects with `fn`'s error after
   * rolling back. (SQS: the jobs go through the outbox, and this resolves once the relay carried them.)
   */
  transaction(fn: (tx: Executor) => Promise<void>): Promise<void>
  /** `delete` answers `false` for a stale or used receipt (PostgreSQL); SQS cannot tell and answers `true` */
  detectsStaleReceipts: boolean
  close(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const uniqueName = (label: string) => `${label}-${randomBytes(4).toString('hex')}`

/**
 * The behaviour every `Queue` implementation must have (SQS semantics). `PostgresQueue` and
 * `SqsQueue` both run it, each with its own fixture.
 *
 * @example
 * queueContract('PostgresQueue', async () => ({ create: (name) => new PostgresQueue(db, name), ... }))
 */
export function queueContract(label: string, makeFixture: () => Promise<QueueFixture>): void {
  describe(`queue contract: ${label}`, () => {
    let fx: QueueFixture
    const create = <T>(options?: { maxReceives?: number }) => fx.create<T>(uniqueName('q'), options)

    beforeAll(async () => {
      fx = await makeFixture()
    })
    afterAll(async () => {
      await fx?.close()
    })

    it('sends, receives and deletes a job, keeping its body intact', async () => {
      const queue = create<{ messageId: string; tags: string[]; nested: { n: number } }>()
      const body = { messageId: 'm-1 ✉ ünïcode', tags: ['a', 'b'], nested: { n: 42 } }
      const before = Date.now()
      const id = await queue.send(body)

      const [job, ...rest] = await queue.receive({ visibilityTimeout: 30 })
      expect(rest).toEqual([])
      expect(job).toMatchObject({ id, body, receiveCount: 1 })
      expect(job?.receipt).toEqual(expect.any(String))
      expect(job?.sentAt).toBeInstanceOf(Date)
      expect(Math.abs((job?.sentAt.getTime() ?? 0) - before)).toBeLessThan(5_000)

      expect(await queue.delete(job?.receipt ?? '')).toBe(true)
      // deleting twice is harmless
      expect(await queue.delete(job?.receipt ?? '')).toBe(!fx.detectsStaleReceipts)
      expect(await queue.receive()).toEqual([])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
    })

    it('receive hands out at most `max` jobs and nothing from other queues', async () => {
      const queue = create<number>()
      const other = create<number>()
      for (let i = 0; i < 5; i++) await queue.send(i)
      await other.send(99)

      const first = await queue.receive({ max: 3 })
      const second = await queue.receive({ max: 3 })
      expect(first).toHaveLength(3)
      expect(second).toHaveLength(2)
      expect([...first, ...second].map((j) => j.body).sort()).toEqual([0, 1, 2, 3, 4])
      expect(await queue.receive({ max: 3 })).toEqual([])
      expect((await other.receive({ max: 10 })).map((j) => j.body)).toEqual([99])
    })

    it('hides a received job until its visibility timeout passes, then hands it out again with a new receipt', async () => {
      const queue = create<string>()
      await queue.send('again')
      const [first] = await queue.receive({ visibilityTimeout: 1 })
      expect(first?.receiveCount).toBe(1)
      expect(await queue.receive()).toEqual([])
      expect(await queue.depth()).toMatchObject({ visible: 0, inFlight: 1 })

      const [second] = await queue.receive({ visibilityTimeout: 30, waitSeconds: 5 })
      expect(second).toMatchObject({ id: first?.id, body: 'again', receiveCount: 2 })
      expect(second?.receipt).not.toBe(first?.receipt)

      // the first receiver's receipt is stale: it can neither delete nor extend the job
      expect(await queue.delete(first?.receipt ?? '')).toBe(!fx.detectsStaleReceipts)
      expect(await queue.depth()).toMatchObject({ visible: 0, inFlight: 1 })
      expect(await queue.changeVisibility(first?.receipt ?? '', 0)).toBe(false)
      expect(await queue.receive()).toEqual([])
      expect(await queue.delete(second?.receipt ?? '')).toBe(true)
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
    })

    it(`refuses a job over ${MAX_JOB_BYTES} bytes, in or out of a transaction, and queues nothing`, async () => {
      const queue = create<{ messageId: string; raw?: string }>()
      const big = { messageId: 'm', raw: 'x'.repeat(MAX_JOB_BYTES) }
      const bytes = Buffer.byteLength(JSON.stringify(big))
      const message = `queue ${queue.name}: a job of ${bytes} bytes is over the ${MAX_JOB_BYTES}-byte limit; jobs carry references (ids, object keys), never message content`
      await expect(queue.send(big)).rejects.toThrow(new JobTooLargeError(queue.name, bytes))
      await expect(queue.send(big)).rejects.toThrow(message)
      await expect(fx.transaction(async (tx) => void (await queue.send(big, { tx })))).rejects.toThrow(
        message,
      )
      // just under the limit is fine
      const fits = { messageId: 'm', raw: 'x'.repeat(MAX_JOB_BYTES - 40) }
      expect(Buffer.byteLength(JSON.stringify(fits))).toBeLessThanOrEqual(MAX_JOB_BYTES)
      await queue.send(fits)
      expect((await queue.receive()).map((j) => j.body.raw?.length)).toEqual([MAX_JOB_BYTES - 40])
      expect(await queue.depth()).toMatchObject({ visible: 0, delayed: 0, dead: 0 })
    })

    it('delaySeconds hides a job until it is due', async () => {
      const queue = create<string>()
      const sent = Date.now()
      await queue.send('later', { delaySeconds: 1 })
      expect(await queue.receive()).toEqual([])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 1, inFlight: 0, dead: 0 })

      const [job] = await queue.receive({ waitSeconds: 5 })
      expect(job?.body).toBe('later')
      expect(Date.now() - sent).toBeGreaterThanOrEqual(900)
      expect(Date.now() - sent).toBeLessThan(4_000)
    })

    it('depth counts visible, delayed, in-flight and dead jobs separately', async () => {
      const queue = create<string>()
      await queue.send('a')
      await queue.send('b')
      await queue.send('c', { delaySeconds: 60 })
      await queue.receive({ visibilityTimeout: 60 })
      expect(await queue.depth()).toEqual({ visible: 1, delayed: 1, inFlight: 1, dead: 0 })
    })

    it('a long poll returns as soon as a job is sent, not when the wait ends', async () => {
      const queue = create<string>()
      const started = Date.now()
      const receiving = queue.receive({ waitSeconds: 10 })
      await sleep(200)
      await queue.send('wake up')
      const jobs = await receiving
      expect(jobs.map((j) => j.body)).toEqual(['wake up'])
      expect(Date.now() - started).toBeLessThan(2_000)
    })

    it('a long poll on another client returns soon after a job is sent', async () => {
      const name = uniqueName('q')
      const sender = fx.create<string>(name)
      const receiver = fx.connect<string>(name)
      const started = Date.now()
      const receiving = receiver.receive({ waitSeconds: 10 })
      await sleep(200)
      await sender.send('from afar')
      expect((await receiving).map((j) => j.body)).toEqual(['from afar'])
      expect(Date.now() - started).toBeLessThan(3_000)
    })

    it('an empty long poll waits about waitSeconds and returns nothing; aborting ends it early', async () => {
      const queue = create<string>()
      let started = Date.now()
      expect(await queue.receive({ waitSeconds: 1 })).toEqual([])
      expect(Date.now() - started).toBeGreaterThanOrEqual(900)
      expect(Date.now() - started).toBeLessThan(3_000)

      const controller = new AbortController()
      started = Date.now()
      setTimeout(() => controller.abort(), 100)
      expect(await queue.receive({ waitSeconds: 10, signal: controller.signal })).toEqual([])
      expect(Date.now() - started).toBeLessThan(2_000)
    })

    it('changeVisibility(receipt, 0) makes a job visible again at once; a longer one keeps it hidden', async () => {
      const queue = create<string>()
      await queue.send('retry me')
      const [first] = await queue.receive({ visibilityTimeout: 60 })
      expect(await queue.changeVisibility(first?.receipt ?? '', 0)).toBe(true)
      const [second] = await queue.receive({ visibilityTimeout: 1 })
      expect(second).toMatchObject({ id: first?.id, receiveCount: 2 })

      // extending the timeout outlasts the original one
      expect(await queue.changeVisibility(second?.receipt ?? '', 60)).toBe(true)
      await sleep(1_300)
      expect(await queue.receive()).toEqual([])
      expect(await queue.depth()).toMatchObject({ visible: 0, inFlight: 1 })
    })

    it('a waiting long poll picks up a job made visible by changeVisibility(receipt, 0)', async () => {
      const queue = create<string>()
      await queue.send('bounce')
      const [job] = await queue.receive({ visibilityTimeout: 60 })
      const started = Date.now()
      const receiving = queue.receive({ waitSeconds: 10 })
      await sleep(200)
      await queue.changeVisibility(job?.receipt ?? '', 0)
      expect((await receiving).map((j) => j.receiveCount)).toEqual([2])
      expect(Date.now() - started).toBeLessThan(2_000)
    })

    it('after maxReceives receives a job goes to the dead-letter queue and is not handed out again', async () => {
      const queue = create<string>({ maxReceives: 2 })
      await queue.send('poison')
      const [first] = await queue.receive({ visibilityTimeout: 60 })
      await queue.changeVisibility(first?.receipt ?? '', 0)
      const [second] = await queue.receive({ visibilityTimeout: 60 })
      expect(second?.receiveCount).toBe(2)
      await queue.changeVisibility(second?.receipt ?? '', 0)

      expect(await queue.receive({ max: 10 })).toEqual([])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 1 })
      expect(await queue.delete(second?.receipt ?? '')).toBe(!fx.detectsStaleReceipts)
      expect(await queue.receive({ max: 10, waitSeconds: 1 })).toEqual([])
      expect((await queue.depth()).dead).toBe(1)
    })

    it('a job whose visibility timeout ran out maxReceives times is dead-lettered too', async () => {
      const queue = create<string>({ maxReceives: 1 })
      await queue.send('slow')
      const [job] = await queue.receive({ visibilityTimeout: 1 })
      expect(job?.receiveCount).toBe(1)
      await sleep(1_200)
      expect(await queue.receive()).toEqual([])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 1 })
    })

    it('a job sent in a transaction that rolls back never exists; one that commits does', async () => {
      const queue = create<string>()
      const failure = new Error('rolled back on purpose')
      await expect(
        fx.transaction(async (tx) => {
          await queue.send('ghost', { tx })
          throw failure
        }),
      ).rejects.toBe(failure)
      expect(await queue.receive({ waitSeconds: 1 })).toEqual([])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })

      await fx.transaction(async (tx) => {
        await queue.send('real', { tx })
      })
      expect((await queue.receive()).map((j) => j.body)).toEqual(['real'])
    })

    it('deleting inside a transaction that rolls back keeps the job', async () => {
      const queue = create<string>()
      await queue.send('keep')
      const [job] = await queue.receive({ visibilityTimeout: 1 })
      await expect(
        fx.transaction(async (tx) => {
          expect(await queue.delete(job?.receipt ?? '', { tx })).toBe(true)
          throw new Error('undo')
        }),
      ).rejects.toThrow('undo')
      const [again] = await queue.receive({ waitSeconds: 5 })
      expect(again).toMatchObject({ id: job?.id, receiveCount: 2 })
    })

    it('concurrent receivers on two clients never get the same job and together get all of them', async () => {
      const name = uniqueName('q')
      const a = fx.create<number>(name)
      const b = fx.connect<number>(name)
      const total = 200
      await Promise.all(Array.from({ length: total }, (_, i) => a.send(i)))

      const loop = async (queue: Queue<number>): Promise<ReceivedJob<number>[]> => {
        const got: ReceivedJob<number>[] = []
        for (;;) {
          const jobs = await queue.receive({ max: 5, visibilityTimeout: 120 })
          if (!jobs.length) return got
          got.push(...jobs)
        }
      }
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => loop(i % 2 ? b : a)))
      const all = results.flat()
      const ids = all.map((j) => j.id)
      expect(new Set(ids).size).toBe(ids.length)
      expect(new Set(all.map((j) => j.receipt)).size).toBe(all.length)
      expect(all.map((j) => j.body).sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, i) => i))
      expect(all.every((j) => j.receiveCount === 1)).toBe(true)
      // both clients took part
      expect(results.filter((_r, i) => i % 2 === 1).flat().length).toBeGreaterThan(0)
      expect(results.filter((_r, i) => i % 2 === 0).flat().length).toBeGreaterThan(0)
      expect(await a.depth()).toEqual({ visible: 0, delayed: 0, inFlight: total, dead: 0 })
    })

    it('consume() processes every job with at most `concurrency` handlers in flight', async () => {
      const queue = create<number>()
      const total = 30
      for (let i = 0; i < total; i++) await queue.send(i)
      let inFlight = 0
      let maxInFlight = 0
      const done: number[] = []
      let allDone!: () => void
      const finished = new Promise<void>((resolve) => {
        allDone = resolve
      })
      const consumer = consume(queue, {
        concurrency: 4,
        visibilityTimeout: 60,
        log: createLogger({ level: 'silent' }),
        async handle(job) {
          inFlight++
          maxInFlight = Math.max(maxInFlight, inFlight)
          await sleep(20)
          await queue.delete(job.receipt)
          done.push(job.body)
          inFlight--
          if (done.length === total) allDone()
        },
      })
      await Promise.race([finished, sleep(20_000)])
      await consumer.stop(5_000)
      expect(done.sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, i) => i))
      expect(maxInFlight).toBeLessThanOrEqual(4)
      expect(maxInFlight).toBeGreaterThan(1)
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
    })

    it('consume() retries a job whose handler threw, after its visibility timeout', async () => {
      const queue = create<string>()
      await queue.send('flaky')
      const attempts: number[] = []
      let succeeded!: () => void
      const done = new Promise<void>((resolve) => {
        succeeded = resolve
      })
      const consumer = consume(queue, {
        concurrency: 2,
        visibilityTimeout: 1,
        log: createLogger({ level: 'silent' }),
        async handle(job) {
          attempts.push(job.receiveCount)
          if (job.receiveCount === 1) throw new Error('transient failure')
          await queue.delete(job.receipt)
          succeeded()
        },
      })
      await Promise.race([done, sleep(10_000)])
      await consumer.stop(5_000)
      expect(attempts).toEqual([1, 2])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
    })

    it('consume() keeps a slow job hidden while its handler runs, so no other worker gets it', async () => {
      const queue = create<string>()
      const other = fx.connect<string>(queue.name)
      await queue.send('slow')
      let finished!: () => void
      const done = new Promise<void>((resolve) => {
        finished = resolve
      })
      const runs: number[] = []
      const consumer = consume(queue, {
        concurrency: 1,
        visibilityTimeout: 1,
        log: createLogger({ level: 'silent' }),
        async handle(job) {
          runs.push(job.receiveCount)
          await sleep(3_500) // three and a half visibility timeouts
          await queue.delete(job.receipt)
          finished()
        },
      })
      // once the handler has the job, another worker polling all along never sees it
      while (!runs.length) await sleep(10)
      const stolen: unknown[] = []
      const deadline = Date.now() + 3_000
      while (Date.now() < deadline)
        stolen.push(...(await other.receive({ visibilityTimeout: 30, waitSeconds: 0.2 })))
      await done
      await consumer.stop(5_000)
      expect(stolen).toEqual([])
      expect(runs).toEqual([1])
      expect(await queue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })
    })

    it('consume().stop() waits for running handlers and takes no new jobs', async () => {
      const queue = create<string>()
      await queue.send('long job')
      let started!: () => void
      const handlerStarted = new Promise<void>((resolve) => {
        started = resolve
      })
      let finishedAt = 0
      const handled: string[] = []
      const consumer = consume(queue, {
        concurrency: 2,
        visibilityTimeout: 60,
        log: createLogger({ level: 'silent' }),
        async handle(job) {
          handled.push(job.body)
          started()
          await sleep(500)
          await queue.delete(job.receipt)
          finishedAt = Date.now()
        },
      })
      await Promise.race([handlerStarted, sleep(10_000)])
      expect(handled).toEqual(['long job'])
      const stopping = Date.now()
      await consumer.stop(5_000)
      const stopped = Date.now()
      expect(finishedAt).toBeGreaterThan(0)
      expect(finishedAt).toBeLessThanOrEqual(stopped)
      expect(stopped - stopping).toBeLessThan(4_000)

      await queue.send('after stop')
      await sleep(700)
      expect(handled).toEqual(['long job'])
      expect(await queue.depth()).toEqual({ visible: 1, delayed: 0, inFlight: 0, dead: 0 })
    })

    it('consume().stop() gives up on a handler that outlives the timeout and releases its job', async () => {
      const queue = create<string>()
      await queue.send('stuck')
      let started!: () => void
      const handlerStarted = new Promise<void>((resolve) => {
        started = resolve
      })
      let release!: () => void
      const stuck = new Promise<void>((resolve) => {
        release = resolve
      })
      const consumer = consume(queue, {
        concurrency: 1,
        visibilityTimeout: 60,
        log: createLogger({ level: 'silent' }),
        async handle() {
          started()
          await stuck
        },
      })
      await Promise.race([handlerStarted, sleep(10_000)])
      const stopping = Date.now()
      await consumer.stop(300)
      expect(Date.now() - stopping).toBeGreaterThanOrEqual(250)
      expect(Date.now() - stopping).toBeLessThan(3_000)
      // released: visible again for another worker at once, not after the 60 s visibility timeout
      expect(await queue.depth()).toMatchObject({ visible: 1, inFlight: 0 })
      const [again] = await fx.connect<string>(queue.name).receive({ visibilityTimeout: 30 })
      expect(again).toMatchObject({ body: 'stuck', receiveCount: 2 })
      release()
    })
  })
}
