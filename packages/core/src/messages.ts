import {
  deliveryAttempts,
  domains,
  type Executor,
  messageEvents,
  messages,
  recipients,
  tenants,
} from '@moat/db'
import { and, asc, desc, eq, exists, gte, ilike, inArray, lt, ne, or, sql } from 'drizzle-orm'
import { recordAudit } from './audit'
import { normalizeDomain } from './domains'
import { MoatError } from './errors'

export type Message = typeof messages.$inferSelect
export type Recipient = typeof recipients.$inferSelect
export type MessageEvent = typeof messageEvents.$inferSelect
export type DeliveryAttempt = typeof deliveryAttempts.$inferSelect

/** Appends one step to a message's story. */
export async function recordEvent(
  db: Executor,
  message: { id: string; tenantId: string },
  kind: string,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await db.insert(messageEvents).values({ messageId: message.id, tenantId: message.tenantId, kind, detail })
}

export interface MessageFilter {
  tenantId?: string
  domain?: string
  status?: string
  limit?: number
}

/** Newest first. */
export async function listMessages(
  db: Executor,
  filter: MessageFilter = {},
): Promise<(Message & { tenantName: string })[]> {
  const conditions = []
  if (filter.tenantId) conditions.push(eq(messages.tenantId, filter.tenantId))
  if (filter.status) conditions.push(eq(messages.status, filter.status))
  if (filter.domain) {
    const name = normalizeDomain(filter.domain)
    conditions.push(
      inArray(
        messages.id,
        db
          .select({ id: recipients.messageId })
          .from(recipients)
          .innerJoin(domains, eq(domains.id, recipients.domainId))
          .where(eq(domains.name, name)),
      ),
    )
  }
  const rows = await db
    .select({ message: messages, tenantName: tenants.name })
    .from(messages)
    .innerJoin(tenants, eq(tenants.id, messages.tenantId))
    .where(conditions.length ? and(...conditions) : undefined)
    .orderBy(desc(messages.receivedAt), desc(messages.id))
    .limit(filter.limit ?? 50)
  return rows.map((r) => ({ ...r.message, tenantName: r.tenantName }))
}

export interface MessageTrace {
  message: Message & { tenantName: string }
  recipients: Recipient[]
  events: MessageEvent[]
  attempts: DeliveryAttempt[]
}

/** A message's whole lifecycle, found by its id or the SMTP queue id. */
export async function showMessage(db: Executor, id: string, tenantId?: string): Promise<MessageTrace[]> {
  const found = await db
    .select({ message: messages, tenantName: tenants.name })
    .from(messages)
    .innerJoin(tenants, eq(tenants.id, messages.tenantId))
    .where(
      and(
        or(eq(messages.id, id), eq(messages.queueId, id)),
        tenantId ? eq(messages.tenantId, tenantId) : undefined,
      ),
    )
    .orderBy(asc(messages.id))
  if (!found.length)
    throw new MoatError('not_found', `no message ${id}`, 'list recent ones with: moat messages')
  return Promise.all(
    found.map(async ({ message, tenantName }) => ({
      message: { ...message, tenantName },
      recipients: await db
        .select()
        .from(recipients)
        .where(eq(recipients.messageId, message.id))
        .orderBy(asc(recipients.id)),
      events: await db
        .select()
        .from(messageEvents)
        .where(eq(messageEvents.messageId, message.id))
        .orderBy(asc(messageEvents.id)),
      attempts: await db
        .select()
        .from(deliveryAttempts)
        .where(eq(deliveryAttempts.messageId, message.id))
        .orderBy(asc(deliveryAttempts.id)),
    })),
  )
}

/** Counts of messages by status, for a quick overview. */
export async function messageCounts(db: Executor): Promise<Record<string, number>> {
  const rows = await db
    .select({ status: messages.status, n: sql<number>`count(*)::int` })
    .from(messages)
    .groupBy(messages.status)
  return Object.fromEntries(rows.map((r) => [r.status, r.n]))
}

export interface MessageSearch {
  tenantId: string
  limit: number
  /** the last id of the previous page: newer messages come first, so the next page is older */
  cursor?: string | undefined
  /** the envelope sender, exactly (case-insensitive) */
  sender?: string | undefined
  /** one envelope recipient, exactly (case-insensitive) */
  recipient?: string | undefined
  /** a substring of the subject (case-insensitive) */
  subject?: string | undefined
  status?: string | undefined
  direction?: string | undefined
  /** received at or after */
  from?: Date | undefined
  /** received before */
  to?: Date | undefined
  /** spam score at or above */
  minScore?: number | undefined
  /** `virus`: quarantined for a virus; `spam`: for anything else */
  reason?: 'virus' | 'spam' | undefined
}

