import { Readable } from 'node:stream'
import { addressDomain, recordEvent, recordTenantEvent, suspendSmtpCredential } from '@moat/core'
import { messages, recipients, tenants } from '@moat/db'
import type { Hit } from '@moat/detect'
import type { Logger } from '@moat/log'
import type { ReceivedJob } from '@moat/queue'
import { and, eq, gte, sql } from 'drizzle-orm'
import { ScannerUnavailableError } from './clamd'
import type { MessageRow, ScanDeps } from './worker'

interface OutboundVerdict {
  /** `deliver`, or `hold`: never sent, visible in the message log */
  action: 'deliver' | 'hold'
  reason: string
  virusScan: 'clean' | 'infected' | 'not_scanned'
  virusName: string | null
  score: number | null
  threshold: number
  symbols: Hit[]
}

/**
 * Scans a customer's outbound message: a virus or a spam score at or above the tenant's outbound
 * threshold holds it (never sent; a `held` event in the message log and a webhook-ready tenant
 * event). A burst of held spam from one credential suspends the credential. Clean mail gets one
 * deliver job per recipient domain.
 */
export async function scanOutbound(
  deps: ScanDeps,
  job: ReceivedJob<{ messageId: string }>,
  message: MessageRow,
  jobLog: Logger,
): Promise<void> {
  const { db, config } = deps
  const started = Date.now()
  let verdict: OutboundVerdict
  try {
    verdict = await judgeOutbound(deps, message)
  } catch (err) {
    if (!(err instanceof ScannerUnavailableError)) throw err
    jobLog.warn(
      { err: err.message, retryIn: config.scan.retrySeconds },
      'virus scanner unavailable; will retry',
    )
    await db.transaction(async (tx) => {
      await recordEvent(tx, message, 'scan_deferred', {
        reason: err.message,
        retryInSeconds: config.scan.retrySeconds,
      })
      await deps.scanQueue.send({ messageId: message.id }, { tx, delaySeconds: config.scan.retrySeconds })
      await deps.scanQueue.delete(job.receipt, { tx })
    })
    return
  }
  const durationMs = Date.now() - started
  const held = verdict.action === 'hold'
  let suspended: string | null = null
  await db.transaction(async (tx) => {
    const updated = await tx
      .update(messages)
      .set({
        status: held ? 'held' : 'queued',
        virusScan: verdict.virusScan,
        virusName: verdict.virusName,
        spamScore: verdict.score,
        action: verdict.action,
        updatedAt: new Date(),
      })
      .where(and(eq(messages.id, message.id), eq(messages.status, 'received')))
      .returning({ id: messages.id })
    if (!updated.length) return
    const writes: Promise<unknown>[] = [
      deps.scanQueue.delete(job.receipt, { tx }),
      recordEvent(tx, message, 'scanned', {
        direction: 'outbound',
        action: verdict.action,
        reason: verdict.reason,
        virusScan: verdict.virusScan,
        virusName: verdict.virusName,
        score: verdict.score,
        threshold: verdict.threshold,
        symbols: verdict.symbols,
        durationMs,
      }),
    ]
    // archived with its verdict (held or sent), in the same transaction, as inbound mail is
    if (deps.archiveQueue) writes.push(deps.archiveQueue.send({ messageId: message.id }, { tx }))
    if (held) {
      writes.push(
        tx
          .update(recipients)
          .set({ status: 'held', lastReply: verdict.reason, updatedAt: new Date() })
          .where(eq(recipients.messageId, message.id)),
        recordEvent(tx, message, 'held', { reason: verdict.reason }),
        recordTenantEvent(
          tx,
          message.tenantId,
          verdict.virusScan === 'infected' ? 'outbound.virus' : 'outbound.held',
          {
            messageId: message.id,
            queueId: message.queueId,
            from: message.mailFrom,
            to: message.rcptTo,
            subject: message.subject,
            credentialId: message.credentialId,
            reason: verdict.reason,
            score: verdict.score,
          },
        ),
      )
    } else {
      for (const domain of new Set(message.rcptTo.map(addressDomain)))
        writes.push(deps.deliverQueue.send({ messageId: message.id, domain }, { tx }))
    }
    await Promise.all(writes)
    if (held && message.credentialId) {
      const since = new Date(Date.now() - 3_600_000)
      const [count] = await tx
        .select({ n: sql<number>`count(*)`.mapWith(Number) })
        .from(messages)
        .where(
          and(
            eq(messages.credentialId, message.credentialId),
            eq(messages.status, 'held'),
            gte(messages.receivedAt, since),
          ),
        )
      if ((count?.n ?? 0) >= config.outbound.suspendAfterHeld) {
        const reason = `${count?.n} messages held as spam or virus within an hour`
        if (
          await suspendSmtpCredential(tx, {
            tenantId: message.tenantId,
            id: message.credentialId,
            reason,
            actor: 'moat:scan',
          })
        )
          suspended = reason
      }
    }
  })
  jobLog.info({ direction: 'outbound', action: verdict.action, score: verdict.score, durationMs }, 'scanned')
  if (suspended)
    jobLog.warn({ credentialId: message.credentialId, reason: suspended }, 'credential suspended')
}

async function judgeOutbound(deps: ScanDeps, message: MessageRow): Promise<OutboundVerdict> {
  const [tenant] = await deps.db
    .select({ threshold: tenants.outboundSpamThreshold })
    .from(tenants)
    .where(eq(tenants.id, message.tenantId))
  const threshold = tenant?.threshold ?? deps.config.outbound.spamThreshold
  const raw = await deps.store.get(message.objectKey)
  let virusScan: OutboundVerdict['virusScan'] = 'not_scanned'
  if (deps.config.scan.virusScan) {
    const result = await deps.scanner.scan(Readable.from([raw]))
    if (result.infected) {
      const name = result.signatures.join(', ') || 'unknown'
      return {
        action: 'hold',
        reason: `virus: ${name}`,
        virusScan: 'infected',
        virusName: name,
        score: null,
        threshold,
        symbols: [{ name: 'VIRUS', score: 0, detail: name }],
      }
    }
    virusScan = 'clean'
  }
  if (!deps.detector) {
    return {
      action: 'deliver',
      reason: 'spam detection is off (MOAT_SPAM_SCAN=off)',
      virusScan,
      virusName: null,
      score: null,
      threshold,
      symbols: [],
    }
  }
  // the customer's own mail: no sender authentication of its submission, no tenant overlay
  const analysis = await deps.detector.analyze(raw, {
    mailFrom: message.mailFrom,
    rcptTo: message.rcptTo,
    clientIp: null,
    helo: null,
  })
  const spam = analysis.score >= threshold
  return {
    action: spam ? 'hold' : 'deliver',
    reason: spam
      ? `spam: score ${analysis.score.toFixed(1)} at or above the outbound threshold ${threshold}`
      : `score ${analysis.score.toFixed(1)} below the outbound threshold ${threshold}`,
    virusScan,
    virusName: null,
    score: analysis.score,
    threshold,
    symbols: analysis.hits,
  }
}
