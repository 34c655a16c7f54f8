import { addressDomain, type DeliverJob, recordEvent, signingKeyFor } from '@moat/core'
import { type Executor, messages, newId, recipients, tenants } from '@moat/db'
import type { Logger } from '@moat/log'
import type { ReceivedJob } from '@moat/queue'
import { and, eq, inArray } from 'drizzle-orm'
import { dkimSign } from 'mailauth/lib/dkim/sign'
import addressparser from 'nodemailer/lib/addressparser'
import { buildDsn, type FailedRecipient } from './dsn'
import { type MxAnswer, resolveMx } from './mx'
import type { Egress } from './pools'
import type { Destination, SendOutcome } from './smtp-client'
import {
  type AttemptRecord,
  backoffSeconds,
  type DeliverDeps,
  passWrites,
  updateMessageStatus,
} from './worker'

type MessageRow = typeof messages.$inferSelect

interface RecipientOutcome {
  status: 'delivered' | 'deferred' | 'failed'
  reply: string
  remoteMta?: string
}

/**
 * Delivers an outbound message to its recipients in one domain on the Internet: through the
 * tenant's sender pool, either to a smart host of the pool or straight to the domain's MX hosts
 * (by preference, each address in turn, STARTTLS whenever offered). The copy sent is DKIM-signed
 * when the From domain has a published (or forced) key. Permanent failures, and recipients still
 * undelivered at the give-up age, produce one DSN to the envelope sender, unless it is the null
 * sender.
 */
export async function deliverOutbound(
  deps: DeliverDeps,
  job: ReceivedJob<DeliverJob>,
  domain: string,
): Promise<void> {
  const { db, config, log } = deps
  const messageId = job.body.messageId
  const jobLog = log.child({ messageId, jobId: job.id, domain })
  const [message] = await db.select().from(messages).where(eq(messages.id, messageId))
  const pending = message
    ? (
        await db
          .select()
          .from(recipients)
          .where(
            and(eq(recipients.messageId, messageId), inArray(recipients.status, ['pending', 'deferred'])),
          )
      ).filter((r) => addressDomain(r.address) === domain)
    : []
  if (!message || !pending.length || message.status === 'held') {
    await deps.deliverQueue.delete(job.receipt)
    return
  }

  const [tenant] = await db
    .select({ senderPool: tenants.senderPool })
    .from(tenants)
    .where(eq(tenants.id, message.tenantId))
  const pool = tenant?.senderPool && deps.pools.has(tenant.senderPool) ? tenant.senderPool : 'default'
  const raw = await signedCopy(db, message, await deps.store.get(message.objectKey), jobLog)

  const attempts: AttemptRecord[] = []
  const outcome = new Map<string, RecipientOutcome>()
  let left = pending.map((r) => r.address)
  let mx: MxAnswer | undefined
  let usedPath: string | undefined

  const attempt = async (dest: Destination, label: string): Promise<SendOutcome> => {
    const started = Date.now()
    let result: SendOutcome
    try {
      result = await deps.smtp.send(dest, { from: message.mailFrom, to: left }, raw)
    } catch (err) {
      const reply = `local error: ${(err as Error).message}`
      result = {
        accepted: [],
        refused: left.map((address) => ({ address, code: null, reply, permanent: false })),
        reply,
        code: null,
      }
    }
    for (const address of result.accepted)
      outcome.set(address, { status: 'delivered', reply: result.reply, remoteMta: label })
    for (const r of result.refused)
      outcome.set(r.address, {
        status: r.permanent ? 'failed' : 'deferred',
        reply: r.reply,
        remoteMta: label,
      })
    const permanent = result.refused.filter((r) => r.permanent).length
    attempts.push({
      host: label,
      port: dest.port,
      recipients: left,
      outcome: result.accepted.length ? 'delivered' : permanent === left.length ? 'failed' : 'deferred',
      code: result.code,
      reply: result.reply,
      durationMs: Date.now() - started,
    })
    left = result.refused.filter((r) => !r.permanent).map((r) => r.address)
    return result
  }

  for (const path of deps.pools.order(pool)) {
    if (!left.length) break
    usedPath = path.name
    if (path.smarthost) {
      const s = path.smarthost
      const result = await attempt(
        {
          host: s.host,
          port: s.port,
          secure: s.tls === 'implicit',
          auth: s.user ? { user: s.user, pass: s.pass ?? '' } : undefined,
          localAddress: path.bindIp,
          helo: path.helo,
        },
        s.host,
      )
      if (result.connectionFailed) {
        deps.pools.failed(pool, path)
        jobLog.warn({ pool, path: path.name, reply: result.reply }, 'egress path failed; resting it')
        continue
      }
      deps.pools.succeeded(pool, path)
      break
    }
    mx ??= await resolveMx(deps.resolver, domain)
    if (!mx.ok) {
      for (const address of left)
        outcome.set(address, { status: mx.permanent ? 'failed' : 'deferred', reply: mx.reason })
      if (mx.permanent) left = []
      break
    }
    for (const host of mx.hosts) {
      for (const address of host.addresses) {
        if (!left.length) break
        await attempt(directDestination(path, address, host.name, config.outbound.smtpPort), host.name)
      }
    }
    break
  }

  await finish(deps, job, message, pending, outcome, attempts, { domain, pool, path: usedPath }, jobLog)
}

