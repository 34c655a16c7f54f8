import { createRoute, z } from '@hono/zod-openapi'
import {
  type BillingDeps,
  billingPeriod,
  changePlan,
  dailyUsage,
  failedInvoices,
  listPlans,
  type Plan,
  periodUsage,
  portalLink,
  previewInvoice,
  StripeUnavailableError,
  tenantPlan,
} from '@moat/billing'
import { tenantSuspension } from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { ApiProblem, problemResponses } from '../problems'
import { iso, json, Timestamp } from '../schemas'

const Minor = z.number().int().openapi({ description: 'integer minor units of the currency (cents)' })

const PlanSchema = z
  .object({
    id: z.string().openapi({ example: 'volume' }),
    name: z.string(),
    description: z.string(),
    currency: z.string().openapi({ example: 'usd' }),
    monthlyFee: Minor,
    tiers: z.array(
      z.object({
        upTo: z
          .number()
          .int()
          .nullable()
          .openapi({ description: 'messages per month up to here; null: no limit' }),
        unitAmount: Minor.openapi({ description: 'minor units per unitSize messages' }),
        unitSize: z.number().int(),
      }),
    ),
    hardCapMessages: z.number().int().nullable().openapi({
      description: 'prepaid: beyond this many messages a month, mail is held until the next month',
    }),
    archiveRetentionDays: z.number().int(),
    maxDomains: z.number().int().nullable(),
  })
  .openapi('Plan')

const Usage = z.object({
  messages: z.number().int(),
  inbound: z.number().int(),
  outbound: z.number().int(),
  bytes: z.number().int(),
  delivered: z.number().int(),
  tagged: z.number().int(),
  quarantined: z.number().int(),
  discarded: z.number().int(),
})

const Suspension = z
  .object({
    reason: z.enum(['operator', 'billing']),
    detail: z.string().nullable().openapi({ description: 'why, in words' }),
    since: Timestamp.nullable(),
  })
  .openapi('Suspension', {
    description:
      'while suspended, inbound mail is accepted and kept but not delivered, and outbound submission is refused; resuming delivers what waited',
  })

const CurrentUsage = z
  .object({
    periodStart: Timestamp,
    periodEnd: Timestamp,
    planId: z.string(),
    ...Usage.shape,
    included: z
      .number()
      .int()
      .nullable()
      .openapi({ description: 'messages the first tier covers, when it is free' }),
    hardCapMessages: z.number().int().nullable(),
  })
  .openapi('CurrentUsage')

const DailyUsage = z
  .object({
    items: z.array(z.object({ day: z.string().openapi({ example: '2026-01-31' }), ...Usage.shape })),
  })
  .openapi('DailyUsage')

const BillingStatus = z
  .object({
    plan: PlanSchema,
    stripe: z
      .boolean()
      .openapi({ description: 'false: this Moat meters locally and bills nobody through Stripe' }),
    subscriptionStatus: z.string().nullable().openapi({ example: 'active' }),
    suspension: Suspension.nullable(),
    unpaidInvoices: z.array(
      z.object({
        id: z.string(),
        amountDue: Minor,
        currency: z.string(),
        failedAt: Timestamp.nullable(),
        payUrl: z.string().nullable(),
      }),
    ),
  })
  .openapi('BillingStatus')

const InvoicePreview = z
  .object({
    planId: z.string(),
    currency: z.string(),
    periodStart: Timestamp,
    periodEnd: Timestamp,
    messages: z.number().int(),
    lines: z.array(
      z.object({
        kind: z.enum(['fee', 'tier']),
        description: z.string(),
        quantity: z.number().int(),
        unitAmount: Minor,
        unitSize: z.number().int(),
        amount: Minor,
      }),
    ),
    total: Minor,
  })
  .openapi('InvoicePreview', {
    description:
      "the current month so far, priced by Moat from its own counters (Stripe's invoice may add tax)",
  })

