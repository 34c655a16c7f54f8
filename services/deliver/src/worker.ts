import type { ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import { type DeliverJob, listRoutes, rewriteHeaders, routeRecipients } from '@moat/core'
import {
  type Db,
  deliveryAttempts,
  domains,
  type Executor,
  messageEvents,
  messages,
  recipients,
  tenants,
} from '@moat/db'
import type { Logger } from '@moat/log'
import { metrics } from '@moat/metrics'
import { type Consumer, consume, type Queue, type ReceivedJob } from '@moat/queue'
import { and, eq, gte, inArray } from 'drizzle-orm'
import type { MxResolver } from './mx'
import { deliverOutbound } from './outbound'
import type { SenderPools } from './pools'
import type { SendOutcome, SmtpClient } from './smtp-client'

export interface DeliverDeps {
  config: Config
  db: Db
  store: ObjectStore
  smtp: SmtpClient
  deliverQueue: Queue<DeliverJob>
  /** egress paths: `default` and tenants' pools for outbound mail, `inbound` for customers' servers */
  pools: SenderPools
  /** MX lookups for outbound mail (MOAT_DNS_SERVERS) */
  resolver: MxResolver
  log: Logger
}

export function startDeliverWorker(deps: DeliverDeps): Consumer {
  return consume(deps.deliverQueue, {
    concurrency: deps.config.deliver.concurrency,
    visibilityTimeout: deps.config.deliver.visibilitySeconds,
    log: deps.log,
    handle: (job) => deliverOne(deps, job),
  })
}

/** Seconds until the next try after `attempts` failed tries: doubling from the first delay, capped. */
export function backoffSeconds(attempts: number, first: number, max: number): number {
  return Math.min(max, first * 2 ** Math.max(0, attempts - 1))
}

/** One SMTP conversation of a delivery pass, as the message log shows it. */
export interface AttemptRecord {
  host: string
  port: number
  recipients: string[]
  outcome: 'delivered' | 'deferred' | 'failed'
  code: number | null
  reply: string
  durationMs: number
}

/**
 * Delivers one message to the customer's servers for one of its recipient domains: destinations
 * in priority order (random among equals), the next one on a temporary failure. What is still
 * undelivered afterwards is deferred with back-off, until the give-up age marks it failed.
 */
export async function deliverOne(deps: DeliverDeps, job: ReceivedJob<DeliverJob>): Promise<void> {
  const { db, config, log } = deps
  if ('domain' in job.body) return deliverOutbound(deps, job, job.body.domain)
  const { messageId, domainId } = job.body
  const jobLog = log.child({ messageId, jobId: job.id })
  const [message] = await db.select().from(messages).where(eq(messages.id, messageId))
  const pending = message
    ? await db
        .select()
        .from(recipients)
        .where(
          and(
            eq(recipients.messageId, messageId),
            eq(recipients.domainId, domainId),
            inArray(recipients.status, ['pending', 'deferred']),
          ),
        )
    : []
  if (!message || !pending.length || message.status === 'quarantined') {
    await deps.deliverQueue.delete(job.receipt)
    return
  }

  const [tenant] = await db.select().from(tenants).where(eq(tenants.id, message.tenantId))
  if (tenant && heldBySuspension(tenant, message.receivedAt)) {
    await holdForSuspendedTenant(deps, job, tenant)
    return
  }

  const [domain] = await db.select().from(domains).where(eq(domains.id, domainId))
  const groups = routeRecipients(
    await listRoutes(db, domainId),
    pending.map((r) => r.address),
  )
  const attempts: AttemptRecord[] = []
  const outcome = new Map<string, { status: 'delivered' | 'deferred' | 'failed'; reply: string }>()
  // inbound delivery leaves through its own pool, so an outbound blocklisting never touches it
  const identity = deps.pools.has('inbound') ? deps.pools.order('inbound')[0] : undefined

  for (const group of groups) {
    let left = group.addresses
    for (const route of group.routes) {
      if (!left.length) break
      const started = Date.now()
      let result: SendOutcome
      try {
        // the delivered copy carries the scan's headers; the stored original is never changed
        const raw = rewriteHeaders(await deps.store.stream(message.objectKey), message.headerRewrite)
        result = await deps.smtp.send(
          { ...route, localAddress: identity?.bindIp, helo: identity?.helo },
          { from: message.mailFrom, to: left },
          raw,
        )
      } catch (err) {
        result = { accepted: [], refused: [], reply: `local error: ${(err as Error).message}`, code: null }
        result.refused = left.map((address) => ({
          address,
          code: null,
          reply: result.reply,
          permanent: false,
        }))
      }
      for (const address of result.accepted)
        outcome.set(address, { status: 'delivered', reply: result.reply })
      for (const r of result.refused) {
        outcome.set(r.address, { status: r.permanent ? 'failed' : 'deferred', reply: `${r.reply}` })
      }
      const permanent = result.refused.filter((r) => r.permanent).map((r) => r.address)
      attempts.push({
        host: route.host,
        port: route.port,
        recipients: left,
        outcome: result.accepted.length
          ? 'delivered'
          : permanent.length === left.length
            ? 'failed'
            : 'deferred',
        code: result.code,
        reply: result.reply,
        durationMs: Date.now() - started,
      })
      metrics.deliveryAttempts.inc({ result: attempts[attempts.length - 1]?.outcome ?? 'deferred' })
      // temporary refusals are tried at the next destination; permanent ones are final
      left = result.refused.filter((r) => !r.permanent).map((r) => r.address)
    }
  }

  const noRoute = groups.some((g) => g.routes.length === 0)
  // mail held while its tenant was suspended gets its full give-up time from the resumption
  const clockStart = Math.max(message.receivedAt.getTime(), tenant?.resumedAt?.getTime() ?? 0)
  const ageSeconds = (Date.now() - clockStart) / 1000
  const expired = ageSeconds >= config.deliver.giveUpSeconds
  const tries = Math.max(...pending.map((r) => r.attempts)) + 1
  const delay = Math.max(
    1,
    Math.min(
      backoffSeconds(tries, config.deliver.retryFirstSeconds, config.deliver.retryMaxSeconds),
      Math.ceil(config.deliver.giveUpSeconds - ageSeconds),
    ),
  )
  const noRouteReply = `no destination server is configured for ${domain?.name ?? domainId}`

  const delivered = pending
    .filter((r) => outcome.get(r.address)?.status === 'delivered')
    .map((r) => r.address)
  const failed = pending.filter((r) => outcome.get(r.address)?.status === 'failed').map((r) => r.address)
  const deferred = pending.map((r) => r.address).filter((a) => !delivered.includes(a) && !failed.includes(a))
  const events: { kind: string; detail: Record<string, unknown> }[] = []
  if (delivered.length) {
    events.push({
      kind: 'delivered',
      detail: { recipients: delivered, reply: outcome.get(delivered[0] ?? '')?.reply },
    })
  }
  if (failed.length) {
    events.push({
      kind: 'failed',
      detail: { recipients: failed, reply: outcome.get(failed[0] ?? '')?.reply },
    })
  }
  if (deferred.length && expired) {
    events.push({ kind: 'expired', detail: { recipients: deferred, ageSeconds: Math.round(ageSeconds) } })
  } else if (deferred.length) {
    events.push({
      kind: 'deferred',
      detail: {
        recipients: deferred,
        reason: noRoute ? noRouteReply : (outcome.get(deferred[0] ?? '')?.reply ?? 'temporary failure'),
        attempt: tries,
        retryInSeconds: delay,
        nextAttemptAt: new Date(Date.now() + delay * 1000).toISOString(),
      },
    })
  }

  await db.transaction(async (tx) => {
    const writes = passWrites(tx, deps, job, {
      tenantId: message.tenantId,
      attempts,
      events,
      pending,
      outcomeOf: (address) => outcome.get(address) ?? { status: 'deferred', reply: noRouteReply },
      expired,
      ageSeconds,
      retry: deferred.length && !expired ? { body: { messageId, domainId }, delaySeconds: delay } : undefined,
    })
    await Promise.all(writes)
    await updateMessageStatus(tx, messageId)
  })
  jobLog.info({ attempts: attempts.length, tries, expired }, 'delivery pass done')
}

/**
 * Whether a suspension holds this message. An operator's holds everything; billing's holds only
 * mail received after it began: what arrived while the account was in good standing (within a
 * prepaid plan's messages, before a payment was overdue) is delivered.
 */
export function heldBySuspension(
  tenant: { status: string; suspendedReason: string | null; suspendedAt: Date | null },
  receivedAt: Date,
): boolean {
  if (tenant.status !== 'suspended') return false
  if (tenant.suspendedReason !== 'billing' || !tenant.suspendedAt) return true
  return receivedAt >= tenant.suspendedAt
}

/**
 * Keeps a suspended tenant's mail queued without trying it and without counting a try: the job
 * comes back every `suspendedRecheckSeconds`. The first time, the message log says why it waits.
 */
async function holdForSuspendedTenant(
  deps: DeliverDeps,
  job: ReceivedJob<DeliverJob>,
  tenant: { id: string; suspendedReason: string | null; suspendedAt: Date | null },
): Promise<void> {
  const { messageId } = job.body
  const tenantId = tenant.id
  await deps.db.transaction(async (tx) => {
    const [held] = await tx
      .select({ id: messageEvents.id })
      .from(messageEvents)
      .where(
        and(
          eq(messageEvents.messageId, messageId),
          eq(messageEvents.kind, 'held'),
          gte(messageEvents.at, tenant.suspendedAt ?? new Date(0)),
        ),
      )
      .limit(1)
    if (!held) {
      const why = `the account is suspended (${tenant.suspendedReason ?? 'operator'}); delivery resumes when it is resumed`
      await tx.insert(messageEvents).values({ messageId, tenantId, kind: 'held', detail: { reason: why } })
    }
    await deps.deliverQueue.delete(job.receipt, { tx })
    await deps.deliverQueue.send(job.body, { tx, delaySeconds: deps.config.deliver.suspendedRecheckSeconds })
  })
}

/**
 * The writes of one delivery pass, started at once and pipelined on the transaction's connection
 * (the caller awaits them, then sums up the message's status): the job's deletion, the attempts,
 * the events, each recipient's new status (a deferral past the give-up age becomes a failure) and
 * the retry, if any.
 */
export function passWrites(
  tx: Executor,
  deps: Pick<DeliverDeps, 'deliverQueue'>,
  job: ReceivedJob<DeliverJob>,
  pass: {
    tenantId: string
    attempts: Omit<typeof deliveryAttempts.$inferInsert, 'messageId' | 'tenantId'>[]
    events: { kind: string; detail: Record<string, unknown> }[]
    pending: { id: number; address: string; attempts: number }[]
    outcomeOf: (address: string) => { status: 'delivered' | 'deferred' | 'failed'; reply: string }
    expired: boolean
    ageSeconds: number
    retry: { body: DeliverJob; delaySeconds: number } | undefined
  },
): Promise<unknown>[] {
  const { messageId } = job.body
  const { tenantId } = pass
  const writes: Promise<unknown>[] = [deps.deliverQueue.delete(job.receipt, { tx })]
  if (pass.attempts.length) {
    writes.push(
      tx
        .insert(deliveryAttempts)
        .values(
          pass.attempts.map((a) => ({ messageId, tenantId, ...a }) as typeof deliveryAttempts.$inferInsert),
        ),
    )
  }
  if (pass.events.length) {
    writes.push(tx.insert(messageEvents).values(pass.events.map((e) => ({ messageId, tenantId, ...e }))))
  }
  for (const r of pass.pending) {
    const o = pass.outcomeOf(r.address)
    const expiredNow = o.status === 'deferred' && pass.expired
    writes.push(
      tx
        .update(recipients)
        .set({
          status: expiredNow ? 'failed' : o.status,
          attempts: r.attempts + 1,
          lastReply: expiredNow
            ? `expired after ${Math.round(pass.ageSeconds)}s; last reply: ${o.reply}`
            : o.reply,
          updatedAt: new Date(),
        })
        .where(eq(recipients.id, r.id)),
    )
  }
  if (pass.retry) {
    writes.push(deps.deliverQueue.send(pass.retry.body, { tx, delaySeconds: pass.retry.delaySeconds }))
  }
  return writes
}

/** The message's status, summed up from its recipients. */
export async function updateMessageStatus(tx: Executor, messageId: string): Promise<void> {
  // deliver jobs for the message's other domains may be finishing at the same moment: locking the
  // message row first makes the second one wait and then read the first one's recipients, so the
  // summary is never computed from two stale halves (READ COMMITTED on PostgreSQL). NO KEY UPDATE,
  // not UPDATE: the attempt and event rows inserted before hold KEY SHARE locks on this row, which
  // FOR UPDATE would wait for, deadlocking two such transactions
  await tx.select({ id: messages.id }).from(messages).where(eq(messages.id, messageId)).for('no key update')
  const rows = await tx
    .select({ status: recipients.status })
    .from(recipients)
    .where(eq(recipients.messageId, messageId))
  const statuses = new Set(rows.map((r) => r.status))
  let status: string
  if (statuses.has('pending') || statuses.has('deferred')) status = 'deferred'
  else if (statuses.size === 1 && statuses.has('delivered')) status = 'delivered'
  else if (statuses.size === 1 && statuses.has('failed')) status = 'failed'
  else if (statuses.has('delivered')) status = 'partially_delivered'
  else status = [...statuses][0] ?? 'failed'
  await tx.update(messages).set({ status, updatedAt: new Date() }).where(eq(messages.id, messageId))
}
