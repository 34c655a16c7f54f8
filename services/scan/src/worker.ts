import { Readable } from 'node:stream'
import type { ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import { type ArchiveJob, type DeliverJob, recordEvent, recordUsage, type ScanJob } from '@moat/core'
import { type Db, type HeaderRewrite, messages, recipients } from '@moat/db'
import {
  type Action,
  type Analysis,
  type Decision,
  type Detector,
  decide,
  fmt,
  type Hit,
  loadListEntries,
  loadPolicyLayers,
  matchLists,
  resolvePolicy,
  TenantOverlays,
} from '@moat/detect'
import type { Logger } from '@moat/log'
import { metrics } from '@moat/metrics'
import { type Consumer, consume, type Queue, type ReceivedJob } from '@moat/queue'
import { and, eq } from 'drizzle-orm'
import { ScannerUnavailableError, type VirusScanner } from './clamd'
import { scanOutbound } from './outbound'

/**
 * What the scan decided about one message: the virus scan, the spam symbols with their score, and
 * the action the tenant's policy chose.
 */
export interface Verdict {
  action: Action
  reason: string
  virusScan: 'clean' | 'infected' | 'not_scanned'
  virusName: string | null
  /** null when spam detection did not run (virus found, or MOAT_SPAM_SCAN=off) */
  score: number | null
  symbols: Hit[]
  /** the allow/block entry that decided, if any */
  listed?: Decision['listed']
  auth: Analysis['auth']
  headerRewrite: HeaderRewrite | null
  timings?: Analysis['timings']
}

export interface ScanDeps {
  config: Config
  db: Db
  store: ObjectStore
  scanner: VirusScanner
  /** spam detection; null when MOAT_SPAM_SCAN=off */
  detector: Detector | null
  scanQueue: Queue<ScanJob>
  deliverQueue: Queue<DeliverJob>
  /** every scanned message is queued here for the archive (`@moat/archive`), whatever its verdict */
  archiveQueue?: Queue<ArchiveJob> | undefined
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
  if (message.direction === 'outbound') return scanOutbound(deps, job, message, jobLog)

  const started = Date.now()
  let verdict: Verdict
  try {
    verdict = await judge(deps, message)
  } catch (err) {
    if (!(err instanceof ScannerUnavailableError)) throw err
    // the mail waits: never passed on unscanned unless the operator turned scanning off
    jobLog.warn(
      { err: err.message, retryIn: deps.config.scan.retrySeconds },
      'virus scanner unavailable; will retry',
    )
    metrics.scanDeferred.inc()
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
  metrics.scanDuration.observe({ action: verdict.action }, durationMs / 1000)

  const status = { deliver: 'queued', tag: 'queued', quarantine: 'quarantined', discard: 'discarded' }[
    verdict.action
  ]
  const recorded = await db.transaction(async (tx) => {
    const updated = await tx
      .update(messages)
      .set({
        status,
        virusScan: verdict.virusScan,
        virusName: verdict.virusName,
        spamScore: verdict.score,
        action: verdict.action,
        headerRewrite: verdict.headerRewrite,
        updatedAt: new Date(),
      })
      .where(and(eq(messages.id, messageId), eq(messages.status, 'received')))
      .returning({ id: messages.id })
    if (!updated.length) {
      // another worker (a duplicate of this job) finished it first: nothing to record twice
      await deps.scanQueue.delete(job.receipt, { tx })
      return false
    }
    const delivering = verdict.action === 'deliver' || verdict.action === 'tag'
    // statements that do not depend on each other are pipelined on the transaction's connection
    const [, domainsToDeliver] = await Promise.all([
      recordEvent(tx, message, 'scanned', {
        action: verdict.action,
        reason: verdict.reason,
        virusScan: verdict.virusScan,
        virusName: verdict.virusName,
        score: verdict.score,
        symbols: verdict.symbols,
        ...(verdict.listed ? { listed: verdict.listed } : {}),
        ...(verdict.auth ? { auth: verdict.auth } : {}),
        durationMs,
      }),
      delivering
        ? tx
            .selectDistinct({ domainId: recipients.domainId })
            .from(recipients)
            .where(eq(recipients.messageId, messageId))
        : Promise.resolve([]),
    ])
    const followUps: Promise<unknown>[] = [
      deps.scanQueue.delete(job.receipt, { tx }),
      // billing: one usage event per scanned message, committed with the verdict (keyed by message id)
      recordUsage(tx, {
        messageId,
        tenantId: message.tenantId,
        direction: message.direction,
        verdict: verdict.action,
        size: message.size,
        at: new Date(),
      }),
    ]
    if (!delivering) {
      followUps.push(
        tx
          .update(recipients)
          .set({ status, updatedAt: new Date() })
          .where(eq(recipients.messageId, messageId)),
        recordEvent(tx, message, status, { reason: verdict.reason }),
      )
    }
    for (const { domainId } of domainsToDeliver)
      if (domainId) followUps.push(deps.deliverQueue.send({ messageId, domainId }, { tx }))
    // archived with its verdict, in the same transaction: a scanned message is never left unarchived
    if (deps.archiveQueue) followUps.push(deps.archiveQueue.send({ messageId }, { tx }))
    await Promise.all(followUps)
    return true
  })
  if (!recorded) {
    jobLog.debug('scanned by another worker meanwhile; dropping duplicate job')
    return
  }
  metrics.scanVerdicts.inc({ action: verdict.action, virus: verdict.virusScan })
  jobLog.info({ action: verdict.action, score: verdict.score, reason: verdict.reason, durationMs }, 'scanned')
}

export type MessageRow = typeof messages.$inferSelect

/** Tenants' model overlays, shared by the scan workers of this process. */
const overlays = new TenantOverlays()

/** Virus scan first (an infected message is quarantined whatever else it is), then spam detection. */
async function judge(deps: ScanDeps, message: MessageRow): Promise<Verdict> {
  const raw = await deps.store.get(message.objectKey)
  let virusScan: Verdict['virusScan'] = 'not_scanned'
  if (deps.config.scan.virusScan) {
    const result = await deps.scanner.scan(Readable.from([raw]))
    if (result.infected) {
      const name = result.signatures.join(', ') || 'unknown'
      return {
        action: 'quarantine',
        reason: `virus: ${name}`,
        virusScan: 'infected',
        virusName: name,
        score: null,
        symbols: [{ name: 'VIRUS', score: 0, detail: name }],
        auth: null,
        headerRewrite: null,
      }
    }
    virusScan = 'clean'
  }
  const virusNote = virusScan === 'not_scanned' ? '; virus scanning is off (MOAT_VIRUS_SCAN=off)' : ''
  if (!deps.detector) {
    return {
      action: 'deliver',
      reason: `${virusScan === 'clean' ? 'no virus' : 'delivered'}; spam detection is off (MOAT_SPAM_SCAN=off)${virusNote}`,
      virusScan,
      virusName: null,
      score: null,
      symbols: [],
      auth: null,
      // no verdict of ours to add, but results forged in our name still go
      headerRewrite: { prepend: [], stripAuthservId: deps.config.scan.authservId },
    }
  }
  const tenantId = message.tenantId
  const domainIds = (
    await deps.db
      .selectDistinct({ domainId: recipients.domainId })
      .from(recipients)
      .where(and(eq(recipients.messageId, message.id), eq(recipients.tenantId, tenantId)))
  )
    .map((r) => r.domainId)
    .filter((d): d is string => d !== null)
  const [analysis, layers, entries] = await Promise.all([
    deps.detector.analyze(
      raw,
      {
        mailFrom: message.mailFrom,
        rcptTo: message.rcptTo,
        clientIp: message.clientIp,
        helo: message.clientHelo,
      },
      () => overlays.get(deps.db, tenantId),
    ),
    // one policy per message: that of its first recipient's domain
    loadPolicyLayers(deps.db, tenantId, domainIds[0] ?? null),
    loadListEntries(deps.db, tenantId, domainIds),
  ])
  const policy = resolvePolicy(...layers)
  const listed = matchLists(entries, {
    addresses: [message.mailFrom.toLowerCase(), analysis.view.from?.address ?? ''].filter(Boolean),
    clientIp: message.clientIp,
  })
  const decision = decide(analysis.score, policy, listed)
  const spam = decision.action !== 'deliver' || decision.listed?.action === 'block'
  const prepend = [
    ...(analysis.authResults ? [analysis.authResults] : []),
    `X-Moat-Spam: ${spam ? 'yes' : 'no'}`,
    `X-Moat-Score: ${fmt(analysis.score)}${policy.quarantineThreshold !== null ? ` / ${policy.quarantineThreshold}` : ''} (${decision.action})`,
    foldSymbols(analysis.hits),
  ]
  return {
    action: decision.action,
    reason: decision.reason + virusNote,
    virusScan,
    virusName: null,
    score: analysis.score,
    symbols: analysis.hits,
    listed: decision.listed,
    auth: analysis.auth,
    headerRewrite: {
      prepend,
      stripAuthservId: deps.config.scan.authservId,
      ...(decision.action === 'tag' && policy.subjectPrefix ? { subjectPrefix: policy.subjectPrefix } : {}),
    },
    timings: analysis.timings,
  }
}

/** `X-Moat-Symbols: NAME(score), …`, folded at 78 columns. */
function foldSymbols(hits: readonly Hit[]): string {
  const items = hits.map((h) => `${h.name}(${fmt(h.score)})`)
  const lines: string[] = []
  let line = 'X-Moat-Symbols:'
  for (const item of items) {
    if (line.length + item.length + 2 > 78) {
      lines.push(`${line},`.replace(/:,$/, ':'))
      line = ` ${item}`
    } else line += line.endsWith(':') ? ` ${item}` : `, ${item}`
  }
  lines.push(line)
  return lines.join('\r\n')
}
