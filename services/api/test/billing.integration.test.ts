import { applySuspension } from '@moat/billing'
import { loadConfig } from '@moat/config'
import { recordUsage, utcDay, utcMonth } from '@moat/core'
import { plans } from '@moat/db'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type StripeStandIn, startStripeStandIn } from '../../billing/test/stripe-standin'
import { startTestApi, type TestApi } from './api'

type Tenant = Awaited<ReturnType<TestApi['tenant']>>

describe('billing API, local metering only (no Stripe key)', () => {
  let api: TestApi
  let a: Tenant
  let b: Tenant
  let seq = 0
  const scanned = async (tenantId: string, verdict: string, at: Date, direction = 'inbound') =>
    recordUsage(api.database.db, {
      messageId: `msg_api${++seq}`,
      tenantId,
      direction,
      verdict,
      size: 2048,
      at,
    })

  beforeAll(async () => {
    api = await startTestApi()
    a = await api.tenant('alpha')
    b = await api.tenant('bravo')
  })
  afterAll(async () => {
    await api?.close()
  })

  it('lists the plans, which are rows of the plans table', async () => {
    const res = await api.call('GET', '/v1/billing/plans', { key: a.key })
    expect(res.status).toBe(200)
    expect(res.body.items.map((p: { id: string }) => p.id)).toEqual(['payg', 'volume', 'prepaid'])
    expect(res.body.items[1]).toEqual({
      id: 'volume',
      name: 'Volume',
      description: '$29 a month with 10,000 messages included, then $0.80 per 1,000',
      currency: 'usd',
      monthlyFee: 2900,
      tiers: [
        { upTo: 10000, unitAmount: 0, unitSize: 1000 },
        { upTo: null, unitAmount: 80, unitSize: 1000 },
      ],
      hardCapMessages: null,
      archiveRetentionDays: 90,
      maxDomains: 25,
    })
  })

  it('a new tenant is on the default plan, not suspended, and billed by nobody', async () => {
    const res = await api.call('GET', '/v1/billing/plan', { key: a.key })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      plan: { id: 'payg' },
      stripe: false,
      subscriptionStatus: null,
      suspension: null,
      unpaidInvoices: [],
    })
  })

  it('usage now, per day and the invoice so far: each tenant sees only its own', async () => {
    const now = new Date()
    const yesterday = new Date(now.getTime() - 86_400_000)
    for (const verdict of ['deliver', 'deliver', 'tag', 'quarantine']) await scanned(a.tenantId, verdict, now)
    await scanned(a.tenantId, 'discard', now, 'outbound')
    if (utcMonth(yesterday) === utcMonth(now)) await scanned(a.tenantId, 'deliver', yesterday)
    for (let i = 0; i < 3; i++) await scanned(b.tenantId, 'deliver', now)
    const inMonth = utcMonth(yesterday) === utcMonth(now) ? 6 : 5

    const usage = await api.call('GET', '/v1/billing/usage', { key: a.key })
    expect(usage.status).toBe(200)
    expect(usage.body).toMatchObject({
      planId: 'payg',
      periodStart: `${utcMonth(now)}T00:00:00.000Z`,
      messages: inMonth,
      inbound: inMonth - 1,
      outbound: 1,
      bytes: inMonth * 2048,
      delivered: inMonth - 3,
      tagged: 1,
      quarantined: 1,
      discarded: 1,
      included: null,
      hardCapMessages: null,
    })
    expect((await api.call('GET', '/v1/billing/usage', { key: b.key })).body.messages).toBe(3)

    const daily = await api.call(
      'GET',
      `/v1/billing/usage/daily?from=${utcDay(yesterday)}&to=${utcDay(now)}`,
      { key: a.key },
    )
    expect(daily.status).toBe(200)
    expect(daily.body.items.map((d: { day: string; messages: number }) => [d.day, d.messages])).toEqual([
      [utcDay(yesterday), utcMonth(yesterday) === utcMonth(now) ? 1 : 0],
      [utcDay(now), 5],
    ])
    // the default range: 30 days, every one present
    const month = await api.call('GET', '/v1/billing/usage/daily', { key: b.key })
    expect(month.body.items).toHaveLength(30)
    expect(month.body.items.at(-1)).toMatchObject({ day: utcDay(now), messages: 3 })

    const preview = await api.call('GET', '/v1/billing/invoice-preview', { key: a.key })
    expect(preview.status).toBe(200)
    expect(preview.body).toMatchObject({ planId: 'payg', currency: 'usd', messages: inMonth, total: 1 })
  })

  it('refuses a day range that is backwards, too long or not dates, naming the field', async () => {
    const backwards = await api.call('GET', '/v1/billing/usage/daily?from=2026-02-01&to=2026-01-01', {
      key: a.key,
    })
    expect(backwards.status).toBe(400)
    expect(backwards.body.detail).toBe('query.from (2026-02-01) is after query.to (2026-01-01)')
    const long = await api.call('GET', '/v1/billing/usage/daily?from=2024-01-01&to=2026-01-01', {
      key: a.key,
    })
    expect(long.body.detail).toBe('query.from, query.to: at most 366 days at once')
    const bad = await api.call('GET', '/v1/billing/usage/daily?from=yesterday', { key: a.key })
    expect(bad.status).toBe(400)
    expect(bad.body.errors).toEqual([{ field: 'query.from', message: 'expected a date, YYYY-MM-DD' }])
  })

  it('only the owner changes the plan; the preview follows the new plan', async () => {
    const byKey = await api.call('PUT', '/v1/billing/plan', { key: a.key, body: { planId: 'volume' } })
    expect(byKey.status).toBe(403)
    expect(byKey.body.detail).toBe('this needs the owner role; you are admin')

    const unknown = await api.call('PUT', '/v1/billing/plan', {
      cookie: a.cookie,
      body: { planId: 'platinum' },
    })
    expect(unknown.status).toBe(404)
    expect(unknown.body).toMatchObject({
      detail: 'no plan platinum',
      hint: 'GET /v1/billing/plans lists the plans to choose from',
    })

    const changed = await api.call('PUT', '/v1/billing/plan', {
      cookie: a.cookie,
      body: { planId: 'volume' },
    })
    expect(changed.status).toBe(200)
    expect(changed.body).toMatchObject({ plan: { id: 'volume' }, subscriptionStatus: null, paymentUrl: null })
    const preview = await api.call('GET', '/v1/billing/invoice-preview', { key: a.key })
    expect(preview.body.lines[0]).toEqual({
      kind: 'fee',
      description: 'monthly fee',
      quantity: 1,
      unitAmount: 2900,
      unitSize: 1,
      amount: 2900,
    })
    expect(preview.body.total).toBe(2900)
    expect((await api.call('GET', '/v1/billing/usage', { key: a.key })).body.included).toBe(10000)
    // B is untouched
    expect((await api.call('GET', '/v1/billing/plan', { key: b.key })).body.plan.id).toBe('payg')
  })

  it('says why mail is held while billing suspends the tenant', async () => {
    await applySuspension(
      api.database.db,
      b.tenantId,
      'the Prepaid plan’s messages for this month are used up',
    )
    const res = await api.call('GET', '/v1/billing/plan', { key: b.key })
    expect(res.body.suspension).toEqual({
      reason: 'billing',
      detail: 'the Prepaid plan’s messages for this month are used up',
      since: expect.any(String),
    })
    expect((await api.call('GET', '/v1/billing/plan', { key: a.key })).body.suspension).toBeNull()
    await applySuspension(api.database.db, b.tenantId, null)
    expect((await api.call('GET', '/v1/billing/plan', { key: b.key })).body.suspension).toBeNull()
  })

  it('has no customer portal without Stripe: 409 that says so', async () => {
    const res = await api.call('POST', '/v1/billing/portal', { cookie: a.cookie, body: {} })
    expect(res.status).toBe(409)
    expect(res.body).toMatchObject({
      type: 'https://moat.dev/problems/conflict',
      detail:
        'billing runs without Stripe on this Moat (local metering only), so there is no customer portal',
    })
  })
})

