import { MoatError, recordUsage, utcMonth } from '@moat/core'
import { auditLog, billingAccounts, usageReports } from '@moat/db'
import { createLogger } from '@moat/log'
import { and, eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { billingDeps, changePlan, portalLink, reportUsage, tenantPlan } from '../src/index'
import { type BillingTest, startBillingTest } from './setup'

// Stripe itself is not reachable here: the real `stripe` client talks to the stand-in in
// ./stripe-standin.ts (see there), configured through MOAT_STRIPE_API_URL (host, port, protocol).

let t: BillingTest
let deps: ReturnType<typeof billingDeps>
const log = createLogger({ level: process.env.MOAT_TEST_LOG_LEVEL ?? 'silent' })

beforeAll(async () => {
  t = await startBillingTest()
  deps = billingDeps(t.config, t.database.db, log)
})
afterAll(async () => {
  await t?.close()
})

let seq = 0
async function scanned(tenantId: string, count: number, at = new Date()) {
  for (let i = 0; i < count; i++) {
    await recordUsage(t.database.db, {
      messageId: `msg_test${++seq}`,
      tenantId,
      direction: 'inbound',
      verdict: 'deliver',
      size: 1000,
      at,
    })
  }
}

describe('choosing a plan, with Stripe', () => {
  it('creates the customer and a subscription with the plan’s prices, anchored on the 1st', async () => {
    const tenantId = await t.tenant('acme')
    const before = t.standIn.requests.length
    const result = await changePlan(deps, { tenantId, planId: 'volume', actor: 'user:test' })

    const calls = t.standIn.requests.slice(before)
    expect(calls.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /v1/customers',
      'POST /v1/subscriptions',
    ])
    const [customer, subscription] = calls
    expect(customer?.authorization).toBe('Bearer sk_test_moat_standin')
    expect(customer?.idempotencyKey).toBe(`moat-customer-${tenantId}`)
    expect(customer?.form).toMatchObject({
      name: 'acme',
      email: 'owner@acme.test',
      'metadata[tenantId]': tenantId,
    })
    expect(subscription?.form).toMatchObject({
      'items[0][price]': 'price_volume_fee',
      'items[1][price]': 'price_volume_usage',
      'metadata[tenantId]': tenantId,
      'metadata[planId]': 'volume',
      'billing_cycle_anchor_config[day_of_month]': '1',
      payment_behavior: 'default_incomplete',
    })
    expect(subscription?.idempotencyKey).toBe(`moat-subscription-${tenantId}-volume-after-none`)

    expect(result.plan.id).toBe('volume')
    expect(result.paymentUrl).toBe('https://invoice.stripe.test/pay/1')
    expect(result.account).toMatchObject({
      planId: 'volume',
      stripeCustomerId: expect.stringMatching(/^cus_/),
      stripeSubscriptionId: expect.stringMatching(/^sub_/),
      subscriptionStatus: 'incomplete',
    })
    const audit = await t.database.db
      .select()
      .from(auditLog)
      .where(eq(auditLog.action, 'billing.plan_changed'))
    expect(audit.map((a) => a.detail)).toContainEqual(expect.objectContaining({ from: 'payg', to: 'volume' }))
  })

  it('a second change swaps the subscription’s items, prorated, with the same customer', async () => {
    const tenantId = await t.tenant('swapper')
    const first = await changePlan(deps, { tenantId, planId: 'volume', actor: 'user:test' })
    const before = t.standIn.requests.length
    const second = await changePlan(deps, { tenantId, planId: 'payg', actor: 'user:test' })
    const calls = t.standIn.requests.slice(before)
    expect(calls.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /v1/subscriptions/${first.account.stripeSubscriptionId}`,
      `POST /v1/subscriptions/${first.account.stripeSubscriptionId}`,
    ])
    expect(calls[1]?.form).toMatchObject({
      'items[0][deleted]': 'true',
      'items[1][deleted]': 'true',
      'items[2][price]': 'price_payg_usage',
      proration_behavior: 'create_prorations',
    })
    expect(second.account).toMatchObject({
      planId: 'payg',
      stripeCustomerId: first.account.stripeCustomerId,
      stripeSubscriptionId: first.account.stripeSubscriptionId,
      subscriptionStatus: 'active',
    })
  })

  it('an unknown plan is a not_found error and calls Stripe not at all', async () => {
    const tenantId = await t.tenant('typo')
    const before = t.standIn.requests.length
    const err = await changePlan(deps, { tenantId, planId: 'gold', actor: 'user:test' }).catch((e) => e)
    expect(err).toBeInstanceOf(MoatError)
    expect(err).toMatchObject({ code: 'not_found', message: 'no plan gold' })
    expect(t.standIn.requests.length).toBe(before)
    expect((await tenantPlan(t.database.db, tenantId)).plan.id).toBe('payg')
  })

  it('gives a customer-portal link for the tenant’s customer', async () => {
    const tenantId = await t.tenant('portal')
    await changePlan(deps, { tenantId, planId: 'volume', actor: 'user:test' })
    const url = await portalLink(deps, tenantId)
    const { account } = await tenantPlan(t.database.db, tenantId)
    expect(url).toBe(`https://billing.stripe.test/p/session/${account?.stripeCustomerId}`)
    expect(t.standIn.requests.at(-1)?.form).toEqual({
      customer: account?.stripeCustomerId,
      return_url: 'https://portal.moat.test/billing',
    })
  })
})

describe('usage reported to Stripe', () => {
  it('sends each message once, in batches with fixed identifiers, across failures and a crash', async () => {
    const tenantId = await t.tenant('metered')
    const { account } = await changePlan(deps, { tenantId, planId: 'volume', actor: 'user:test' })
    const customer = account.stripeCustomerId
    const period = utcMonth(new Date())
    const events = () => t.standIn.meterEvents.filter((e) => e.customer === customer)
    const total = () => events().reduce((sum, e) => sum + e.value, 0)

    await scanned(tenantId, 3)
    expect(await reportUsage(deps)).toMatchObject({ sent: 1, failed: 0 })
    expect(events()).toEqual([
      { identifier: `moat-${tenantId}-${period}-1`, customer, value: 3, timestamp: expect.any(Number) },
    ])
    const meterCall = t.standIn.requests.findLast((r) => r.path === '/v1/billing/meter_events')
    expect(meterCall?.form).toMatchObject({
      event_name: 'moat_messages',
      'payload[stripe_customer_id]': customer,
      'payload[value]': '3',
      identifier: `moat-${tenantId}-${period}-1`,
    })
    expect(meterCall?.idempotencyKey).toBe(`moat-${tenantId}-${period}-1`)

    // nothing new: nothing sent
    expect(await reportUsage(deps)).toMatchObject({ sent: 0 })

    // Stripe fails every try (the client's own retries included): the batch stays pending
    await scanned(tenantId, 2)
    t.standIn.failNext('/v1/billing/meter_events', 3)
    expect(await reportUsage(deps)).toMatchObject({ sent: 0, failed: 1 })
    const [pending] = await t.database.db
      .select()
      .from(usageReports)
      .where(and(eq(usageReports.tenantId, tenantId), eq(usageReports.batch, 2)))
    expect(pending).toMatchObject({
      quantity: 2,
      reportedAt: null,
      lastError: expect.stringContaining('injected failure'),
    })
    expect(total()).toBe(3)

    // more mail meanwhile; the retry sends the pending batch as it was, then a new one
    await scanned(tenantId, 4)
    expect(await reportUsage(deps)).toMatchObject({ sent: 2, messages: 6, failed: 0 })
    expect(events().map((e) => [e.identifier.split('-').at(-1), e.value])).toEqual([
      ['1', 3],
      ['2', 2],
      ['3', 4],
    ])

    // a crash after Stripe took batch 3 but before Moat recorded it: sent again, counted once
    await t.database.db
      .update(usageReports)
      .set({ reportedAt: null })
      .where(and(eq(usageReports.tenantId, tenantId), eq(usageReports.batch, 3)))
    const sentBefore = t.standIn.requests.filter((r) => r.path === '/v1/billing/meter_events').length
    expect(await reportUsage(deps)).toMatchObject({ sent: 1, failed: 0 })
    expect(t.standIn.requests.filter((r) => r.path === '/v1/billing/meter_events').length).toBe(
      sentBefore + 1,
    )
    expect(total()).toBe(9)
  })

  it('reports last month’s final messages to last month, stamped inside it', async () => {
    const tenantId = await t.tenant('month-end')
    const { account } = await changePlan(deps, { tenantId, planId: 'volume', actor: 'user:test' })
    const now = new Date()
    const lastMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 0, 23, 59, 0))
    await scanned(tenantId, 2, lastMonth)
    await scanned(tenantId, 1, now)
    await reportUsage(deps, now)
    const events = t.standIn.meterEvents.filter((e) => e.customer === account.stripeCustomerId)
    const startOfMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) / 1000
    expect(events).toEqual([
      {
        identifier: `moat-${tenantId}-${utcMonth(lastMonth)}-1`,
        customer: account.stripeCustomerId,
        value: 2,
        timestamp: startOfMonth - 1,
      },
      {
        identifier: `moat-${tenantId}-${utcMonth(now)}-1`,
        customer: account.stripeCustomerId,
        value: 1,
        timestamp: Math.floor(now.getTime() / 1000),
      },
    ])
  })
})

describe('without a Stripe key: local metering only', () => {
  it('changes the plan locally, calls nobody, and has no portal', async () => {
    const local = { ...deps, stripe: undefined }
    const tenantId = await t.tenant('offline')
    const before = t.standIn.requests.length
    const { account } = await changePlan(local, { tenantId, planId: 'volume', actor: 'user:test' })
    expect(account).toMatchObject({ planId: 'volume', stripeCustomerId: null, stripeSubscriptionId: null })
    await scanned(tenantId, 5)
    expect(await reportUsage(local)).toEqual({ sent: 0, messages: 0, failed: 0 })
    expect(t.standIn.requests.length).toBe(before)
    const err = await portalLink(local, tenantId).catch((e) => e)
    expect(err).toMatchObject({
      code: 'conflict',
      message:
        'billing runs without Stripe on this Moat (local metering only), so there is no customer portal',
    })
    const [row] = await t.database.db
      .select()
      .from(billingAccounts)
      .where(eq(billingAccounts.tenantId, tenantId))
    expect(row?.planId).toBe('volume')
  })
})
