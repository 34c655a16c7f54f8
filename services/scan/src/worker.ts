import type { ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import { type DeliverJob, recordEvent, type ScanJob } from '@moat/core'
import { type Db, messages, recipients } from '@moat/db'
import type { Logger } from '@moat/log'
import { type Consumer, consume, type Queue, type ReceivedJob } from '@moat/queue'
import { and, eq } from 'drizzle-orm'
import { ScannerUnavailableError, type VirusScanner } from './clamd'

/**
 * What the scan decided about one message. Spam scoring plugs in here as further checks that add
 * to `checks`; until it exists, no spam verdict is made up.
 */
export interface Verdict {
  action: 'deliver' | 'quarantine'
  reason: string
  virusScan: 'clean' | 'infected' | 'not_scanned'
  virusName: string | null
  checks: { name: string; result: string; detail?: Record<string, unknown> }[]
}

export interface ScanDeps {
  config: Config
  db: Db
  store: ObjectStore
  scanner: VirusScanner
  scanQueue: Queue<ScanJob>
  deliverQueue: Queue<DeliverJob>
  log: Logger
}

/** Starts consuming scan jobs. */
export function startScanWorker(deps: ScanDeps): Consumer {
  return consume(deps.scanQueue, {
    concurrency: deps.config.scan.concurrency,
    visibilityTimeout: deps.config.scan.visibilitySeconds,
    log: deps.log,
    handle: (job) => scanOne(deps, job),
  })
}

/**
 * Scans one message and records the outcome with its follow-up jobs in one transaction. A job
 * seen twice does nothing the second time: only a message still `received` is scanned.
 */
export async function scanOne(deps: ScanDeps, job: ReceivedJob<ScanJob>): Promise<void> {
  const { db, log } = deps
  const messageId = job.body.messageId
  const jobLog = log.child({ messageId, jobId: job.id })
  const [message] = await db.select().from(messages).where(eq(messages.id, messageId))
  if (message?.status !== 'received') {
    jobLog.debug({ status: message?.status }, 'already scanned; dropping duplicate job')
    await deps.scanQueue.delete(job.receipt)
    return
  }

  const started = Date.now()
  let verdict: Verdict
  try {
    verdict = await decide(deps, message.objectKey)
  } catch (err) {
    if (!(err instanceof ScannerUnavailableError)) throw err
    // the mail waits: never passed on unscanned unless the operator turned scanning off
    jobLog.warn(
      { err: err.message, retryIn: deps.config.scan.retrySeconds },
      'virus scanner unavailable; will retry',
    )
    await db.transaction(async (tx) => {
      await recordEvent(tx, message, 'scan_deferred', {
        reason: err.message,
        retryInSeconds: deps.config.scan.retrySeconds,
      })
      await deps.scanQueue.send({ messageId }, { tx, delaySeconds: deps.config.scan.retrySeconds })
      await deps.scanQueue.delete(job.receipt, { tx })
    })
    return
  }
  const durationMs = Date.now() - started

  await db.transaction(async (tx) => {
    const updated = await tx
      .update(messages)
      .set({
        status: verdict.action === 'deliver' ? 'queued' : 'quarantined',
        virusScan: verdict.virusScan,
        virusName: verdict.virusName,
        updatedAt: new Date(),
      })
      .where(and(eq(messages.id, messageId), eq(messages.status, 'received')))
      .returning({ id: messages.id })
    if (!updated.length) return // another worker finished it first
    // statements that do not depend on each other are pipelined on the transaction's connection
    const [, domainsToDeliver] = await Promise.all([
      recordEvent(tx, message, 'scanned', {
        action: verdict.action,
        reason: verdict.reason,
        virusScan: verdict.virusScan,
        virusName: verdict.virusName,
        checks: verdict.checks,
        durationMs,
      }),
      verdict.action === 'deliver'
        ? tx
            .selectDistinct({ domainId: recipients.domainId })
            .from(recipients)
            .where(eq(recipients.messageId, messageId))
        : Promise.resolve([]),
    ])
    const followUps: Promise<unknown>[] = [deps.scanQueue.delete(job.receipt, { tx })]
    if (verdict.action === 'quarantine') {
      followUps.push(
        tx
          .update(recipients)
          .set({ status: 'quarantined', updatedAt: new Date() })
          .where(eq(recipients.messageId, messageId)),
        recordEvent(tx, message, 'quarantined', { reason: verdict.reason }),
      )
    }
    for (const { domainId } of domainsToDeliver)
      followUps.push(deps.deliverQueue.send({ messageId, domainId }, { tx }))
    await Promise.all(followUps)
  })
  jobLog.info({ action: verdict.action, reason: verdict.reason, durationMs }, 'scanned')
}

async function decide(deps: ScanDeps, objectKey: string): Promise<Verdict> {
  if (!deps.config.scan.virusScan) {
    return {
      action: 'deliver',
      reason: 'virus scanning is off (MOAT_VIRUS_SCAN=off)',
      virusScan: 'not_scanned',
      virusName: null,
      checks: [{ name: 'virus', result: 'skipped' }],
    }
  }
  const result = await deps.scanner.scan(await deps.store.stream(objectKey))
  if (result.infected) {
    const name = result.signatures.join(', ') || 'unknown'
    return {
      action: 'quarantine',
      reason: `virus: ${name}`,
      virusScan: 'infected',
      virusName: name,
      checks: [{ name: 'virus', result: 'infected', detail: { signatures: result.signatures } }],
    }
  }
  return {
    action: 'deliver',
    reason: 'clean',
    virusScan: 'clean',
    virusName: null,
    checks: [{ name: 'virus', result: 'clean' }],
  }
}
