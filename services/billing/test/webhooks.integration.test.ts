import { suspendTenant } from '@moat/core'
import { billingAccounts, billingInvoices, stripeEvents, tenants } from '@moat/db'
import { createLogger } from '@moat/log'
import { eq } from 'drizzle-orm'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BillingService, billingDeps, changePlan, startBilling } from '../src/index'
import { type BillingTest, startBillingTest, WEBHOOK_SECRET } from './setup'

// The webhook endpoint runs for real (startBilling's HTTP listener); payloads are signed with
// Stripe's own test helper, stripe.webhooks.generateTestHeaderString. Stripe's API calls go to the
// stand-in in ./stripe-standin.ts, since api.stripe.com is out of reach here.

let t: BillingTest
let billing: BillingService
const log = createLogger({ level: process.env.MOAT_TEST_LOG_LEVEL ?? 'silent' })
const DAY = 86_400_000

beforeAll(async () => {
  t = await startBillingTest()
  billing = await startBilling({ config: t.config, db: t.database.db, log })
})
afterAll(async () => {
  await billing?.close()
  await t?.close()
})

let eventSeq = 0
function event(type: string, object: Record<string, unknown>, created = Math.floor(Date.now() / 1000)) {
  return {
    id: `evt_test${++eventSeq}`,
    object: 'event',
    type,
    created,
    data: { object },
    api_version: Stripe.API_VERSION,
  }
}