describe('billing API with Stripe (the stand-in in services/billing/test/stripe-standin.ts, as Stripe is out of reach)', () => {
  let api: TestApi
  let standIn: StripeStandIn
  let owner: Tenant

  beforeAll(async () => {
    standIn = await startStripeStandIn()
    const { billing } = loadConfig({
      MOAT_STRIPE_SECRET_KEY: 'sk_test_api',
      MOAT_STRIPE_WEBHOOK_SECRET: 'whsec_api',
      MOAT_STRIPE_API_URL: standIn.url,
    })
    api = await startTestApi({ billing })
    await api.database.db
      .update(plans)
      .set({ stripeFlatPriceId: 'price_fee', stripeMeteredPriceId: 'price_usage' })
      .where(eq(plans.id, 'volume'))
    owner = await api.tenant('stripey')
  })
  afterAll(async () => {
    await api?.close()
    await standIn?.close()
  })

  it('a plan change subscribes in Stripe and returns the first invoice’s payment page; the portal link follows', async () => {
    const res = await api.call('PUT', '/v1/billing/plan', {
      cookie: owner.cookie,
      body: { planId: 'volume' },
    })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      subscriptionStatus: 'incomplete',
      paymentUrl: 'https://invoice.stripe.test/pay/1',
    })
    expect(standIn.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /v1/customers',
      'POST /v1/subscriptions',
    ])
    expect((await api.call('GET', '/v1/billing/plan', { key: owner.key })).body).toMatchObject({
      stripe: true,
      subscriptionStatus: 'incomplete',
    })

    const portal = await api.call('POST', '/v1/billing/portal', {
      cookie: owner.cookie,
      body: { returnUrl: 'https://portal.example.com/billing' },
    })
    expect(portal.status).toBe(200)
    expect(portal.body.url).toMatch(/^https:\/\/billing\.stripe\.test\/p\/session\/cus_/)
    expect(standIn.requests.at(-1)?.form.return_url).toBe('https://portal.example.com/billing')
  })

  it('Stripe failing is a 502 that says so, and the plan stays as it was', async () => {
    const other = await api.tenant('unlucky')
    standIn.failNext('/v1/customers', 3)
    const res = await api.call('PUT', '/v1/billing/plan', {
      cookie: other.cookie,
      body: { planId: 'volume' },
    })
    expect(res.status).toBe(502)
    expect(res.body.type).toBe('https://moat.dev/problems/payment-provider-failed')
    expect(res.body.detail).toMatch(/^the payment provider did not accept the request: Stripe: /)
    expect((await api.call('GET', '/v1/billing/plan', { key: other.key })).body.plan.id).toBe('payg')
  })
})