const likePattern = (s: string) => `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** One tenant's messages, newest first (by id, which sorts by time), `limit` at a time after `cursor`. */
export async function searchMessages(db: Executor, search: MessageSearch): Promise<Message[]> {
  const conditions = [eq(messages.tenantId, search.tenantId)]
  if (search.cursor) conditions.push(lt(messages.id, search.cursor))
  if (search.sender) conditions.push(sql`lower(${messages.mailFrom}) = ${search.sender.toLowerCase()}`)
  if (search.recipient) {
    conditions.push(
      exists(
        db
          .select({ one: sql`1` })
          .from(recipients)
          .where(
            and(
              eq(recipients.messageId, messages.id),
              sql`lower(${recipients.address}) = ${search.recipient.toLowerCase()}`,
            ),
          ),
      ),
    )
  }
  if (search.subject) conditions.push(ilike(messages.subject, likePattern(search.subject)))
  if (search.status) conditions.push(eq(messages.status, search.status))
  if (search.direction) conditions.push(eq(messages.direction, search.direction))
  if (search.from) conditions.push(gte(messages.receivedAt, search.from))
  if (search.to) conditions.push(lt(messages.receivedAt, search.to))
  if (search.minScore !== undefined) conditions.push(gte(messages.spamScore, search.minScore))
  if (search.reason === 'virus') conditions.push(eq(messages.virusScan, 'infected'))
  if (search.reason === 'spam') conditions.push(sql`${messages.virusScan} is distinct from 'infected'`)
  return db
    .select()
    .from(messages)
    .where(and(...conditions))
    .orderBy(desc(messages.id))
    .limit(search.limit)
}

/** One message of the tenant's, by id; another tenant's is as missing as one that never was. */
export async function getMessage(db: Executor, tenantId: string, id: string): Promise<Message> {
  const [m] = await db
    .select()
    .from(messages)
    .where(and(eq(messages.id, id), eq(messages.tenantId, tenantId)))
  if (!m) throw new MoatError('not_found', `no message ${id}`)
  return m
}

/**
 * Deletes a quarantined message from the quarantine: it and its recipients become `deleted`, the
 * event goes into the message log and the audit log. The caller then purges the raw object with
 * `purgeRawObject` (it may be shared with another tenant's copy of the same SMTP transaction).
 */
export async function deleteQuarantined(
  db: Executor,
  input: { tenantId: string; messageId: string; actor: string },
): Promise<Message> {
  return db.transaction(async (tx) => {
    const m = await getMessage(tx, input.tenantId, input.messageId)
    if (m.status !== 'quarantined')
      throw new MoatError('conflict', `message ${m.id} is ${m.status}, not quarantined`)
    const [updated] = await tx
      .update(messages)
      .set({ status: 'deleted', updatedAt: new Date() })
      .where(and(eq(messages.id, m.id), eq(messages.status, 'quarantined')))
      .returning()
    if (!updated) throw new MoatError('conflict', `message ${m.id} was changed by someone else just now`)
    await tx
      .update(recipients)
      .set({ status: 'deleted', updatedAt: new Date() })
      .where(eq(recipients.messageId, m.id))
    await recordEvent(tx, m, 'deleted', { actor: input.actor })
    await recordAudit(tx, {
      tenantId: m.tenantId,
      actor: input.actor,
      action: 'quarantine.delete',
      target: m.id,
      detail: { from: m.mailFrom, subject: m.subject, score: m.spamScore, virus: m.virusName },
    })
    return updated
  })
}

/**
 * Deletes a message's raw object from the store once no message row that still needs it refers to
 * it (rows of one SMTP transaction for several tenants share it). True when it was deleted.
 */
export async function purgeRawObject(
  db: Executor,
  store: { delete(key: string): Promise<void> },
  objectKey: string,
): Promise<boolean> {
  const [used] = await db
    .select({ id: messages.id })
    .from(messages)
    .where(and(eq(messages.objectKey, objectKey), ne(messages.status, 'deleted')))
    .limit(1)
  if (used) return false
  await store.delete(objectKey)
  return true
}
