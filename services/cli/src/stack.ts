import path from 'node:path'
import { type ApiServer, lazy, startApi } from '@moat/api'
import { startArchiveWorker, startPurgeScheduler } from '@moat/archive'
import { type BillingService, type StripeGateway, startBilling } from '@moat/billing'
import { LocalObjectStore, type ObjectStore, S3ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import { type ArchiveJob, createResolver, type DeliverJob, type ScanJob } from '@moat/core'
import { type Database, openDatabase, runMigrations } from '@moat/db'
import { SenderPools, SmtpClient, startDeliverWorker } from '@moat/deliver'
import { loadOrBuildModel } from '@moat/detect'
import { type IngestServer, type SubmissionServer, startIngest, startSubmission } from '@moat/ingest'
import type { Logger } from '@moat/log'
import { type Check, metrics, type OpsServer, startOpsServer } from '@moat/metrics'
import type { Consumer, OutboxRelay, Queue } from '@moat/queue'
import {
  CLAMD_BINARY,
  ClamdScanner,
  clamdAnswers,
  clamdPing,
  createDetector,
  type LocalClamd,
  startLocalClamd,
  startScanWorker,
  type VirusScanner,
} from '@moat/scan'
import { sql } from 'drizzle-orm'

import { openQueues } from './queues'
import { SERVICES, type ServiceName } from './services'

export { SERVICES, type ServiceName }

export interface Stack {
  database: Database
  store: ObjectStore
  scanQueue: Queue<ScanJob>
  deliverQueue: Queue<DeliverJob>
  archiveQueue: Queue<ArchiveJob>
  /** with `MOAT_QUEUE=sqs`: the outbox relay this process runs */
  relay: OutboxRelay | undefined
  /** `/healthz`, `/readyz` and `/metrics` on `MOAT_METRICS_HOST:MOAT_METRICS_PORT` */
  ops: OpsServer
  ingest: IngestServer | undefined
  submission: SubmissionServer | undefined
  api: ApiServer | undefined
  /** metering, plans and Stripe: the billing cycle, and the webhook listener when Stripe is configured */
  billing: BillingService | undefined
  running: ServiceName[]
  /** the clamd the scan worker uses, in words, for the start banner */
  clamd: string | undefined
  /**
   * Graceful stop within `MOAT_SHUTDOWN_SECONDS`: readiness turns 503, ingest takes no new
   * sessions and finishes open transactions (or answers 421), workers finish their jobs or
   * release them to the queue, the outbox relay hands over what was committed.
   */
  close(): Promise<void>
}

/** The configured object store: `MOAT_DATA_DIR/objects` (default), or S3 with `MOAT_BLOBSTORE=s3`. */
export function objectStore(config: Config): ObjectStore {
  const b = config.blobstore
  if (b.kind === 's3') {
    return new S3ObjectStore({
      bucket: b.bucket,
      prefix: b.prefix,
      region: b.region,
      ...(b.endpoint ? { endpoint: b.endpoint } : {}),
      forcePathStyle: b.forcePathStyle,
      ...(b.serverSideEncryption ? { serverSideEncryption: b.serverSideEncryption } : {}),
      ...(b.kmsKeyId ? { kmsKeyId: b.kmsKeyId } : {}),
    })
  }
  return new LocalObjectStore(path.join(config.dataDir, 'objects'))
}

/**
 * Starts the chosen services (all five by default) in this process, against the configured
 * database, after applying migrations.
 */
export async function startStack(
  config: Config,
  options: {
    only?: readonly ServiceName[]
    log: Logger
    scanner?: VirusScanner
    store?: ObjectStore
    /** overrides the Stripe gateway made from the configuration (tests) */
    stripe?: StripeGateway
  },
): Promise<Stack> {
  const only = options.only ?? SERVICES
  const log = options.log
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    role: 'server',
  })
  try {
    await runMigrations(database.url)
  } catch (err) {
    await database.close()
    throw err
  }
  const db = database.db
  const store = options.store ?? objectStore(config)
  const { scanQueue, deliverQueue, archiveQueue, relay } = openQueues(config, db, log)
  const checks: Record<string, Check> = {
    database: () => db.execute(sql`select 1`),
    queue: () => scanQueue.depth(),
  }

  const consumers: Consumer[] = []
  let ingest: IngestServer | undefined
  let submission: SubmissionServer | undefined
  let api: ApiServer | undefined
  let purger: { stop(): Promise<void> } | undefined
  let billing: BillingService | undefined
  let smtp: SmtpClient | undefined
  let localClamd: LocalClamd | undefined
  let clamdInWords: string | undefined
  let ops: OpsServer | undefined
  try {
    relay?.start()
    if (only.includes('scan')) {
      let target = config.scan.clamd
      if (target === 'auto' && config.scan.virusScan && !options.scanner) {
        ;({ target, localClamd, words: clamdInWords } = await resolveClamd(config, log))
      } else if (target !== 'auto') {
        clamdInWords = 'socket' in target ? target.socket : `${target.host}:${target.port}`
      }
      const clamdTarget = target === 'auto' ? { host: '127.0.0.1', port: 3310 } : target
      const scanner = options.scanner ?? new ClamdScanner(clamdTarget, config.scan.clamdTimeoutMs)
      if (config.scan.virusScan && !options.scanner) {
        checks.clamd = async () => {
          if (!(await clamdAnswers(clamdTarget)))
            throw new Error(`clamd at ${clamdInWords} does not answer PING`)
        }
      }
      consumers.push(
        startScanWorker({
          config,
          db,
          store,
          scanner,
          detector: createDetector(config, log.child({ service: 'scan' })),
          scanQueue,
          deliverQueue,
          archiveQueue,
          log: log.child({ service: 'scan' }),
        }),
      )
      // the archive rides with the scan service: it indexes what scan queues, and purges on schedule
      const archiveLog = log.child({ service: 'archive' })
      consumers.push(startArchiveWorker({ db, store, queue: archiveQueue, log: archiveLog }))
      purger = startPurgeScheduler({
        db,
        store,
        log: archiveLog,
        intervalSeconds: config.archive.purgeIntervalSeconds,
        batch: config.archive.purgeBatch,
      })
    }
    if (only.includes('deliver')) {
      smtp = new SmtpClient({
        hostname: config.hostname,
        timeoutMs: config.deliver.timeoutMs,
        maxConnections: config.deliver.connectionsPerServer,
      })
      const pools = new SenderPools(config.outbound.pools, config.outbound.cooldownSeconds * 1000)
      consumers.push(
        startDeliverWorker({
          config,
          db,
          store,
          smtp,
          deliverQueue,
          pools,
          resolver: createResolver(config.dnsServers),
          log: log.child({ service: 'deliver' }),
        }),
      )
    }
    if (only.includes('ingest')) {
      ingest = await startIngest({ config, db, store, scanQueue, log: log.child({ service: 'ingest' }) })
    }
    if (only.includes('submission')) {
      submission = await startSubmission({
        config,
        db,
        store,
        scanQueue,
        log: log.child({ service: 'submission' }),
      })
    }
    if (only.includes('api')) {
      const apiLog = log.child({ service: 'api' })
      // the model is loaded on the first release or report, not at start
      const model = lazy(async () => loadOrBuildModel(config.scan.spamModelFile, apiLog))
      api = await startApi({ config, db, log: apiLog, mail: { store, deliverQueue, model } })
    }
    if (only.includes('billing')) {
      billing = await startBilling({
        config,
        db,
        log: log.child({ service: 'billing' }),
        stripe: options.stripe,
      })
    }
    ops = await startOpsServer({
      host: config.metrics.host,
      port: config.metrics.port,
      checks,
      collect: () =>
        collectGauges(db, { scan: scanQueue, deliver: deliverQueue, archive: archiveQueue }, relay),
      log: log.child({ component: 'ops' }),
    })
  } catch (err) {
    await submission?.close()
    await api?.close()
    await ingest?.close()
    await purger?.stop()
    await Promise.all(consumers.map((c) => c.stop(1000)))
    await relay?.stop()
    await localClamd?.stop()
    await database.close()
    throw err
  }

  const startedOps = ops
  return {
    database,
    store,
    scanQueue,
    deliverQueue,
    archiveQueue,
    relay,
    ops: startedOps,
    ingest,
    submission,
    api,
    billing,
    running: [...only],
    clamd: clamdInWords,
    async close() {
      const deadline = config.shutdownMs
      startedOps.draining()
      // ingest and the workers wind down side by side, each within the deadline
      await Promise.all([
        api?.close(),
        billing?.close(),
        ingest?.close(deadline),
        submission?.close(),
        purger?.stop(),
        ...consumers.map((c) => c.stop(deadline)),
      ])
      // last: the outbox rows the finished work committed are sent before the process goes
      if (relay) {
        await relay.stop()
        await Promise.race([relay.flush().catch(() => 0), new Promise((r) => setTimeout(r, 2_000))])
      }
      smtp?.close()
      await localClamd?.stop()
      await startedOps.close()
      await database.close()
    },
  }
}