function directDestination(path: Egress, address: string, name: string, port: number): Destination {
  return { host: address, port, localAddress: path.bindIp, helo: path.helo, servername: name }
}

/** The stored message with a DKIM-Signature on top when the From domain has a key to sign with. */
async function signedCopy(db: Executor, message: MessageRow, raw: Buffer, log: Logger): Promise<Buffer> {
  if (!message.mailFrom && message.clientIp === null) return raw // Moat's own DSNs are not signed
  const fromDomain = headerFromDomain(raw)
  if (!fromDomain) return raw
  const key = await signingKeyFor(db, message.tenantId, fromDomain)
  if (!key) return raw
  // mailauth's typings describe one top-level key; its code (and README) take `signatureData`
  const options = {
    canonicalization: 'relaxed/relaxed',
    algorithm: key.algorithm,
    signatureData: [{ signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey }],
  } as unknown as Parameters<typeof dkimSign>[1]
  const result = await dkimSign(raw, options)
  if (result.errors.length) {
    log.warn({ errors: result.errors.map((e) => String(e)) }, 'DKIM signing failed; sending unsigned')
    return raw
  }
  return Buffer.concat([Buffer.from(result.signatures), raw])
}

/** The domain of the first From address, from the header block. */
function headerFromDomain(raw: Buffer): string | undefined {
  const head = headerBlock(raw).replace(/\r?\n[ \t]+/g, ' ')
  const from = /^From:[ \t]*(.*)$/im.exec(head)?.[1]
  const address = from ? addressparser(from, { flatten: true })[0]?.address : undefined
  return address ? addressDomain(address) : undefined
}

function headerBlock(raw: Buffer): string {
  const text = raw.subarray(0, 256 * 1024).toString('utf8')
  const end = text.search(/\r?\n\r?\n/)
  return end >= 0 ? text.slice(0, end) : text
}

