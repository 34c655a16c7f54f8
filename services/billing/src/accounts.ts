import { MoatError, utcDay, utcMonth } from '@moat/core'
import {
  auditLog,
  billingAccounts,
  billingInvoices,
  type Executor,
  plans,
  tenants,
  usageCounters,
  users,
} from '@moat/db'
import type { Logger } from '@moat/log'
import { and, asc, between, eq } from 'drizzle-orm'
import { enforceTenant } from './enforcement'
import { type InvoicePreview, invoicePreview } from './pricing'
import type { StripeGateway } from './stripe'

export type Plan = typeof plans.$inferSelect
export type BillingAccount = typeof billingAccounts.$inferSelect
export type UsageCounter = typeof usageCounters.$inferSelect

/** What billing needs: the database, Stripe when configured, the grace period after a failed payment. */
export interface BillingDeps {
  db: Executor
  /** undefined: no Stripe key, local metering only */
  stripe: StripeGateway | undefined
  graceDays: number
  /** where Stripe's customer portal sends people back to */
  portalReturnUrl?: string | undefined
  log?: Logger | undefined
}

/** The plans a tenant can choose, cheapest fee first. */
export async function listPlans(db: Executor): Promise<Plan[]> {
  return db
    .select()
    .from(plans)
    .where(eq(plans.available, true))
    .orderBy(asc(plans.monthlyFee), asc(plans.id))
}

async function defaultPlan(db: Executor): Promise<Plan> {
  const [plan] = await db
    .select()
    .from(plans)
    .where(eq(plans.isDefault, true))
    .orderBy(asc(plans.id))
    .limit(1)
  if (!plan) throw new Error('no default plan: the plans table has no row with is_default (see migrations)')
  return plan
}

/** The tenant's plan and billing account (null before the tenant ever chose a plan: the default plan applies). */
export async function tenantPlan(
  db: Executor,
  tenantId: string,
): Promise<{ plan: Plan; account: BillingAccount | null }> {
  const [row] = await db
    .select({ account: billingAccounts, plan: plans })
    .from(billingAccounts)
    .innerJoin(plans, eq(plans.id, billingAccounts.planId))
    .where(eq(billingAccounts.tenantId, tenantId))
  if (row) return row
  return { plan: await defaultPlan(db), account: null }
}

/** The UTC calendar month that contains `at`: Moat's billing period. */
export function billingPeriod(at: Date): { start: Date; end: Date; key: string } {
  const start = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1))
  const end = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1))
  return { start, end, key: utcMonth(at) }
}

const ZERO = {
  messages: 0,
  inbound: 0,
  outbound: 0,
  bytes: 0,
  delivered: 0,
  tagged: 0,
  quarantined: 0,
  discarded: 0,
}
export type UsageTotals = typeof ZERO

function totals(row: UsageCounter | undefined): UsageTotals {
  if (!row) return { ...ZERO }
  const { tenantId: _t, granularity: _g, periodStart: _p, ...rest } = row
  return rest
}

/** The tenant's usage in the billing period containing `at`: one counter row, no event scan. */
export async function periodUsage(db: Executor, tenantId: string, at: Date): Promise<UsageTotals> {
  const [row] = await db
    .select()
    .from(usageCounters)
    .where(
      and(
        eq(usageCounters.tenantId, tenantId),
        eq(usageCounters.granularity, 'month'),
        eq(usageCounters.periodStart, utcMonth(at)),
      ),
    )
  return totals(row)
}

/** Usage per UTC day from `from` to `to` (inclusive), every day present, days without mail at zero. */
export async function dailyUsage(
  db: Executor,
  tenantId: string,
  from: Date,
  to: Date,
): Promise<Array<{ day: string } & UsageTotals>> {
  const rows = await db
    .select()
    .from(usageCounters)
    .where(
      and(
        eq(usageCounters.tenantId, tenantId),
        eq(usageCounters.granularity, 'day'),
        between(usageCounters.periodStart, utcDay(from), utcDay(to)),
      ),
    )
  const byDay = new Map(rows.map((r) => [r.periodStart, r]))
  const days: Array<{ day: string } & UsageTotals> = []
  for (let d = new Date(`${utcDay(from)}T00:00:00Z`); d <= to; d = new Date(d.getTime() + 86_400_000)) {
    const day = utcDay(d)
    days.push({ day, ...totals(byDay.get(day)) })
  }
  return days
}

/** The current period's invoice as Moat computes it from its own counters, in minor units. */
export async function previewInvoice(
  db: Executor,
  tenantId: string,
  at: Date,
): Promise<InvoicePreview & { planId: string; periodStart: Date; periodEnd: Date }> {
  const [{ plan }, usage] = await Promise.all([tenantPlan(db, tenantId), periodUsage(db, tenantId, at)])
  const period = billingPeriod(at)
  return {
    ...invoicePreview(plan, usage.messages),
    planId: plan.id,
    periodStart: period.start,
    periodEnd: period.end,
  }
}

/** Open invoices whose payment failed (the reason a tenant may be suspended after the grace period). */
export async function failedInvoices(db: Executor, tenantId: string) {
  return db
    .select()
    .from(billingInvoices)
    .where(and(eq(billingInvoices.tenantId, tenantId), eq(billingInvoices.status, 'payment_failed')))
    .orderBy(asc(billingInvoices.firstFailedAt))
}