/** Fills the gauges that need a query, when Prometheus scrapes. */
async function collectGauges(
  db: Database['db'],
  queues: Record<string, Queue<unknown>>,
  relay: OutboxRelay | undefined,
): Promise<void> {
  await Promise.all([
    ...Object.entries(queues).map(async ([name, queue]) => {
      const [depth, age] = await Promise.all([queue.depth(), queue.oldestAgeSeconds?.() ?? 0])
      metrics.queueDepth.set({ queue: name, state: 'visible' }, depth.visible)
      metrics.queueDepth.set({ queue: name, state: 'delayed' }, depth.delayed)
      metrics.queueDepth.set({ queue: name, state: 'in_flight' }, depth.inFlight)
      metrics.queueDepth.set({ queue: name, state: 'dead' }, depth.dead)
      metrics.queueOldestAge.set({ queue: name }, age)
    }),
    db
      .execute<{ n: number }>(sql`select count(*)::int as n from recipients where status = 'deferred'`)
      .then(([row]) => metrics.retryBacklog.set(row?.n ?? 0)),
    relay?.backlog().then((b) => {
      metrics.outboxBacklog.set(b.rows)
      metrics.outboxOldestAge.set(b.oldestSeconds)
    }),
  ])
}

/**
 * `MOAT_CLAMD=auto`: a clamd already answering on 127.0.0.1:3310, or else one Moat starts itself
 * under the data directory (with the system's signatures, or the EICAR-only test database when
 * freshclam has fetched none). Without clamd installed, mail waits in the scan queue.
 */