async function finish(
  deps: DeliverDeps,
  job: ReceivedJob<DeliverJob>,
  message: MessageRow,
  pending: (typeof recipients.$inferSelect)[],
  outcome: Map<string, RecipientOutcome>,
  attempts: AttemptRecord[],
  route: { domain: string; pool: string; path: string | undefined },
  jobLog: Logger,
): Promise<void> {
  const { db, config } = deps
  const messageId = message.id
  const ageSeconds = (Date.now() - message.receivedAt.getTime()) / 1000
  const expired = ageSeconds >= config.deliver.giveUpSeconds
  const tries = Math.max(...pending.map((r) => r.attempts)) + 1
  const delay = Math.max(
    1,
    Math.min(
      backoffSeconds(tries, config.deliver.retryFirstSeconds, config.deliver.retryMaxSeconds),
      Math.ceil(config.deliver.giveUpSeconds - ageSeconds),
    ),
  )
  const noAttempt = 'no delivery attempt was made'
  const of = (address: string) => outcome.get(address) ?? { status: 'deferred' as const, reply: noAttempt }
  const delivered = pending.filter((r) => of(r.address).status === 'delivered').map((r) => r.address)
  const failed = pending.filter((r) => of(r.address).status === 'failed').map((r) => r.address)
  const deferred = pending.filter((r) => of(r.address).status === 'deferred').map((r) => r.address)
  const events: { kind: string; detail: Record<string, unknown> }[] = []
  const via = { egressPool: route.pool, egressPath: route.path }
  if (delivered.length)
    events.push({
      kind: 'delivered',
      detail: { recipients: delivered, reply: of(delivered[0] ?? '').reply, ...via },
    })
  if (failed.length)
    events.push({ kind: 'failed', detail: { recipients: failed, reply: of(failed[0] ?? '').reply, ...via } })
  if (deferred.length && expired) {
    events.push({ kind: 'expired', detail: { recipients: deferred, ageSeconds: Math.round(ageSeconds) } })
  } else if (deferred.length) {
    events.push({
      kind: 'deferred',
      detail: {
        recipients: deferred,
        reason: of(deferred[0] ?? '').reply,
        attempt: tries,
        retryInSeconds: delay,
        nextAttemptAt: new Date(Date.now() + delay * 1000).toISOString(),
        ...via,
      },
    })
  }

  // permanent failures and expiries go back to the sender, never to the null sender
  const bounced: FailedRecipient[] = [
    ...failed.map((address) => ({
      address,
      diagnostic: of(address).reply,
      remoteMta: of(address).remoteMta,
    })),
    ...(expired
      ? deferred.map((address) => ({
          address,
          diagnostic: `expired after ${Math.round(ageSeconds)}s; last reply: ${of(address).reply}`,
          remoteMta: of(address).remoteMta,
        }))
      : []),
  ]
  let dsn: { id: string; queueId: string; objectKey: string; raw: Buffer } | undefined
  if (bounced.length && message.mailFrom) {
    const queueId = newId()
    const original = headerBlock(await deps.store.get(message.objectKey))
    const raw = buildDsn({
      reportingMta: config.hostname,
      to: message.mailFrom,
      queueId: message.queueId,
      arrivalDate: message.receivedAt,
      failed: bounced,
      expired: expired && !failed.length,
      originalHeaders: original,
    })
    const objectKey = `outbound/${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/${queueId}.eml`
    await deps.store.put(objectKey, raw)
    dsn = { id: newId('msg'), queueId, objectKey, raw }
  }

  try {
    await db.transaction(async (tx) => {
      const writes = passWrites(tx, deps, job, {
        tenantId: message.tenantId,
        attempts,
        events,
        pending,
        outcomeOf: of,
        expired,
        ageSeconds,
        retry:
          deferred.length && !expired
            ? { body: { messageId, domain: route.domain }, delaySeconds: delay }
            : undefined,
      })
      await Promise.all(writes)
      if (dsn && message.mailFrom) {
        await tx.insert(messages).values({
          id: dsn.id,
          tenantId: message.tenantId,
          queueId: dsn.queueId,
          direction: 'outbound',
          status: 'queued',
          mailFrom: '',
          rcptTo: [message.mailFrom],
          objectKey: dsn.objectKey,
          size: dsn.raw.length,
          subject: 'Undelivered Mail Returned to Sender',
          action: 'deliver',
        })
        await Promise.all([
          tx.insert(recipients).values({
            messageId: dsn.id,
            tenantId: message.tenantId,
            address: message.mailFrom,
            domainId: null,
          }),
          recordEvent(tx, { id: dsn.id, tenantId: message.tenantId }, 'received', {
            dsnFor: messageId,
            queueId: dsn.queueId,
            to: [message.mailFrom],
            failed: bounced.map((b) => b.address),
          }),
          recordEvent(tx, message, 'bounced', {
            dsn: dsn.id,
            to: message.mailFrom,
            recipients: bounced.map((b) => b.address),
          }),
          deps.deliverQueue.send({ messageId: dsn.id, domain: addressDomain(message.mailFrom) }, { tx }),
        ])
      }
      await updateMessageStatus(tx, messageId)
    })
  } catch (err) {
    if (dsn) await deps.store.delete(dsn.objectKey).catch(() => {})
    throw err
  }
  jobLog.info(
    {
      attempts: attempts.length,
      delivered: delivered.length,
      failed: failed.length,
      deferred: deferred.length,
      expired,
      dsn: dsn?.id,
    },
    'outbound delivery pass done',
  )
}
