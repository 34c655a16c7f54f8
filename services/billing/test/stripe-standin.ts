import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A STAND-IN FOR STRIPE'S API. This machine cannot reach api.stripe.com, so the real `stripe`
 * client (pointed here with its host/port/protocol options, through MOAT_STRIPE_API_URL) talks to
 * this small HTTP server instead. It records every request and answers the calls billing makes
 * the way Stripe's API does: form-encoded bodies in, JSON objects out, `Idempotency-Key` replays
 * the first answer, meter events are deduplicated by `identifier`. It is not a Stripe emulator:
 * only the fields billing reads are filled in.
 */
export interface StripeStandIn {
  url: string
  requests: RecordedRequest[]
  /** meter events Stripe would count (after deduplication by identifier) */
  meterEvents: Array<{ identifier: string; customer: string; value: number; timestamp: number }>
  /** the next `count` requests whose path starts with `prefix` get a 500 */
  failNext(prefix: string, count: number): void
  close(): Promise<void>
}

export interface RecordedRequest {
  method: string
  path: string
  /** the form body, flattened as Stripe encodes it: `items[0][price]` → value */
  form: Record<string, string>
  idempotencyKey: string | undefined
  authorization: string | undefined
}

export async function startStripeStandIn(): Promise<StripeStandIn> {
  const requests: RecordedRequest[] = []
  const meterEvents: StripeStandIn['meterEvents'] = []
  const replays = new Map<string, { status: number; body: unknown }>()
  const failures: Array<{ prefix: string; count: number }> = []
  const subscriptions = new Map<string, Record<string, unknown>>()
  let seq = 0
  const id = (prefix: string) => `${prefix}_standin${String(++seq).padStart(6, '0')}`

  const itemsFrom = (form: Record<string, string>) => {
    const items: Array<{ id: string; object: string; price: { id: string } }> = []
    for (let i = 0; form[`items[${i}][price]`] !== undefined || form[`items[${i}][id]`] !== undefined; i++) {
      const price = form[`items[${i}][price]`]
      if (price) items.push({ id: id('si'), object: 'subscription_item', price: { id: price } })
    }
    return items
  }

  const answer = (req: RecordedRequest): { status: number; body: unknown } => {
    const { method, path, form } = req
    if (method === 'POST' && path === '/v1/customers') {
      return {
        status: 200,
        body: { id: id('cus'), object: 'customer', name: form.name, email: form.email ?? null },
      }
    }
    if (method === 'POST' && path === '/v1/subscriptions') {
      const sub = {
        id: id('sub'),
        object: 'subscription',
        customer: form.customer,
        status: 'incomplete',
        metadata: { tenantId: form['metadata[tenantId]'], planId: form['metadata[planId]'] },
        items: { object: 'list', data: itemsFrom(form) },
        latest_invoice: {
          id: id('in'),
          object: 'invoice',
          hosted_invoice_url: 'https://invoice.stripe.test/pay/1',
        },
      }
      subscriptions.set(sub.id, sub)
      return { status: 200, body: sub }
    }
    const subMatch = /^\/v1\/subscriptions\/(sub_\w+)$/.exec(path)
    if (subMatch) {
      const sub = subscriptions.get(subMatch[1] ?? '')
      if (!sub)
        return {
          status: 404,
          body: { error: { type: 'invalid_request_error', message: 'No such subscription' } },
        }
      if (method === 'GET') return { status: 200, body: sub }
      if (method === 'POST') {
        sub.items = { object: 'list', data: itemsFrom(form) }
        sub.status = 'active'
        sub.metadata = { ...(sub.metadata as object), planId: form['metadata[planId]'] }
        sub.latest_invoice = null
        return { status: 200, body: sub }
      }
      if (method === 'DELETE') {
        sub.status = 'canceled'
        return { status: 200, body: sub }
      }
    }
    if (method === 'POST' && path === '/v1/billing/meter_events') {
      const identifier = form.identifier ?? id('mev')
      if (!meterEvents.some((e) => e.identifier === identifier)) {
        meterEvents.push({
          identifier,
          customer: form['payload[stripe_customer_id]'] ?? '',
          value: Number(form['payload[value]']),
          timestamp: Number(form.timestamp),
        })
      }
      return {
        status: 200,
        body: { object: 'billing.meter_event', event_name: form.event_name, identifier, payload: {} },
      }
    }
    if (method === 'POST' && path === '/v1/billing_portal/sessions') {
      return {
        status: 200,
        body: {
          id: id('bps'),
          object: 'billing_portal.session',
          customer: form.customer,
          return_url: form.return_url ?? null,
          url: `https://billing.stripe.test/p/session/${form.customer}`,
        },
      }
    }
    return {
      status: 404,
      body: { error: { type: 'invalid_request_error', message: `stand-in: no ${method} ${path}` } },
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in')
      const raw = Buffer.concat(chunks).toString('utf8')
      const params = new URLSearchParams(req.method === 'GET' || req.method === 'DELETE' ? url.search : raw)
      const recorded: RecordedRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        form: Object.fromEntries(params.entries()),
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        authorization: req.headers.authorization,
      }
      requests.push(recorded)
      const failure = failures.find((f) => f.count > 0 && recorded.path.startsWith(f.prefix))
      let result: { status: number; body: unknown }
      if (failure) {
        failure.count--
        result = {
          status: 500,
          body: { error: { type: 'api_error', message: 'stand-in: injected failure' } },
        }
      } else {
        const key =
          recorded.idempotencyKey && `${recorded.method} ${recorded.path} ${recorded.idempotencyKey}`
        const replay = key ? replays.get(key) : undefined
        result = replay ?? answer(recorded)
        if (key && !replay && result.status < 500) replays.set(key, result)
      }
      res.writeHead(result.status, { 'content-type': 'application/json', 'request-id': id('req') })
      res.end(JSON.stringify(result.body))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    meterEvents,
    failNext(prefix, count) {
      failures.push({ prefix, count })
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
