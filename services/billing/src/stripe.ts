import type { Config } from '@moat/config'
import Stripe from 'stripe'

export type StripeConfig = NonNullable<Config['billing']['stripe']>

/** A subscription as Moat keeps it. */
export interface SubscriptionState {
  id: string
  status: string
  /** the first invoice's payment page, while the subscription waits for it */
  paymentUrl: string | null
}

/**
 * The Stripe calls billing makes. `createStripeGateway` is the real one; with no Stripe key there
 * is none at all and billing meters locally (every caller checks for `undefined`).
 */
export interface StripeGateway {
  /** the customer for a tenant; `idempotencyKey` makes a retried creation return the same customer */
  createCustomer(input: { tenantId: string; name: string; email: string | undefined }): Promise<string>
  createSubscription(input: {
    tenantId: string
    planId: string
    customerId: string
    prices: string[]
    idempotencyKey: string
  }): Promise<SubscriptionState>
  /** replaces the subscription's items by `prices`, prorated */
  changeSubscription(input: {
    subscriptionId: string
    planId: string
    prices: string[]
  }): Promise<SubscriptionState>
  cancelSubscription(subscriptionId: string): Promise<void>
  /** one meter event; Stripe drops a second event with the same `identifier` */
  reportUsage(input: {
    customerId: string
    quantity: number
    identifier: string
    timestamp: Date
  }): Promise<void>
  /** a Stripe customer portal session's URL */
  portalUrl(input: { customerId: string; returnUrl: string | undefined }): Promise<string>
  /** verifies the `Stripe-Signature` header and parses the event; throws on a bad signature */
  constructEvent(payload: string, signature: string): Stripe.Event
  readonly webhookConfigured: boolean
}

/** The `stripe` client for the configured key, pointed at `MOAT_STRIPE_API_URL` when set. */
export function createStripeClient(config: StripeConfig): Stripe {
  const endpoint = config.apiUrl ? new URL(config.apiUrl) : undefined
  return new Stripe(config.secretKey, {
    maxNetworkRetries: 2,
    timeout: 20_000,
    telemetry: false,
    appInfo: { name: 'moat' },
    ...(endpoint
      ? {
          host: endpoint.hostname,
          port: endpoint.port || (endpoint.protocol === 'https:' ? 443 : 80),
          protocol: endpoint.protocol === 'https:' ? 'https' : 'http',
        }
      : {}),
  })
}

function state(sub: Stripe.Subscription): SubscriptionState {
  const invoice = sub.latest_invoice
  const paymentUrl =
    sub.status === 'incomplete' && invoice && typeof invoice !== 'string'
      ? (invoice.hosted_invoice_url ?? null)
      : null
  return { id: sub.id, status: sub.status, paymentUrl }
}

/** Stripe failed or refused a call (after the client's own retries); the message says what Stripe said. */
export class StripeUnavailableError extends Error {
  override name = 'StripeUnavailableError'
}

/** Every call but `constructEvent` throws StripeUnavailableError on failure, so callers need not know Stripe's errors. */
function wrapped(gateway: StripeGateway): StripeGateway {
  const wrap =
    <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await call(...args)
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        throw new StripeUnavailableError(`Stripe: ${message}`, { cause: err })
      }
    }
  return {
    webhookConfigured: gateway.webhookConfigured,
    createCustomer: wrap(gateway.createCustomer),
    createSubscription: wrap(gateway.createSubscription),
    changeSubscription: wrap(gateway.changeSubscription),
    cancelSubscription: wrap(gateway.cancelSubscription),
    reportUsage: wrap(gateway.reportUsage),
    portalUrl: wrap(gateway.portalUrl),
    constructEvent: gateway.constructEvent,
  }
}

export function createStripeGateway(
  config: StripeConfig,
  client = createStripeClient(config),
): StripeGateway {
  return wrapped({
    webhookConfigured: Boolean(config.webhookSecret),
    async createCustomer({ tenantId, name, email }) {
      const customer = await client.customers.create(
        { name, ...(email ? { email } : {}), metadata: { tenantId } },
        { idempotencyKey: `moat-customer-${tenantId}` },
      )
      return customer.id
    },
    async createSubscription({ tenantId, planId, customerId, prices, idempotencyKey }) {
      const sub = await client.subscriptions.create(
        {
          customer: customerId,
          items: prices.map((price) => ({ price })),
          metadata: { tenantId, planId },
          // Moat's billing periods are calendar months (UTC); the subscription follows them
          billing_cycle_anchor_config: { day_of_month: 1 },
          proration_behavior: 'create_prorations',
          // no card yet: the subscription waits for its first invoice, which the customer pays
          payment_behavior: 'default_incomplete',
          payment_settings: { save_default_payment_method: 'on_subscription' },
          expand: ['latest_invoice'],
        },
        { idempotencyKey },
      )
      return state(sub)
    },
    async changeSubscription({ subscriptionId, planId, prices }) {
      const current = await client.subscriptions.retrieve(subscriptionId)
      const sub = await client.subscriptions.update(subscriptionId, {
        items: [
          ...current.items.data.map((item) => ({ id: item.id, deleted: true })),
          ...prices.map((price) => ({ price })),
        ],
        metadata: { planId },
        proration_behavior: 'create_prorations',
        expand: ['latest_invoice'],
      })
      return state(sub)
    },
    async cancelSubscription(subscriptionId) {
      await client.subscriptions.cancel(subscriptionId, { invoice_now: true })
    },
    async reportUsage({ customerId, quantity, identifier, timestamp }) {
      await client.billing.meterEvents.create(
        {
          event_name: config.meterEvent,
          payload: { stripe_customer_id: customerId, value: String(quantity) },
          identifier,
          timestamp: Math.floor(timestamp.getTime() / 1000),
        },
        { idempotencyKey: identifier },
      )
    },
    async portalUrl({ customerId, returnUrl }) {
      const session = await client.billingPortal.sessions.create({
        customer: customerId,
        ...(returnUrl ? { return_url: returnUrl } : {}),
      })
      return session.url
    },
    constructEvent(payload, signature) {
      if (!config.webhookSecret) throw new Error('MOAT_STRIPE_WEBHOOK_SECRET is not set')
      return client.webhooks.constructEvent(payload, signature, config.webhookSecret)
    },
  })
}
