import { type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

/**
 * The REST API as the customers' door to the whole stack: `moat start` runs it beside ingest, scan
 * and deliver, and what a customer sets up through it decides where mail goes. Virus and spam
 * scanning are off here: this test is about the API, the deliver path is tested in deliver.e2e.
 */
describe('a customer set up entirely through the REST API receives mail', () => {
  let h: Harness
  let sink: SmtpSink

  beforeAll(async () => {
    sink = await startSmtpSink()
    h = await startHarness({ env: { MOAT_VIRUS_SCAN: 'off', MOAT_SPAM_SCAN: 'off' } })
  })
  afterAll(async () => {
    await h?.close()
    await sink?.stop()
  })

  async function call<T = unknown>(
    method: string,
    path: string,
    auth: Record<string, string>,
    body?: unknown,
  ) {
    const res = await fetch(`${h.apiUrl}${path}`, {
      method,
      headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    return { status: res.status, headers: res.headers, body: (await res.json()) as T }
  }

  it('sign up, key, domain verified over DNS, route, then SMTP → the customer’s server', async () => {
    expect(h.stack.running).toContain('api')
    const account = { tenant: 'acme', email: 'ops@acme.test', password: 'a long password' }
    expect((await call('POST', '/v1/signup', {}, account)).status).toBe(201)
    const login = await call('POST', '/v1/login', {}, { email: account.email, password: account.password })
    const cookie = { cookie: (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '' }
    const { key } = (await call<{ key: string }>('POST', '/v1/api-keys', cookie, { name: 'setup' })).body
    const auth = { authorization: `Bearer ${key}` }

    const domain = (
      await call<{ id: string; records: { txt: string } }>('POST', '/v1/domains', auth, { name: 'acme.test' })
    ).body
    const token = /"(.+)"/.exec(domain.records.txt)?.[1] ?? ''
    h.dns.zones.set('acme.test', {
      txt: [token],
      mx: h.config.mxHosts.map((exchange, i) => ({ exchange, priority: 10 * (i + 1) })),
    })
    const verified = await call('POST', `/v1/domains/${domain.id}/verify`, auth)
    expect(verified.body).toMatchObject({ verified: true, domain: { status: 'active' } })
    const routes = await call('PUT', `/v1/domains/${domain.id}/routes`, auth, {
      items: [{ host: '127.0.0.1', port: sink.port }],
    })
    expect(routes.status).toBe(200)

    await h.send({ from: 'alice@sender.example', to: 'bob@acme.test', subject: 'via the API', text: 'hi' })
    const [mail] = await sink.waitFor(1)
    expect(mail?.to).toEqual(['bob@acme.test'])
    expect(mail?.raw.toString()).toContain('Subject: via the API')
  })
})

// biome-ignore lint/suspicious/noExplicitAny: a JSON answer, which the assertions check
type Json = any

describe('a message quarantined by a block-list entry is released through the REST API', () => {
  let h: Harness
  let sink: SmtpSink
  let apiUrl: string

  beforeAll(async () => {
    sink = await startSmtpSink()
    // spam detection on (block lists are part of it); virus scanning needs clamd, and is not the point
    h = await startHarness({ env: { MOAT_VIRUS_SCAN: 'off' } })
    apiUrl = h.apiUrl ?? ''
  })
  afterAll(async () => {
    await h?.close()
    await sink?.stop()
  })

  async function call(
    method: string,
    path: string,
    auth: Record<string, string>,
    body?: unknown,
  ): Promise<{ status: number; headers: Headers; body: Json }> {
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null }
  }

  it('block → quarantined; a viewer may not release; an admin releases and the customer receives it', async () => {
    const account = { tenant: 'initech', email: 'ops@initech.test', password: 'a long password' }
    expect((await call('POST', '/v1/signup', {}, account)).status).toBe(201)
    const login = await call('POST', '/v1/login', {}, { email: account.email, password: account.password })
    const cookie = { cookie: (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '' }
    const admin = {
      authorization: `Bearer ${(await call('POST', '/v1/api-keys', cookie, { name: 'ops' })).body.key}`,
    }
    const viewer = {
      authorization: `Bearer ${(await call('POST', '/v1/api-keys', cookie, { name: 'ro', role: 'viewer' })).body.key}`,
    }
    const domain = (await call('POST', '/v1/domains', admin, { name: 'initech.test' })).body
    h.dns.zones.set('initech.test', {
      txt: [/"(.+)"/.exec(domain.records.txt)?.[1] ?? ''],
      mx: h.config.mxHosts.map((exchange, i) => ({ exchange, priority: 10 * (i + 1) })),
    })
    expect((await call('POST', `/v1/domains/${domain.id}/verify`, admin)).body.verified).toBe(true)
    await call('PUT', `/v1/domains/${domain.id}/routes`, admin, {
      items: [{ host: '127.0.0.1', port: sink.port }],
    })
    const entry = await call('POST', '/v1/lists', admin, {
      action: 'block',
      kind: 'domain',
      value: 'pushy.example',
    })
    expect(entry.status).toBe(201)

    const queueId = await h.send({
      from: 'sales@pushy.example',
      to: 'peter@initech.test',
      subject: 'a very good offer',
      text: 'hello Peter, about your TPS reports',
    })
    const trace = await h.traceWhen(queueId, (t) => t.message.status === 'quarantined')
    const id = trace.message.id

    const held = await call('GET', '/v1/quarantine', viewer)
    expect(held.body.items).toMatchObject([
      { id, mailFrom: 'sales@pushy.example', subject: 'a very good offer' },
    ])
    const log = await call('GET', `/v1/messages/${id}`, viewer)
    expect(log.body.events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          kind: 'scanned',
          detail: expect.objectContaining({
            action: 'quarantine',
            reason: expect.stringMatching(/^blocked by domain pushy\.example/),
          }),
        }),
      ]),
    )
    const preview = await call('GET', `/v1/quarantine/${id}`, viewer)
    expect(preview.body.text).toContain('about your TPS reports')

    const denied = await call('POST', `/v1/quarantine/${id}/release`, viewer)
    expect(denied.status).toBe(403)
    expect(sink.messages).toHaveLength(0)

    const released = await call('POST', `/v1/quarantine/${id}/release`, admin)
    expect(released.status).toBe(200)
    expect(released.body).toMatchObject({ id, status: 'queued' })
    const [mail] = await sink.waitFor(1)
    expect(mail?.to).toEqual(['peter@initech.test'])
    expect(mail?.raw.toString()).toContain('about your TPS reports')
    const delivered = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(delivered.events.map((e) => e.kind)).toContain('released')
  })
})
