import { EventEmitter } from 'node:events'
import { type Executor, queueJobs } from '@moat/db'
import { and, eq, sql } from 'drizzle-orm'
import {
  encodeJob,
  type Queue,
  type QueueDepth,
  type ReceivedJob,
  type ReceiveOptions,
  type SendOptions,
} from './types'

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

  async send(body: T, options: SendOptions = {}): Promise<string> {
    encodeJob(this.name, body)
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
    return String(row.id)
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
      id: String(r.id),
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

  async depth(): Promise<QueueDepth> {
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

  async oldestAgeSeconds(): Promise<number> {
    const [row] = await this.db.execute<{ age: number | null }>(sql`
      select extract(epoch from now() - min(sent_at))::float8 as age
      from queue_jobs where queue = ${this.name} and visible_at <= now()`)
    return Math.max(0, Number(row?.age ?? 0))
  }
}
