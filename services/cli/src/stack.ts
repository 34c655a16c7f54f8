import path from 'node:path'
import { LocalObjectStore, type ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import { type Database, openDatabase, runMigrations } from '@moat/db'
import { type DeliverJob, SmtpClient, startDeliverWorker } from '@moat/deliver'
import { type IngestServer, type ScanJob, startIngest } from '@moat/ingest'
import type { Logger } from '@moat/log'
import { type Consumer, PostgresQueue } from '@moat/queue'
import { ClamdScanner, startScanWorker, type VirusScanner } from '@moat/scan'

export const SERVICES = ['ingest', 'scan', 'deliver'] as const
export type ServiceName = (typeof SERVICES)[number]

export interface Stack {
  database: Database
  store: ObjectStore
  scanQueue: PostgresQueue<ScanJob>
  deliverQueue: PostgresQueue<DeliverJob>
  ingest: IngestServer | undefined
  running: ServiceName[]
  /** Graceful stop: no new SMTP sessions, workers finish or release their jobs. */
  close(): Promise<void>
}

export function objectStore(config: Config): ObjectStore {
  return new LocalObjectStore(path.join(config.dataDir, 'objects'))
}

/**
 * Starts the chosen services (all three by default) in this process, against the configured
 * database, after applying migrations.
 */
export async function startStack(
  config: Config,
  options: { only?: readonly ServiceName[]; log: Logger; scanner?: VirusScanner; store?: ObjectStore },
): Promise<Stack> {
  const only = options.only ?? SERVICES
  const log = options.log
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, role: 'server' })
  try {
    await runMigrations(database.url)
  } catch (err) {
    await database.close()
    throw err
  }
  const db = database.db
  const store = options.store ?? objectStore(config)
  const queueOptions = { maxReceives: config.queue.maxReceives, pollMs: config.queue.pollMs }
  const scanQueue = new PostgresQueue<ScanJob>(db, 'scan', queueOptions)
  const deliverQueue = new PostgresQueue<DeliverJob>(db, 'deliver', queueOptions)

  const consumers: Consumer[] = []
  let ingest: IngestServer | undefined
  let smtp: SmtpClient | undefined
  try {
    if (only.includes('scan')) {
      const scanner = options.scanner ?? new ClamdScanner(config.scan.clamd, config.scan.clamdTimeoutMs)
      consumers.push(
        startScanWorker({ config, db, store, scanner, scanQueue, deliverQueue, log: log.child({ service: 'scan' }) }),
      )
    }
    if (only.includes('deliver')) {
      smtp = new SmtpClient({ hostname: config.hostname, timeoutMs: config.deliver.timeoutMs })
      consumers.push(startDeliverWorker({ config, db, store, smtp, deliverQueue, log: log.child({ service: 'deliver' }) }))
    }
    if (only.includes('ingest')) {
      ingest = await startIngest({ config, db, store, scanQueue, log: log.child({ service: 'ingest' }) })
    }
  } catch (err) {
    await Promise.all(consumers.map((c) => c.stop(1000)))
    await database.close()
    throw err
  }

  return {
    database,
    store,
    scanQueue,
    deliverQueue,
    ingest,
    running: [...only],
    async close() {
      await ingest?.close()
      await Promise.all(consumers.map((c) => c.stop(30_000)))
      smtp?.close()
      await database.close()
    },
  }
}
