import { utcMonth } from '@moat/core'
import { billingAccounts, billingInvoices, type Executor, plans, tenants, usageCounters } from '@moat/db'
import type { Logger } from '@moat/log'
import { and, asc, eq, isNotNull, or } from 'drizzle-orm'
import { applySuspension, BILLING_SUSPENSION } from './suspension'

/** Why billing holds a tenant's mail, in words for the portal; null when it does not. */
export interface BillingHold {
  kind: 'payment_failed' | 'hard_cap'
  message: string
}

/**
 * Whether billing should hold the tenant now: a payment that failed more than `graceDays` ago and
 * is still unpaid, or a prepaid plan whose cap this period's messages reached.
 */
export async function billingHold(
  db: Executor,
  input: { tenantId: string; graceDays: number; now: Date },
): Promise<BillingHold | null> {
  const [[failed], [capped]] = await Promise.all([
    db
      .select()
      .from(billingInvoices)
      .where(and(eq(billingInvoices.tenantId, input.tenantId), eq(billingInvoices.status, 'payment_failed')))
      .orderBy(asc(billingInvoices.firstFailedAt))
      .limit(1),
    db
      .select({ cap: plans.hardCapMessages, name: plans.name, used: usageCounters.messages })
      .from(billingAccounts)
      .innerJoin(plans, eq(plans.id, billingAccounts.planId))
      .innerJoin(
        usageCounters,
        and(
          eq(usageCounters.tenantId, billingAccounts.tenantId),
          eq(usageCounters.granularity, 'month'),
          eq(usageCounters.periodStart, utcMonth(input.now)),
        ),
      )
      .where(and(eq(billingAccounts.tenantId, input.tenantId), isNotNull(plans.hardCapMessages))),
  ])
  if (failed?.firstFailedAt) {
    const deadline = new Date(failed.firstFailedAt.getTime() + input.graceDays * 86_400_000)
    if (deadline <= input.now) {
      return {
        kind: 'payment_failed',
        message: `payment of invoice ${failed.id} failed on ${failed.firstFailedAt.toISOString().slice(0, 10)} and is still unpaid after the ${input.graceDays}-day grace period; mail is held until it is paid${failed.hostedInvoiceUrl ? ` (${failed.hostedInvoiceUrl})` : ''}`,
      }
    }
  }
  if (capped?.cap != null && capped.used >= capped.cap) {
    return {
      kind: 'hard_cap',
      message: `the ${capped.name} plan's ${capped.cap.toLocaleString('en-US')} messages for ${utcMonth(input.now).slice(0, 7)} are used up; mail is held until next month or a larger plan`,
    }
  }
  return null
}

/**
 * Suspends or resumes the tenant for billing reasons only: it suspends with reason `billing` and
 * lifts only a suspension with that reason, so an operator's suspension is never lifted here.
 * Returns what changed.
 */
export async function enforceTenant(
  db: Executor,
  input: { tenantId: string; graceDays: number; now: Date; log?: Logger | undefined },
): Promise<'suspended' | 'resumed' | 'unchanged'> {
  const hold = await billingHold(db, input)
  const change = await applySuspension(db, input.tenantId, hold?.message ?? null)
  if (change !== 'unchanged') {
    input.log?.warn(
      { tenantId: input.tenantId, reason: BILLING_SUSPENSION, detail: hold?.message },
      `tenant ${change} by billing`,
    )
  }
  return change
}

/** Tenants billing may have to suspend or resume: capped plans, failed payments, billing suspensions. */
export async function tenantsToEnforce(db: Executor): Promise<string[]> {
  const rows = await db
    .selectDistinct({ tenantId: tenants.id })
    .from(tenants)
    .leftJoin(billingAccounts, eq(billingAccounts.tenantId, tenants.id))
    .leftJoin(plans, eq(plans.id, billingAccounts.planId))
    .leftJoin(
      billingInvoices,
      and(eq(billingInvoices.tenantId, tenants.id), eq(billingInvoices.status, 'payment_failed')),
    )
    .where(
      or(
        isNotNull(plans.hardCapMessages),
        isNotNull(billingInvoices.id),
        eq(tenants.suspendedReason, BILLING_SUSPENSION),
      ),
    )
  return rows.map((r) => r.tenantId)
}
