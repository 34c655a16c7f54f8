import { type Executor, usageCounters, usageEvents } from '@moat/db'
import { sql } from 'drizzle-orm'

/** What one scanned message counts for in billing. */
export interface UsageEvent {
  messageId: string
  tenantId: string
  direction: string
  /** the scan's action: `deliver`, `tag`, `quarantine` or `discard` */
  verdict: string
  size: number
  at: Date
}

/** `YYYY-MM-DD` of the UTC day of `at`. */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10)
}

/** `YYYY-MM-01`: the first day of the UTC calendar month of `at`, which is Moat's billing period. */
export function utcMonth(at: Date): string {
  return `${at.toISOString().slice(0, 7)}-01`
}

const VERDICT_COLUMN = {
  deliver: 'delivered',
  tag: 'tagged',
  quarantine: 'quarantined',
  discard: 'discarded',
} as const

/**
 * Records one message's usage event and adds it to the tenant's day and month counters. Keyed by
 * message id: the second call for a message (a job delivered twice) changes nothing and returns
 * false. Call it inside the transaction that records the scan, so the event commits with it.
 *
 * @example
 * await db.transaction(async (tx) => {
 *   await recordUsage(tx, { messageId, tenantId, direction: 'inbound', verdict: 'deliver', size, at: new Date() })
 * })
 */
export async function recordUsage(tx: Executor, event: UsageEvent): Promise<boolean> {
  const inserted = await tx
    .insert(usageEvents)
    .values(event)
    .onConflictDoNothing({ target: usageEvents.messageId })
    .returning({ messageId: usageEvents.messageId })
  if (!inserted.length) return false
  const verdictColumn = VERDICT_COLUMN[event.verdict as keyof typeof VERDICT_COLUMN]
  const row = {
    tenantId: event.tenantId,
    messages: 1,
    inbound: event.direction === 'inbound' ? 1 : 0,
    outbound: event.direction === 'outbound' ? 1 : 0,
    bytes: event.size,
    delivered: verdictColumn === 'delivered' ? 1 : 0,
    tagged: verdictColumn === 'tagged' ? 1 : 0,
    quarantined: verdictColumn === 'quarantined' ? 1 : 0,
    discarded: verdictColumn === 'discarded' ? 1 : 0,
  }
  const add = (column: Exclude<keyof typeof row, 'tenantId'>) =>
    sql`${usageCounters[column]} + excluded.${sql.identifier(usageCounters[column].name)}`
  // day before month, always in this order, so two transactions never wait on each other in a cycle
  await tx
    .insert(usageCounters)
    .values([
      { ...row, granularity: 'day', periodStart: utcDay(event.at) },
      { ...row, granularity: 'month', periodStart: utcMonth(event.at) },
    ])
    .onConflictDoUpdate({
      target: [usageCounters.tenantId, usageCounters.granularity, usageCounters.periodStart],
      set: {
        messages: add('messages'),
        inbound: add('inbound'),
        outbound: add('outbound'),
        bytes: add('bytes'),
        delivered: add('delivered'),
        tagged: add('tagged'),
        quarantined: add('quarantined'),
        discarded: add('discarded'),
      },
    })
  return true
}
