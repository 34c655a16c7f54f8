import {
  deliveryAttempts,
  domains,
  type Executor,
  messageEvents,
  messages,
  recipients,
  tenants,
} from '@moat/db'
import { and, asc, desc, eq, inArray, or, sql } from 'drizzle-orm'
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
