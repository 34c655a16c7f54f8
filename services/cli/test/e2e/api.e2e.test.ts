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