/**
 * Puts the tenant on `planId`. With Stripe: creates the customer the first time, then the
 * subscription (or changes the existing one's items, prorated); a plan without Stripe prices
 * cancels the subscription. Without Stripe: the plan changes locally. Suspensions are re-evaluated
 * at once (a tenant at its prepaid cap that moves to a larger plan resumes).
 */
export async function changePlan(
  deps: BillingDeps,
  input: { tenantId: string; planId: string; actor: string; now?: Date },
): Promise<{ plan: Plan; account: BillingAccount; paymentUrl: string | null }> {
  const { db, stripe } = deps
  const [plan] = await db.select().from(plans).where(eq(plans.id, input.planId))
  if (!plan?.available) {
    throw new MoatError(
      'not_found',
      `no plan ${input.planId}`,
      'GET /v1/billing/plans lists the plans to choose from',
    )
  }
  const [tenant] = await db.select().from(tenants).where(eq(tenants.id, input.tenantId))
  if (!tenant) throw new MoatError('not_found', `no tenant ${input.tenantId}`)
  const { plan: before, account } = await tenantPlan(db, input.tenantId)

  let customerId = account?.stripeCustomerId ?? null
  let subscription: { id: string | null; status: string | null } = {
    id: account?.stripeSubscriptionId ?? null,
    status: account?.subscriptionStatus ?? null,
  }
  let paymentUrl: string | null = null
  const prices = [plan.stripeFlatPriceId, plan.stripeMeteredPriceId].filter((p): p is string => Boolean(p))
  if (stripe) {
    const live = subscription.id && subscription.status !== 'canceled' ? subscription.id : null
    if (prices.length) {
      if (!customerId) {
        const [owner] = await db
          .select({ email: users.email })
          .from(users)
          .where(and(eq(users.tenantId, input.tenantId), eq(users.role, 'owner')))
          .orderBy(asc(users.createdAt))
          .limit(1)
        customerId = await stripe.createCustomer({
          tenantId: tenant.id,
          name: tenant.name,
          email: owner?.email,
        })
        // kept at once: a failure below must not lose the customer Stripe now has
        await db
          .insert(billingAccounts)
          .values({ tenantId: tenant.id, planId: before.id, stripeCustomerId: customerId })
          .onConflictDoUpdate({ target: billingAccounts.tenantId, set: { stripeCustomerId: customerId } })
      }
      const state = live
        ? await stripe.changeSubscription({ subscriptionId: live, planId: plan.id, prices })
        : await stripe.createSubscription({
            tenantId: tenant.id,
            planId: plan.id,
            customerId,
            prices,
            idempotencyKey: `moat-subscription-${tenant.id}-${plan.id}-after-${subscription.id ?? 'none'}`,
          })
      subscription = state
      paymentUrl = state.paymentUrl
    } else if (live) {
      await stripe.cancelSubscription(live)
      subscription = { id: live, status: 'canceled' }
    }
  }

  const result = await db.transaction(async (tx) => {
    const values = {
      planId: plan.id,
      stripeCustomerId: customerId,
      stripeSubscriptionId: subscription.id,
      subscriptionStatus: subscription.status,
      updatedAt: new Date(),
    }
    const [saved] = await tx
      .insert(billingAccounts)
      .values({ tenantId: tenant.id, ...values })
      .onConflictDoUpdate({ target: billingAccounts.tenantId, set: values })
      .returning()
    if (!saved) throw new Error('billing account upsert returned nothing')
    await tx.insert(auditLog).values({
      tenantId: tenant.id,
      actor: input.actor,
      action: 'billing.plan_changed',
      target: tenant.id,
      detail: { from: before.id, to: plan.id, ...(subscription.id ? { subscription: subscription.id } : {}) },
    })
    await enforceTenant(tx, {
      tenantId: tenant.id,
      graceDays: deps.graceDays,
      now: input.now ?? new Date(),
      log: deps.log,
    })
    return saved
  })
  deps.log?.info({ tenantId: tenant.id, from: before.id, to: plan.id }, 'plan changed')
  return { plan, account: result, paymentUrl }
}

/** A link to Stripe's customer portal for the tenant (cards, invoices, cancellation). */
export async function portalLink(deps: BillingDeps, tenantId: string, returnUrl?: string): Promise<string> {
  if (!deps.stripe) {
    throw new MoatError(
      'conflict',
      'billing runs without Stripe on this Moat (local metering only), so there is no customer portal',
      'the operator sets MOAT_STRIPE_SECRET_KEY to bill through Stripe',
    )
  }
  const { account } = await tenantPlan(deps.db, tenantId)
  if (!account?.stripeCustomerId) {
    throw new MoatError(
      'conflict',
      'this tenant has no Stripe customer yet',
      'choose a paid plan first (PUT /v1/billing/plan); that creates the customer',
    )
  }
  return deps.stripe.portalUrl({
    customerId: account.stripeCustomerId,
    returnUrl: returnUrl ?? deps.portalReturnUrl,
  })
}