const DAY = /^\d{4}-\d{2}-\d{2}$/
const DailyQuery = z.object({
  from: z
    .string()
    .regex(DAY, 'expected a date, YYYY-MM-DD')
    .optional()
    .openapi({ description: 'default: 29 days before `to`' }),
  to: z
    .string()
    .regex(DAY, 'expected a date, YYYY-MM-DD')
    .optional()
    .openapi({ description: 'default: today (UTC)' }),
})

const routes = {
  plans: createRoute({
    method: 'get',
    path: '/v1/billing/plans',
    tags: ['billing'],
    summary: 'The plans to choose from',
    responses: {
      200: { description: 'plans, cheapest fee first', ...json(z.object({ items: z.array(PlanSchema) })) },
      ...problemResponses(401),
    },
  }),
  status: createRoute({
    method: 'get',
    path: '/v1/billing/plan',
    tags: ['billing'],
    summary: "The tenant's plan, subscription, unpaid invoices and, when mail is held, why",
    responses: { 200: { description: 'billing status', ...json(BillingStatus) }, ...problemResponses(401) },
  }),
  change: createRoute({
    method: 'put',
    path: '/v1/billing/plan',
    tags: ['billing'],
    summary:
      'Change plan (owners): with Stripe, creates the customer and subscription or changes it, prorated',
    request: {
      body: {
        required: true,
        ...json(z.object({ planId: z.string().min(1).openapi({ example: 'volume' }) })),
      },
    },
    responses: {
      200: {
        description: 'the new plan',
        ...json(
          z.object({
            plan: PlanSchema,
            subscriptionStatus: z.string().nullable(),
            paymentUrl: z.string().nullable().openapi({
              description: "the first invoice's payment page, when the subscription waits for it",
            }),
          }),
        ),
      },
      ...problemResponses(400, 401, 403, 404, 502),
    },
  }),
  usage: createRoute({
    method: 'get',
    path: '/v1/billing/usage',
    tags: ['billing'],
    summary: 'Usage in the current billing period (the UTC calendar month), as it happens',
    responses: { 200: { description: 'usage so far', ...json(CurrentUsage) }, ...problemResponses(401) },
  }),
  daily: createRoute({
    method: 'get',
    path: '/v1/billing/usage/daily',
    tags: ['billing'],
    summary: 'Usage per UTC day, every day in the range (at most 366)',
    request: { query: DailyQuery },
    responses: {
      200: { description: 'one item per day', ...json(DailyUsage) },
      ...problemResponses(400, 401),
    },
  }),
  preview: createRoute({
    method: 'get',
    path: '/v1/billing/invoice-preview',
    tags: ['billing'],
    summary: "This period's invoice so far, in integer minor units",
    responses: {
      200: { description: 'the invoice so far', ...json(InvoicePreview) },
      ...problemResponses(401),
    },
  }),
  portal: createRoute({
    method: 'post',
    path: '/v1/billing/portal',
    tags: ['billing'],
    summary:
      "A link to Stripe's customer portal (cards, invoices) for owners; 409 when Stripe is not configured",
    request: {
      body: {
        required: false,
        ...json(
          z.object({
            returnUrl: z.url().optional().openapi({ description: 'where the portal sends people back to' }),
          }),
        ),
      },
    },
    responses: {
      200: { description: 'a short-lived link', ...json(z.object({ url: z.string() })) },
      ...problemResponses(400, 401, 403, 409, 502),
    },
  }),
}

const planOut = (p: Plan) => ({
  id: p.id,
  name: p.name,
  description: p.description,
  currency: p.currency,
  monthlyFee: p.monthlyFee,
  tiers: p.tiers,
  hardCapMessages: p.hardCapMessages,
  archiveRetentionDays: p.archiveRetentionDays,
  maxDomains: p.maxDomains,
})

/** Stripe's failures are a 502 that says so; the rest goes to the one error handler. */
async function viaStripe<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    if (err instanceof StripeUnavailableError) {
      throw new ApiProblem(
        502,
        `the payment provider did not accept the request: ${err.message}`,
        'payment-provider-failed',
      )
    }
    throw err
  }
}