async function resolveClamd(
  config: Config,
  log: Logger,
): Promise<{ target: { host: string; port: number }; localClamd?: LocalClamd; words: string }> {
  const standard = { host: '127.0.0.1', port: 3310 }
  if (await clamdPing(standard.port, standard.host))
    return { target: standard, words: 'clamd at 127.0.0.1:3310' }
  if (!CLAMD_BINARY) {
    log.warn(
      'clamd is not installed and none answers on 127.0.0.1:3310: mail waits in the scan queue until one does',
    )
    return { target: standard, words: 'NONE: install clamav-daemon or set MOAT_CLAMD; mail waits until then' }
  }
  const port = 3310 + 1 + (Number.parseInt(String(config.smtp.port), 10) % 1000)
  log.info({ port }, 'starting a local clamd (MOAT_CLAMD=auto)')
  const localClamd = await startLocalClamd({ dir: path.join(config.dataDir, 'clamd'), port })
  if (localClamd.signatures === 'test') {
    log.warn(
      'no ClamAV signatures in /var/lib/clamav (run freshclam): the local clamd detects only the EICAR test file',
    )
  }
  return {
    target: { host: '127.0.0.1', port },
    localClamd,
    words: `local clamd at 127.0.0.1:${port} (${localClamd.signatures === 'system' ? 'system signatures' : 'EICAR test signature only: run freshclam'})`,
  }
}
