import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { Config } from '@moat/config'
import type { Executor } from '@moat/db'
import type { Logger } from '@moat/log'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { BillingDeps } from './accounts'
import { enforceTenant, tenantsToEnforce } from './enforcement'
import { reportUsage } from './reporter'
import { createStripeGateway, type StripeGateway } from './stripe'
import { handleStripeEvent } from './webhooks'

/** The Stripe gateway for the configuration, or undefined without a Stripe key (local metering only). */
export function billingDeps(
  config: Pick<Config, 'billing'>,
  db: Executor,
  log?: Logger,
  stripe: StripeGateway | undefined = config.billing.stripe
    ? createStripeGateway(config.billing.stripe)
    : undefined,
): BillingDeps {
  return {
    db,
    stripe,
    graceDays: config.billing.graceDays,
    portalReturnUrl: config.billing.stripe?.portalReturnUrl,
    log,
  }
}

/**
 * One pass of the billing worker: reports unreported usage to Stripe, then suspends or resumes
 * the tenants whose prepaid cap or failed payment says so.
 */
export async function runBillingCycle(deps: BillingDeps, now = new Date()) {
  const usage = await reportUsage(deps, now)
  const changes = { suspended: 0, resumed: 0 }
  for (const tenantId of await tenantsToEnforce(deps.db)) {
    const change = await enforceTenant(deps.db, { tenantId, graceDays: deps.graceDays, now, log: deps.log })
    if (change !== 'unchanged') changes[change]++
  }
  return { usage, ...changes }
}

const problem = (status: number, detail: string) =>
  new Response(
    JSON.stringify({
      type: `https://moat.dev/problems/${status === 400 ? 'invalid-signature' : 'webhooks-not-configured'}`,
      title: status === 400 ? 'Invalid request' : 'Not configured',
      status,
      detail,
    }),
    { status, headers: { 'content-type': 'application/problem+json' } },
  )

/**
 * The webhook endpoint, `POST /stripe/webhook`: verifies `Stripe-Signature` against the raw body
 * with `stripe.webhooks.constructEvent` (400 and nothing changed when it does not match), then
 * applies the event once. A failure while applying answers 500, so Stripe sends it again.
 */
export function webhookApp(deps: BillingDeps): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.text('ok'))
  app.post('/stripe/webhook', bodyLimit({ maxSize: 1024 * 1024 }), async (c) => {
    const stripe = deps.stripe
    if (!stripe?.webhookConfigured) {
      return problem(503, 'Stripe webhooks are not configured here: set MOAT_STRIPE_WEBHOOK_SECRET')
    }
    const signature = c.req.header('stripe-signature')
    if (!signature) return problem(400, 'no Stripe-Signature header')
    const payload = Buffer.from(await c.req.arrayBuffer()).toString('utf8')
    let event: ReturnType<StripeGateway['constructEvent']>
    try {
      event = stripe.constructEvent(payload, signature)
    } catch (err) {
      deps.log?.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'Stripe webhook with a bad signature',
      )
      return problem(400, 'the Stripe-Signature header does not match the payload (or is too old)')
    }
    try {
      const outcome = await handleStripeEvent(deps, event)
      return c.json({ received: true, outcome })
    } catch (err) {
      deps.log?.error(
        { err, eventId: event.id, type: event.type },
        'Stripe event failed; Stripe will send it again',
      )
      return c.json({ received: false }, 500)
    }
  })
  return app
}

export interface BillingService {
  /** the webhook listener's port, when Stripe is configured */
  port: number | undefined
  url: string | undefined
  /** runs one cycle now (tests, and the first one at start) */
  runOnce(now?: Date): ReturnType<typeof runBillingCycle>
  close(): Promise<void>
}

/**
 * The billing service: every `MOAT_BILLING_INTERVAL_SECONDS` a cycle (usage to Stripe, prepaid caps
 * and failed payments enforced); with Stripe, the webhook listener on MOAT_BILLING_HOST:PORT.
 * Without a Stripe key it meters and enforces caps locally, and says so.
 */
export async function startBilling(options: {
  config: Pick<Config, 'billing'>
  db: Executor
  log: Logger
  /** overrides the gateway made from the configuration (tests) */
  stripe?: StripeGateway
}): Promise<BillingService> {
  const { config, log } = options
  const deps = billingDeps(config, options.db, log, options.stripe ?? undefined)
  let server: ReturnType<typeof serve> | undefined
  let port: number | undefined
  if (deps.stripe) {
    const app = webhookApp(deps)
    server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
      const s = serve({ fetch: app.fetch, hostname: config.billing.host, port: config.billing.port }, () =>
        resolve(s),
      )
      s.once('error', reject)
    })
    port = (server.address() as AddressInfo).port
    log.info(
      {
        port,
        meterEvent: config.billing.stripe?.meterEvent,
        webhooks: deps.stripe.webhookConfigured ? 'on' : 'off: set MOAT_STRIPE_WEBHOOK_SECRET',
      },
      `billing: Stripe configured; webhooks at POST http://${config.billing.host}:${port}/stripe/webhook`,
    )
  } else {
    log.info(
      'billing: no MOAT_STRIPE_SECRET_KEY, local metering only: usage is counted and prepaid caps enforced, nothing is sent to Stripe',
    )
  }

  let running: Promise<unknown> = Promise.resolve()
  let busy = false
  const tick = () => {
    if (busy) return
    busy = true
    running = runBillingCycle(deps)
      .catch((err: unknown) => log.error({ err }, 'billing cycle failed; next one in the next interval'))
      .finally(() => {
        busy = false
      })
  }
  const timer = setInterval(tick, config.billing.intervalSeconds * 1000)
  timer.unref()
  tick()

  return {
    port,
    url: port === undefined ? undefined : `http://127.0.0.1:${port}`,
    runOnce: (now) => runBillingCycle(deps, now),
    async close() {
      clearInterval(timer)
      await running
      await new Promise<void>((resolve, reject) => {
        if (!server) return resolve()
        server.close((err) => (err ? reject(err) : resolve()))
        if ('closeIdleConnections' in server) server.closeIdleConnections()
      })
    },
  }
}