export function registerBilling(app: Api, deps: ApiDeps): void {
  const { db } = deps
  const billing: BillingDeps = {
    db,
    stripe: deps.billing?.stripe,
    graceDays: deps.billing?.graceDays ?? 7,
    portalReturnUrl: deps.billing?.portalReturnUrl,
    log: deps.log,
  }

  app.openapi(routes.plans, async (c) => {
    caller(c)
    return c.json({ items: (await listPlans(db)).map(planOut) }, 200)
  })

  app.openapi(routes.status, async (c) => {
    const { tenantId } = caller(c)
    const [{ plan, account }, suspension, unpaid] = await Promise.all([
      tenantPlan(db, tenantId),
      tenantSuspension(db, tenantId),
      failedInvoices(db, tenantId),
    ])
    return c.json(
      {
        plan: planOut(plan),
        stripe: Boolean(billing.stripe),
        subscriptionStatus: account?.subscriptionStatus ?? null,
        suspension: suspension
          ? { reason: suspension.reason, detail: suspension.note, since: iso(suspension.since) }
          : null,
        unpaidInvoices: unpaid.map((i) => ({
          id: i.id,
          amountDue: i.amountDue,
          currency: i.currency,
          failedAt: iso(i.firstFailedAt),
          payUrl: i.hostedInvoiceUrl,
        })),
      },
      200,
    )
  })

  app.openapi(routes.change, async (c) => {
    const { tenantId, actor } = caller(c, 'owner')
    const { planId } = c.req.valid('json')
    const result = await viaStripe(() => changePlan(billing, { tenantId, planId, actor }))
    return c.json(
      {
        plan: planOut(result.plan),
        subscriptionStatus: result.account.subscriptionStatus,
        paymentUrl: result.paymentUrl,
      },
      200,
    )
  })

  app.openapi(routes.usage, async (c) => {
    const { tenantId } = caller(c)
    const now = new Date()
    const [{ plan }, usage] = await Promise.all([tenantPlan(db, tenantId), periodUsage(db, tenantId, now)])
    const period = billingPeriod(now)
    const first = plan.tiers[0]
    return c.json(
      {
        periodStart: iso(period.start),
        periodEnd: iso(period.end),
        planId: plan.id,
        ...usage,
        included: first && first.unitAmount === 0 ? first.upTo : null,
        hardCapMessages: plan.hardCapMessages,
      },
      200,
    )
  })

  app.openapi(routes.daily, async (c) => {
    const { tenantId } = caller(c)
    const query = c.req.valid('query')
    const to = query.to ? new Date(`${query.to}T00:00:00Z`) : new Date()
    const from = query.from ? new Date(`${query.from}T00:00:00Z`) : new Date(to.getTime() - 29 * 86_400_000)
    if (Number.isNaN(to.getTime()) || Number.isNaN(from.getTime())) {
      throw new ApiProblem(400, 'query.from, query.to: not a calendar date')
    }
    if (from > to)
      throw new ApiProblem(400, `query.from (${query.from}) is after query.to (${iso(to).slice(0, 10)})`)
    if (to.getTime() - from.getTime() > 365 * 86_400_000) {
      throw new ApiProblem(400, 'query.from, query.to: at most 366 days at once')
    }
    return c.json({ items: await dailyUsage(db, tenantId, from, to) }, 200)
  })

  app.openapi(routes.preview, async (c) => {
    const { tenantId } = caller(c)
    const preview = await previewInvoice(db, tenantId, new Date())
    return c.json(
      { ...preview, periodStart: iso(preview.periodStart), periodEnd: iso(preview.periodEnd) },
      200,
    )
  })

  app.openapi(routes.portal, async (c) => {
    const { tenantId } = caller(c, 'owner')
    const body = c.req.valid('json') ?? {}
    const url = await viaStripe(() => portalLink(billing, tenantId, body.returnUrl))
    return c.json({ url }, 200)
  })
}
