import { recordAudit } from '@moat/core'
import { billingAccounts, billingInvoices, type Executor, plans, stripeEvents, tenants } from '@moat/db'
import { and, eq } from 'drizzle-orm'
import type Stripe from 'stripe'
import type { BillingDeps } from './accounts'
import { enforceTenant } from './enforcement'

/** What handling an event did, for the log and the tests. */
export type EventOutcome = 'applied' | 'duplicate' | 'stale' | 'ignored' | 'unknown_tenant'

const HANDLED = new Set([
  'checkout.session.completed',
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'invoice.paid',
  'invoice.payment_failed',
])

const idOf = (v: string | { id: string } | null | undefined): string | null =>
  v == null ? null : typeof v === 'string' ? v : v.id

async function tenantOf(
  tx: Executor,
  metadataTenant: string | null | undefined,
  customerId: string | null,
): Promise<string | null> {
  if (metadataTenant) {
    const [t] = await tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, metadataTenant))
    if (t) return t.id
  }
  if (customerId) {
    const [a] = await tx
      .select({ id: billingAccounts.tenantId })
      .from(billingAccounts)
      .where(eq(billingAccounts.stripeCustomerId, customerId))
    if (a) return a.id
  }
  return null
}

/** The tenant's billing account, created on the default plan when a webhook is the first to name it. */
async function ensureAccount(tx: Executor, tenantId: string) {
  const [existing] = await tx
    .select()
    .from(billingAccounts)
    .where(eq(billingAccounts.tenantId, tenantId))
    .for('update')
  if (existing) return existing
  const [plan] = await tx.select().from(plans).where(eq(plans.isDefault, true)).limit(1)
  if (!plan) throw new Error('no default plan')
  const [created] = await tx.insert(billingAccounts).values({ tenantId, planId: plan.id }).returning()
  if (!created) throw new Error('billing account insert returned nothing')
  return created
}

/**
 * Applies one verified Stripe event, at most once (its id is recorded in the same transaction) and
 * in any order: a subscription event older than the last one applied changes nothing, and an
 * invoice once paid stays paid whatever failure event arrives after.
 */
export async function handleStripeEvent(
  deps: BillingDeps,
  event: Stripe.Event,
  now = new Date(),
): Promise<EventOutcome> {
  if (!HANDLED.has(event.type)) return 'ignored'
  const created = new Date(event.created * 1000)
  return deps.db.transaction(async (tx) => {
    const first = await tx
      .insert(stripeEvents)
      .values({ id: event.id, type: event.type, createdAt: created })
      .onConflictDoNothing({ target: stripeEvents.id })
      .returning({ id: stripeEvents.id })
    if (!first.length) return 'duplicate'

    let tenantId: string | null = null
    let outcome: EventOutcome = 'applied'
    switch (event.type) {
      case 'checkout.session.completed': {
        const session = event.data.object
        tenantId = await tenantOf(
          tx,
          session.client_reference_id ?? session.metadata?.tenantId,
          idOf(session.customer),
        )
        if (!tenantId) break
        const account = await ensureAccount(tx, tenantId)
        await tx
          .update(billingAccounts)
          .set({
            stripeCustomerId: idOf(session.customer) ?? account.stripeCustomerId,
            stripeSubscriptionId: idOf(session.subscription) ?? account.stripeSubscriptionId,
            updatedAt: now,
          })
          .where(eq(billingAccounts.tenantId, tenantId))
        break
      }
      case 'customer.subscription.created':
      case 'customer.subscription.updated':
      case 'customer.subscription.deleted': {
        const sub = event.data.object
        tenantId = await tenantOf(tx, sub.metadata?.tenantId, idOf(sub.customer))
        if (!tenantId) break
        const account = await ensureAccount(tx, tenantId)
        if (account.stripeSubscriptionEventAt && account.stripeSubscriptionEventAt > created) {
          outcome = 'stale'
          break
        }
        // the deletion of a subscription the tenant has since replaced says nothing about the current one
        if (
          event.type === 'customer.subscription.deleted' &&
          account.stripeSubscriptionId &&
          account.stripeSubscriptionId !== sub.id
        ) {
          outcome = 'stale'
          break
        }
        const planId = sub.metadata?.planId
        const [plan] = planId ? await tx.select().from(plans).where(eq(plans.id, planId)) : []
        await tx
          .update(billingAccounts)
          .set({
            stripeCustomerId: idOf(sub.customer),
            stripeSubscriptionId: sub.id,
            subscriptionStatus: event.type === 'customer.subscription.deleted' ? 'canceled' : sub.status,
            stripeSubscriptionEventAt: created,
            // a plan changed in Stripe (the portal, the dashboard) is the plan here too
            ...(plan && event.type !== 'customer.subscription.deleted' ? { planId: plan.id } : {}),
            updatedAt: now,
          })
          .where(eq(billingAccounts.tenantId, tenantId))
        break
      }
      case 'invoice.paid':
      case 'invoice.payment_failed': {
        const invoice = event.data.object
        tenantId = await tenantOf(tx, invoice.metadata?.tenantId, idOf(invoice.customer))
        if (!tenantId || !invoice.id) break
        const paid = event.type === 'invoice.paid'
        const [existing] = await tx
          .select()
          .from(billingInvoices)
          .where(eq(billingInvoices.id, invoice.id))
          .for('update')
        if (existing && existing.tenantId !== tenantId) {
          outcome = 'ignored'
          break
        }
        if (existing?.status === 'paid' || (existing && !paid && existing.eventAt > created)) {
          outcome = 'stale'
          break
        }
        const values = {
          tenantId,
          status: paid ? 'paid' : 'payment_failed',
          currency: invoice.currency,
          amountDue: invoice.amount_due,
          amountPaid: invoice.amount_paid,
          hostedInvoiceUrl: invoice.hosted_invoice_url ?? null,
          firstFailedAt: existing?.firstFailedAt ?? (paid ? null : created),
          eventAt: created,
          updatedAt: now,
        }
        await tx
          .insert(billingInvoices)
          .values({ id: invoice.id, ...values })
          .onConflictDoUpdate({ target: billingInvoices.id, set: values })
        await recordAudit(tx, {
          tenantId,
          actor: 'stripe',
          action: paid ? 'billing.invoice_paid' : 'billing.payment_failed',
          target: invoice.id,
          detail: { amountDue: invoice.amount_due, currency: invoice.currency, event: event.id },
        })
        break
      }
    }
    if (!tenantId) {
      deps.log?.warn({ eventId: event.id, type: event.type }, 'Stripe event for no known tenant; ignored')
      return 'unknown_tenant'
    }
    await tx
      .update(stripeEvents)
      .set({ tenantId })
      .where(and(eq(stripeEvents.id, event.id)))
    if (outcome === 'applied') {
      await enforceTenant(tx, { tenantId, graceDays: deps.graceDays, now, log: deps.log })
    }
    deps.log?.info({ eventId: event.id, type: event.type, tenantId, outcome }, 'Stripe event')
    return outcome
  })
}
