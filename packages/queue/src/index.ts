import { EventEmitter } from 'node:events'
import { type Executor, queueJobs } from '@moat/db'
import type { Logger } from '@moat/log'
import { and, eq, sql } from 'drizzle-orm'

export interface ReceivedJob<T> {
  id: number
  body: T
  /** proof of this receive; `delete` and `changeVisibility` need it, and it changes on each receive */
  receipt: string
  /** how many times the job has been received, this time included */
  receiveCount: number
  sentAt: Date
}

export interface SendOptions {
  delaySeconds?: number
  /** send inside this transaction: the job exists only if the transaction commits */
  tx?: Executor
}

export interface ReceiveOptions {
  max?: number
  visibilityTimeout?: number
  /** long poll: wait up to this long for a job to become visible */
  waitSeconds?: number
  signal?: AbortSignal
}

/** SQS semantics: at-least-once delivery, visibility timeout, delays, dead-lettering. */
export interface Queue<T> {
  readonly name: string
  send(body: T, options?: SendOptions): Promise<number>
  receive(options?: ReceiveOptions): Promise<ReceivedJob<T>[]>
  delete(receipt: string, options?: { tx?: Executor }): Promise<boolean>
  changeVisibility(receipt: string, seconds: number, options?: { tx?: Executor }): Promise<boolean>
  depth(): Promise<{ visible: number; delayed: number; inFlight: number; dead: number }>
}

const wakeups = new EventEmitter()
wakeups.setMaxListeners(0)

/**
 * A queue on the `queue_jobs` table. Receivers take jobs with `FOR UPDATE SKIP LOCKED`, so any
 * number of workers in any number of processes share a queue without taking the same job. A job
 * received `maxReceives` times without being deleted moves to `<name>.dead` instead.
 *
 * @example
 * const scan = new PostgresQueue<{ messageId: string }>(db, 'scan', { maxReceives: 10 })
 * await db.transaction(async (tx) => { ...; await scan.send({ messageId }, { tx }) })
 * const [job] = await scan.receive({ visibilityTimeout: 300, waitSeconds: 5 })
 */
export class PostgresQueue<T> implements Queue<T> {
  readonly deadLetterName: string
  private readonly maxReceives: number
  private readonly pollMs: number

  constructor(
    private readonly db: Executor,
    readonly name: string,
    options: { maxReceives?: number; pollMs?: number } = {},
  ) {
    this.deadLetterName = `${name}.dead`
    this.maxReceives = options.maxReceives ?? 10
    this.pollMs = options.pollMs ?? 250
  }

  async send(body: T, options: SendOptions = {}): Promise<number> {
    const delay = Math.max(0, options.delaySeconds ?? 0)
    const [row] = await (options.tx ?? this.db)
      .insert(queueJobs)
      .values({
        queue: this.name,
        body: body as object,
        visibleAt: sql`now() + make_interval(secs => ${delay})`,
      })
      .returning({ id: queueJobs.id })
    if (!row) throw new Error(`queue ${this.name}: insert returned no row`)
    // wake local receivers; those in other processes find it on their next poll
    if (delay === 0) setImmediate(() => wakeups.emit(this.name))
    return row.id
  }

  async receive(options: ReceiveOptions = {}): Promise<ReceivedJob<T>[]> {
    const max = options.max ?? 1
    const visibility = options.visibilityTimeout ?? 30
    const deadline = Date.now() + (options.waitSeconds ?? 0) * 1000
    for (;;) {
      const jobs = await this.receiveNow(max, visibility)
      const remaining = deadline - Date.now()
      if (jobs.length || remaining <= 0 || options.signal?.aborted) return jobs
      await this.waitForWork(Math.min(remaining, this.pollMs), options.signal)
    }
  }

  private async receiveNow(max: number, visibility: number): Promise<ReceivedJob<T>[]> {
    // One statement: jobs received maxReceives times that came back move to the dead-letter queue
    // (a data-modifying CTE always runs), and up to `max` others are taken.
    const rows = await this.db.execute<{
      id: string
      body: T
      receipt: string
      receive_count: number
      sent_at: string
    }>(sql`
      with dead as (
        update queue_jobs set queue = ${this.deadLetterName}, receipt = null
        where id in (
          select id from queue_jobs
          where queue = ${this.name} and visible_at <= now() and receive_count >= ${this.maxReceives}
          for update skip locked
        )
        returning id
      )
      update queue_jobs j
      set visible_at = now() + make_interval(secs => ${visibility}),
          receive_count = j.receive_count + 1,
          receipt = md5(random()::text || clock_timestamp()::text || j.id::text)
      from (
        select id from queue_jobs
        where queue = ${this.name} and visible_at <= now() and receive_count < ${this.maxReceives}
        order by visible_at, id
        limit ${max}
        for update skip locked
      ) picked
      where j.id = picked.id
      returning j.id, j.body, j.receipt, j.receive_count, j.sent_at`)
    return rows.map((r) => ({
      id: Number(r.id),
      body: r.body,
      receipt: r.receipt,
      receiveCount: r.receive_count,
      sentAt: new Date(r.sent_at),
    }))
  }

