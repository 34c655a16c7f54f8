import type { Executor } from '@moat/db'
import type { Logger } from '@moat/log'
import { sql } from 'drizzle-orm'
import type { SqsQueue } from './sqs'

export interface OutboxRelayOptions {
  db: Executor
  /** the queues whose outbox rows this relay carries, by Moat's queue name */
  queues: readonly SqsQueue<unknown>[]
  log: Logger
  /** how often an idle relay looks for rows written by other processes */
  pollMs?: number
  /** how long a relay holds the rows it took; after that another relay may take them again */
  claimSeconds?: number
  /** rows per round */
  batch?: number
  /** test hook: runs after the rows reached SQS and before they are removed from the outbox */
  afterSend?: (rows: number) => Promise<void>
}

type OutboxRow = {
  id: string
  queue: string
  op: 'send' | 'delete'
  body: unknown
  delay_seconds: number
  receipt: string | null
  /** epoch milliseconds */
  created_ms: number
}

/**
 * Carries committed `queue_outbox` rows to SQS and then deletes them. Each round claims up to
 * `batch` rows with `FOR UPDATE SKIP LOCKED` (so any number of relays in any number of processes
 * share the outbox), sends and deletes them in SQS batches, and removes the rows that succeeded.
 * A relay that dies after sending but before removing leaves claimed rows that another relay sends
 * again once the claim expires: a job can arrive twice (consumers are idempotent), never zero times.
 * The transaction that wrote a row is never held open across a network call.
 *
 * @example
 * const relay = new OutboxRelay({ db, queues: [scanQueue, deliverQueue], log })
 * relay.start()
 * await relay.stop()
 */
export class OutboxRelay {
  private readonly queues: Map<string, SqsQueue<unknown>>
  private readonly pollMs: number
  private readonly claimSeconds: number
  private readonly batch: number
  private running: Promise<void> | undefined
  private stopping = false
  private wake: (() => void) | undefined
  private kicked = false
  /** rows carried to SQS since start */
  relayed = 0

  constructor(private readonly options: OutboxRelayOptions) {
    this.queues = new Map(options.queues.map((q) => [q.name, q]))
    this.pollMs = options.pollMs ?? 250
    this.claimSeconds = options.claimSeconds ?? 30
    this.batch = options.batch ?? 100
  }

  /** Runs rounds until `stop()`: at once when rows were found or `kick()` was called, else every `pollMs`. */
  start(): this {
    if (this.running) return this
    this.stopping = false
    this.running = (async () => {
      while (!this.stopping) {
        let moved = 0
        try {
          moved = await this.round()
        } catch (err) {
          this.options.log.error({ err }, 'outbox relay round failed; retrying')
        }
        if (moved || this.stopping) continue
        await new Promise<void>((resolve) => {
          if (this.kicked) {
            this.kicked = false
            // a kick comes from inside a transaction that has not committed yet: look again soon
            setTimeout(resolve, 15)
            return
          }
          const timer = setTimeout(resolve, this.pollMs)
          this.wake = () => {
            clearTimeout(timer)
            setTimeout(resolve, 5)
          }
        })
        this.wake = undefined
      }
    })()
    return this
  }

  /** A row was just written in this process: look for it now instead of at the next poll. */
  kick(): void {
    this.kicked = true
    this.wake?.()
  }

  /** Relays until the outbox holds nothing this relay may take; resolves with the number of rows carried. */
  async flush(): Promise<number> {
    let total = 0
    for (;;) {
      const moved = await this.round()
      total += moved
      if (!moved) return total
    }
  }

  /** Stops after the current round; rows it claimed and did not finish are taken again after the claim. */
  async stop(): Promise<void> {
    this.stopping = true
    this.wake?.()
    await this.running
    this.running = undefined
  }

  /** Rows waiting in the outbox (claimed or not), and the age in seconds of the oldest. */
  async backlog(): Promise<{ rows: number; oldestSeconds: number }> {
    const [row] = await this.options.db.execute<{ rows: number; oldest: number | null }>(sql`
      select count(*)::int as rows, extract(epoch from now() - min(created_at))::float8 as oldest
      from queue_outbox`)
    return { rows: row?.rows ?? 0, oldestSeconds: Math.max(0, Number(row?.oldest ?? 0)) }
  }

  /** One round: claim, send, remove. Resolves with the number of rows carried. */
  async round(): Promise<number> {
    const names = [...this.queues.keys()]
    if (!names.length) return 0
    const rows = await this.options.db.execute<OutboxRow>(sql`
      update queue_outbox o
      set claimed_until = now() + make_interval(secs => ${this.claimSeconds}), attempts = o.attempts + 1
      from (
        select id from queue_outbox
        where (claimed_until is null or claimed_until < now())
          and queue in (${sql.join(
            names.map((n) => sql`${n}`),
            sql`, `,
          )})
        order by id
        limit ${this.batch}
        for update skip locked
      ) c
      where o.id = c.id
      returning o.id, o.queue, o.op, o.body, o.delay_seconds, o.receipt,
        (extract(epoch from o.created_at) * 1000)::float8 as created_ms`)
    if (!rows.length) return 0

    const done: string[] = []
    const byQueue = new Map<string, OutboxRow[]>()
    for (const row of rows) byQueue.set(row.queue, [...(byQueue.get(row.queue) ?? []), row])
    await Promise.all(
      [...byQueue].map(async ([name, queueRows]) => {
        const queue = this.queues.get(name)
        if (!queue) return
        const sends = queueRows.filter((r) => r.op === 'send')
        const deletes = queueRows.filter((r) => r.op === 'delete')
        const now = Date.now()
        try {
          const [sent, deleted] = await Promise.all([
            sends.length
              ? queue.sendBatch(
                  sends.map((r) => ({
                    body: r.body,
                    // the time spent in the outbox counts towards the delay
                    delaySeconds: Math.max(
                      0,
                      Math.ceil((r.created_ms + r.delay_seconds * 1000 - now) / 1000),
                    ),
                    sentAt: r.created_ms,
                  })),
                )
              : new Set<number>(),
            deletes.length ? queue.deleteBatch(deletes.map((r) => r.receipt ?? '')) : new Set<number>(),
          ])
          for (const i of sent) done.push(String(sends[i]?.id))
          for (const i of deleted) done.push(String(deletes[i]?.id))
        } catch (err) {
          this.options.log.error(
            { err, queue: name, rows: queueRows.length },
            'outbox relay could not reach the queue',
          )
        }
      }),
    )
    await this.options.afterSend?.(done.length)
    if (done.length) {
      await this.options.db.execute(
        sql`delete from queue_outbox where id in (${sql.join(
          done.map((id) => sql`${id}::bigint`),
          sql`, `,
        )})`,
      )
    }
    this.relayed += done.length
    return done.length
  }
}