async function post(payload: unknown, signature?: string) {
  const body = JSON.stringify(payload)
  const header =
    signature ?? Stripe.webhooks.generateTestHeaderString({ payload: body, secret: WEBHOOK_SECRET })
  const res = await fetch(`${billing.url}/stripe/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': header },
    body,
  })
  // biome-ignore lint/suspicious/noExplicitAny: a JSON answer, which the assertions check
  const json: any = await res.json()
  return { status: res.status, type: res.headers.get('content-type'), body: json }
}

async function customerTenant(name: string) {
  const tenantId = await t.tenant(name)
  const { account } = await changePlan(billingDeps(t.config, t.database.db), {
    tenantId,
    planId: 'volume',
    actor: 'test',
  })
  return {
    tenantId,
    customer: account.stripeCustomerId ?? '',
    subscription: account.stripeSubscriptionId ?? '',
  }
}

const tenantRow = async (id: string) =>
  (await t.database.db.select().from(tenants).where(eq(tenants.id, id)))[0]
const accountRow = async (id: string) =>
  (await t.database.db.select().from(billingAccounts).where(eq(billingAccounts.tenantId, id)))[0]

describe('Stripe webhook signatures', () => {
  it('a wrong signature gets 400 and changes nothing', async () => {
    const { tenantId, customer } = await customerTenant('forged')
    const forged = event('invoice.payment_failed', {
      id: 'in_forged',
      object: 'invoice',
      customer,
      currency: 'usd',
      amount_due: 2900,
      amount_paid: 0,
    })
    const wrongSecret = Stripe.webhooks.generateTestHeaderString({
      payload: JSON.stringify(forged),
      secret: 'whsec_not_ours',
    })
    const res = await post(forged, wrongSecret)
    expect(res).toEqual({
      status: 400,
      type: 'application/problem+json',
      body: {
        type: 'https://moat.dev/problems/invalid-signature',
        title: 'Invalid request',
        status: 400,
        detail: 'the Stripe-Signature header does not match the payload (or is too old)',
      },
    })
    // a valid signature over another body does not pass either
    const other = Stripe.webhooks.generateTestHeaderString({
      payload: '{"id":"evt_other"}',
      secret: WEBHOOK_SECRET,
    })
    expect((await post(forged, other)).status).toBe(400)
    const missing = await fetch(`${billing.url}/stripe/webhook`, {
      method: 'POST',
      body: JSON.stringify(forged),
    })
    expect(missing.status).toBe(400)
    expect(await missing.json()).toMatchObject({ detail: 'no Stripe-Signature header' })

    expect(await t.database.db.select().from(stripeEvents).where(eq(stripeEvents.id, forged.id))).toEqual([])
    expect(
      await t.database.db.select().from(billingInvoices).where(eq(billingInvoices.tenantId, tenantId)),
    ).toEqual([])
    // and even past any grace period, nothing suspends the tenant
    await billing.runOnce(new Date(Date.now() + 30 * DAY))
    expect((await tenantRow(tenantId))?.status).toBe('active')
  })
})

describe('subscription events, twice and out of order', () => {
  it('applies each event once and never lets an older one undo a newer one', async () => {
    const { tenantId, customer, subscription } = await customerTenant('ordered')
    const now = Math.floor(Date.now() / 1000)
    const sub = (status: string) => ({
      id: subscription,
      object: 'subscription',
      customer,
      status,
      metadata: { tenantId, planId: 'volume' },
    })
    const activated = event('customer.subscription.updated', sub('active'), now)
    const pastDue = event('customer.subscription.updated', sub('past_due'), now + 60)

    expect((await post(pastDue)).body).toEqual({ received: true, outcome: 'applied' })
    expect((await post(activated)).body).toEqual({ received: true, outcome: 'stale' })
    expect((await post(pastDue)).body).toEqual({ received: true, outcome: 'duplicate' })
    expect(await accountRow(tenantId)).toMatchObject({ subscriptionStatus: 'past_due' })

    // a plan changed in Stripe's portal becomes the plan here
    const moved = event(
      'customer.subscription.updated',
      { ...sub('active'), metadata: { tenantId, planId: 'prepaid' } },
      now + 120,
    )
    expect((await post(moved)).body.outcome).toBe('applied')
    expect(await accountRow(tenantId)).toMatchObject({ subscriptionStatus: 'active', planId: 'prepaid' })

    // the deletion of some other, older subscription says nothing about this one
    const oldDeleted = event(
      'customer.subscription.deleted',
      { ...sub('canceled'), id: 'sub_old' },
      now + 180,
    )
    expect((await post(oldDeleted)).body.outcome).toBe('stale')
    const deleted = event('customer.subscription.deleted', sub('canceled'), now + 240)
    expect((await post(deleted)).body.outcome).toBe('applied')
    expect(await accountRow(tenantId)).toMatchObject({ subscriptionStatus: 'canceled', planId: 'prepaid' })
  })

  it('checkout completion links the customer and subscription to the tenant it names', async () => {
    const tenantId = await t.tenant('checkout')
    const done = event('checkout.session.completed', {
      id: 'cs_test_1',
      object: 'checkout.session',
      client_reference_id: tenantId,
      customer: 'cus_from_checkout',
      subscription: 'sub_from_checkout',
      metadata: {},
    })
    expect((await post(done)).body.outcome).toBe('applied')
    expect(await accountRow(tenantId)).toMatchObject({
      planId: 'payg',
      stripeCustomerId: 'cus_from_checkout',
      stripeSubscriptionId: 'sub_from_checkout',
    })
  })

  it('an event for a customer Moat does not know is acknowledged and ignored', async () => {
    const stray = event('invoice.paid', {
      id: 'in_stray',
      object: 'invoice',
      customer: 'cus_nobody',
      currency: 'usd',
      amount_due: 1,
      amount_paid: 1,
    })
    expect(await post(stray)).toMatchObject({
      status: 200,
      body: { received: true, outcome: 'unknown_tenant' },
    })
    expect((await post(event('customer.created', { id: 'cus_x' }))).body.outcome).toBe('ignored')
  })
})

describe('failed payments suspend after the grace period; payment resumes', () => {
  const invoice = (id: string, customer: string, paid: boolean) => ({
    id,
    object: 'invoice',
    customer,
    currency: 'usd',
    amount_due: 2900,
    amount_paid: paid ? 2900 : 0,
    hosted_invoice_url: `https://invoice.stripe.test/${id}`,
  })

  it('holds the tenant only after the grace period, and lifts the hold when the invoice is paid', async () => {
    const { tenantId, customer } = await customerTenant('late-payer')
    const failedAt = Math.floor(Date.now() / 1000)
    expect(
      (await post(event('invoice.payment_failed', invoice('in_late', customer, false), failedAt))).body
        .outcome,
    ).toBe('applied')
    // a second failure (Stripe's retry) keeps the first failure's date
    await post(event('invoice.payment_failed', invoice('in_late', customer, false), failedAt + 3600))

    await billing.runOnce(new Date(failedAt * 1000 + 6 * DAY))
    expect((await tenantRow(tenantId))?.status).toBe('active')

    const cycle = await billing.runOnce(new Date(failedAt * 1000 + 7 * DAY + 1000))
    expect(cycle.suspended).toBe(1)
    const held = await tenantRow(tenantId)
    expect(held).toMatchObject({ status: 'suspended', suspendedReason: 'billing' })
    expect(held?.suspendedNote).toBe(
      `payment of invoice in_late failed on ${new Date(failedAt * 1000).toISOString().slice(0, 10)} and is still unpaid after the 7-day grace period; mail is held until it is paid (https://invoice.stripe.test/in_late)`,
    )

    // paid: resumed at once, by the webhook itself
    expect(
      (await post(event('invoice.paid', invoice('in_late', customer, true), failedAt + 8 * 86_400))).body
        .outcome,
    ).toBe('applied')
    expect(await tenantRow(tenantId)).toMatchObject({ status: 'active', suspendedReason: null })

    // the failure notice arriving again after the payment changes nothing: paid is final
    expect(
      (
        await post(
          event('invoice.payment_failed', invoice('in_late', customer, false), failedAt + 9 * 86_400),
        )
      ).body.outcome,
    ).toBe('stale')
    await billing.runOnce(new Date(failedAt * 1000 + 30 * DAY))
    expect((await tenantRow(tenantId))?.status).toBe('active')
  })

  it('never lifts an operator’s suspension', async () => {
    const { tenantId, customer } = await customerTenant('abuse-case')
    await post(
      event(
        'invoice.payment_failed',
        invoice('in_abuse', customer, false),
        Math.floor(Date.now() / 1000) - 10 * 86_400,
      ),
    )
    await billing.runOnce()
    expect(await tenantRow(tenantId)).toMatchObject({ status: 'suspended', suspendedReason: 'billing' })
    await suspendTenant(t.database.db, {
      tenantId,
      reason: 'operator',
      note: 'abuse report',
      actor: 'operator',
    })
    await post(event('invoice.paid', invoice('in_abuse', customer, true)))
    await billing.runOnce()
    expect(await tenantRow(tenantId)).toMatchObject({
      status: 'suspended',
      suspendedReason: 'operator',
      suspendedNote: 'abuse report',
    })
  })
})
