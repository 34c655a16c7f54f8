import { utcMonth } from '@moat/core'
import { billingAccounts, type Executor, plans, usageCounters, usageReports } from '@moat/db'
import { and, asc, eq, isNotNull, isNull, max, sum } from 'drizzle-orm'
import type { BillingDeps } from './accounts'
import type { StripeGateway } from './stripe'

type Report = typeof usageReports.$inferSelect

/** The meter event identifier of a batch: the same batch always gets the same one. */
export function reportIdentifier(tenantId: string, periodStart: string, batch: number): string {
  return `moat-${tenantId}-${periodStart}-${batch}`
}

/**
 * Sends Stripe the messages not yet reported, per tenant with a Stripe customer on a metered
 * plan, for the current month and the one before (so the last messages of a month reach its
 * invoice). Each batch is a `usage_reports` row committed before the call with a fixed
 * identifier; a batch whose call failed, or whose process died, is sent again with that same
 * identifier, which Stripe deduplicates, and a new batch is made only once every earlier one is
 * confirmed. So a retry never bills a message twice.
 */
export async function reportUsage(
  deps: BillingDeps,
  now = new Date(),
): Promise<{ sent: number; messages: number; failed: number }> {
  const { db, stripe } = deps
  const totals = { sent: 0, messages: 0, failed: 0 }
  if (!stripe) return totals
  const accounts = await db
    .select({ tenantId: billingAccounts.tenantId, customerId: billingAccounts.stripeCustomerId })
    .from(billingAccounts)
    .innerJoin(plans, eq(plans.id, billingAccounts.planId))
    .where(and(isNotNull(billingAccounts.stripeCustomerId), isNotNull(plans.stripeMeteredPriceId)))
  const current = utcMonth(now)
  const previous = utcMonth(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 0)))
  for (const { tenantId, customerId } of accounts) {
    if (!customerId) continue
    for (const period of [previous, current]) {
      // a period's events are stamped inside it: the last second of a past month, or now
      const at = period === current ? now : new Date(Date.parse(`${current}T00:00:00Z`) - 1000)
      const result = await reportPeriod(db, stripe, { tenantId, customerId, period, at })
      totals.sent += result.sent
      totals.messages += result.messages
      totals.failed += result.failed
    }
  }
  if (totals.sent || totals.failed) deps.log?.info(totals, 'usage reported to Stripe')
  return totals
}

async function send(db: Executor, stripe: StripeGateway, report: Report, at: Date): Promise<boolean> {
  try {
    await stripe.reportUsage({
      customerId: report.stripeCustomerId,
      quantity: report.quantity,
      identifier: report.identifier,
      timestamp: at,
    })
  } catch (err) {
    await db
      .update(usageReports)
      .set({ lastError: err instanceof Error ? err.message.slice(0, 500) : String(err) })
      .where(
        and(
          eq(usageReports.tenantId, report.tenantId),
          eq(usageReports.periodStart, report.periodStart),
          eq(usageReports.batch, report.batch),
        ),
      )
    return false
  }
  await db
    .update(usageReports)
    .set({ reportedAt: new Date(), lastError: null })
    .where(
      and(
        eq(usageReports.tenantId, report.tenantId),
        eq(usageReports.periodStart, report.periodStart),
        eq(usageReports.batch, report.batch),
      ),
    )
  return true
}

async function reportPeriod(
  db: Executor,
  stripe: StripeGateway,
  input: { tenantId: string; customerId: string; period: string; at: Date },
): Promise<{ sent: number; messages: number; failed: number }> {
  const out = { sent: 0, messages: 0, failed: 0 }
  const inPeriod = and(eq(usageReports.tenantId, input.tenantId), eq(usageReports.periodStart, input.period))
  // first, what an earlier attempt left unconfirmed, with its own identifier
  const pending = await db
    .select()
    .from(usageReports)
    .where(and(inPeriod, isNull(usageReports.reportedAt)))
    .orderBy(asc(usageReports.batch))
  for (const report of pending) {
    if (!(await send(db, stripe, report, input.at))) {
      out.failed++
      return out
    }
    out.sent++
    out.messages += report.quantity
  }
  const [[counted], [reported]] = await Promise.all([
    db
      .select({ messages: usageCounters.messages })
      .from(usageCounters)
      .where(
        and(
          eq(usageCounters.tenantId, input.tenantId),
          eq(usageCounters.granularity, 'month'),
          eq(usageCounters.periodStart, input.period),
        ),
      ),
    db
      .select({ quantity: sum(usageReports.quantity).mapWith(Number), last: max(usageReports.batch) })
      .from(usageReports)
      .where(inPeriod),
  ])
  const delta = (counted?.messages ?? 0) - (reported?.quantity ?? 0)
  if (delta <= 0) return out
  const batch = (reported?.last ?? 0) + 1
  const [report] = await db
    .insert(usageReports)
    .values({
      tenantId: input.tenantId,
      periodStart: input.period,
      batch,
      quantity: delta,
      identifier: reportIdentifier(input.tenantId, input.period, batch),
      stripeCustomerId: input.customerId,
    })
    // another billing process made this batch first: it sends it
    .onConflictDoNothing()
    .returning()
  if (!report) return out
  if (await send(db, stripe, report, input.at)) {
    out.sent++
    out.messages += report.quantity
  } else out.failed++
  return out
}