  private waitForWork(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        wakeups.off(this.name, done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      wakeups.on(this.name, done)
      signal?.addEventListener('abort', done)
    })
  }

  async delete(receipt: string, options: { tx?: Executor } = {}): Promise<boolean> {
    const rows = await (options.tx ?? this.db)
      .delete(queueJobs)
      .where(and(eq(queueJobs.queue, this.name), eq(queueJobs.receipt, receipt)))
      .returning({ id: queueJobs.id })
    return rows.length > 0
  }

  async changeVisibility(
    receipt: string,
    seconds: number,
    options: { tx?: Executor } = {},
  ): Promise<boolean> {
    const rows = await (options.tx ?? this.db)
      .update(queueJobs)
      .set({ visibleAt: sql`now() + make_interval(secs => ${Math.max(0, seconds)})` })
      .where(and(eq(queueJobs.queue, this.name), eq(queueJobs.receipt, receipt)))
      .returning({ id: queueJobs.id })
    if (rows.length && seconds <= 0) setImmediate(() => wakeups.emit(this.name))
    return rows.length > 0
  }

  async depth(): Promise<{ visible: number; delayed: number; inFlight: number; dead: number }> {
    const [row] = await this.db.execute<{
      visible: number
      delayed: number
      in_flight: number
      dead: number
    }>(sql`
      select
        count(*) filter (where queue = ${this.name} and visible_at <= now())::int as visible,
        count(*) filter (where queue = ${this.name} and visible_at > now() and receipt is null)::int as delayed,
        count(*) filter (where queue = ${this.name} and visible_at > now() and receipt is not null)::int as in_flight,
        count(*) filter (where queue = ${this.deadLetterName})::int as dead
      from queue_jobs where queue in (${this.name}, ${this.deadLetterName})`)
    return {
      visible: row?.visible ?? 0,
      delayed: row?.delayed ?? 0,
      inFlight: row?.in_flight ?? 0,
      dead: row?.dead ?? 0,
    }
  }
}

export interface Consumer {
  /** Stops taking jobs and waits for running ones, up to `timeoutMs`; unfinished jobs reappear later. */
  stop(timeoutMs?: number): Promise<void>
}

/**
 * Runs `handle` on jobs from `queue` with at most `concurrency` at once. The handler deletes its
 * job itself (inside the transaction that records the outcome); a handler that throws leaves the
 * job to reappear after its visibility timeout. While a handler runs, its job's visibility is
 * extended every half timeout, so only a dead worker's jobs come back.
 */
export function consume<T>(
  queue: Queue<T>,
  options: {
    concurrency: number
    visibilityTimeout: number
    log: Logger
    handle: (job: ReceivedJob<T>) => Promise<void>
  },
): Consumer {
  const controller = new AbortController()
  const running = new Set<Promise<void>>()
  let slotFreed: () => void = () => {}

  const loop = async (): Promise<void> => {
    while (!controller.signal.aborted) {
      if (running.size >= options.concurrency) {
        await new Promise<void>((resolve) => {
          slotFreed = resolve
        })
        continue
      }
      let jobs: ReceivedJob<T>[]
      try {
        jobs = await queue.receive({
          max: options.concurrency - running.size,
          visibilityTimeout: options.visibilityTimeout,
          waitSeconds: 5,
          signal: controller.signal,
        })
      } catch (err) {
        if (controller.signal.aborted) return
        options.log.error({ err, queue: queue.name }, 'receiving jobs failed; retrying in 1s')
        await new Promise((resolve) => setTimeout(resolve, 1000))
        continue
      }
      for (const job of jobs) {
        // while the handler runs, keep the job hidden: a slow job must not be handed to a second
        // worker; if this process dies, the extensions stop and the job comes back
        const heartbeat = setInterval(
          () => {
            queue.changeVisibility(job.receipt, options.visibilityTimeout).catch(() => {})
          },
          (options.visibilityTimeout * 1000) / 2,
        )
        const task = options
          .handle(job)
          .catch((err: unknown) => {
            options.log.error({ err, queue: queue.name, jobId: job.id }, 'job failed; it will be retried')
          })
          .finally(() => {
            clearInterval(heartbeat)
            running.delete(task)
            slotFreed()
          })
        running.add(task)
      }
    }
  }
  const looping = loop()

  return {
    async stop(timeoutMs = 30_000) {
      controller.abort()
      slotFreed()
      await looping
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        Promise.all(running),
        new Promise((resolve) => {
          timer = setTimeout(resolve, timeoutMs)
        }),
      ])
      clearTimeout(timer)
    },
  }
}
