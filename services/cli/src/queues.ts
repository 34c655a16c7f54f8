import { SQSClient } from '@aws-sdk/client-sqs'
import type { Config } from '@moat/config'
import type { ArchiveJob, DeliverJob, ScanJob } from '@moat/core'
import type { Db } from '@moat/db'
import type { Logger } from '@moat/log'
import { OutboxRelay, PostgresQueue, type Queue, SqsQueue } from '@moat/queue'

export interface Queues {
  scanQueue: Queue<ScanJob>
  deliverQueue: Queue<DeliverJob>
  archiveQueue: Queue<ArchiveJob>
  /** with `MOAT_QUEUE=sqs`: carries jobs committed to the outbox on to SQS (not started) */
  relay: OutboxRelay | undefined
}

/**
 * The `scan`, `deliver` and `archive` queues on the configured backend. PostgreSQL: the `queue_jobs` table.
 * SQS: `${MOAT_SQS_QUEUE_URL_PREFIX}scan` and `…deliver`, with jobs sent inside a transaction
 * going through the outbox; the relay returned here carries them (any process's relay will do).
 */
export function openQueues(config: Config, db: Db, log: Logger): Queues {
  if (config.queue.kind === 'postgres') {
    const options = { maxReceives: config.queue.maxReceives, pollMs: config.queue.pollMs }
    return {
      scanQueue: new PostgresQueue<ScanJob>(db, 'scan', options),
      deliverQueue: new PostgresQueue<DeliverJob>(db, 'deliver', options),
      archiveQueue: new PostgresQueue<ArchiveJob>(db, 'archive', options),
      relay: undefined,
    }
  }
  const sqs = config.queue.sqs
  const client = new SQSClient({
    region: sqs.region,
    ...(sqs.endpoint ? { endpoint: sqs.endpoint } : {}),
    ...(sqs.credentials ? { credentials: sqs.credentials } : {}),
  })
  let relay: OutboxRelay | undefined
  const make = <T>(name: string) =>
    new SqsQueue<T>({
      client,
      name,
      queueUrl: `${sqs.queueUrlPrefix}${name}`,
      db,
      ...(sqs.createQueues ? { create: { maxReceives: config.queue.maxReceives } } : {}),
      onOutboxWrite: () => relay?.kick(),
    })
  const scanQueue = make<ScanJob>('scan')
  const deliverQueue = make<DeliverJob>('deliver')
  const archiveQueue = make<ArchiveJob>('archive')
  relay = new OutboxRelay({
    db,
    queues: [scanQueue, deliverQueue, archiveQueue] as SqsQueue<unknown>[],
    log: log.child({ component: 'outbox-relay' }),
    pollMs: config.queue.pollMs,
  })
  return { scanQueue, deliverQueue, archiveQueue, relay }
}
