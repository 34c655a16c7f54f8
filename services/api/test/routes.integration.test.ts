import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, type SmtpSink, startSmtpSink } from '../../../packages/testkit/src/peers'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
let domainId: string
const sinks: SmtpSink[] = []
beforeAll(async () => {
  api = await startTestApi()
  acme = await api.tenant('acme')
  domainId = (await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'acme.test' } })).body.id
})
afterAll(async () => {
  for (const s of sinks) await s.stop()
  await api?.close()
})

const put = (items: unknown[]) =>
  api.call('PUT', `/v1/domains/${domainId}/routes`, { key: acme.key, body: { items } })

describe('routes: TLS mode, per-recipient destinations, connection test', () => {
  it('stores the TLS mode and a per-recipient destination, with opportunistic TLS by default', async () => {
    const res = await put([
      { host: 'mx1.acme.test', port: 25 },
      { host: 'secure.acme.test', port: 2525, priority: 5, tls: 'required', recipient: 'CEO@acme.test' },
    ])
    expect(res.status).toBe(200)
    expect(res.body.items).toMatchObject([
      { host: 'secure.acme.test', port: 2525, priority: 5, tls: 'required', recipient: 'ceo@acme.test' },
      { host: 'mx1.acme.test', port: 25, priority: 10, tls: 'opportunistic', recipient: null },
    ])
  })

  it('refuses a recipient outside the domain, only per-recipient destinations, and an unknown TLS mode', async () => {
    const before = await api.call('GET', `/v1/domains/${domainId}/routes`, { key: acme.key })
    const outside = await put([
      { host: 'mx1.acme.test' },
      { host: 'x.test', recipient: 'someone@elsewhere.test' },
    ])
    expect(outside.status).toBe(422)
    expect(outside.body).toMatchObject({
      type: `${PROBLEM_BASE}invalid`,
      detail: '"someone@elsewhere.test" is not an address at acme.test',
      hint: 'a per-recipient destination takes an address like someone@acme.test',
    })
    const onlyOwn = await put([{ host: 'x.test', recipient: 'ceo@acme.test' }])
    expect(onlyOwn.status).toBe(422)
    expect(onlyOwn.body.detail).toBe('every destination is for one recipient only')
    const badTls = await put([{ host: 'x.test', tls: 'always' }])
    expect(badTls.status).toBe(400)
    expect(badTls.body.errors[0].field).toBe('body.items.0.tls')
    // nothing changed
    const after = await api.call('GET', `/v1/domains/${domainId}/routes`, { key: acme.key })
    expect(after.body).toEqual(before.body)
  })

  it('tests each destination over SMTP: banner and STARTTLS, TLS required but not offered, refused', async () => {
    const tlsSink = await startSmtpSink({ banner: 'acme mail gateway' })
    const plainSink = await startSmtpSink({ starttls: false })
    sinks.push(tlsSink, plainSink)
    const closed = await freePort()
    await put([
      { host: '127.0.0.1', port: tlsSink.port, priority: 1, tls: 'required' },
      { host: '127.0.0.1', port: plainSink.port, priority: 2, tls: 'required' },
      { host: '127.0.0.1', port: plainSink.port, priority: 3 },
      { host: '127.0.0.1', port: closed, priority: 4 },
    ])
    const res = await api.call('POST', `/v1/domains/${domainId}/routes/test`, { key: acme.key })
    expect(res.status).toBe(200)
    const [secure, required, plain, down] = res.body.items
    expect(secure).toMatchObject({
      port: tlsSink.port,
      ok: true,
      starttls: { offered: true, negotiated: true, protocol: expect.stringMatching(/^TLSv1\.[23]$/) },
      error: null,
    })
    expect(secure.banner).toMatch(/^220 .*acme mail gateway/)
    expect(required).toMatchObject({
      ok: false,
      starttls: { offered: false, negotiated: false },
      error: 'the server does not offer STARTTLS, and this destination requires TLS',
    })
    expect(required.banner).toMatch(/^220 /)
    expect(plain).toMatchObject({ ok: true, starttls: { offered: false, negotiated: false }, error: null })
    expect(down).toMatchObject({
      ok: false,
      banner: null,
      error: `connection refused by 127.0.0.1:${closed}`,
    })
    // no mail was sent
    expect(tlsSink.messages).toHaveLength(0)
    expect(plainSink.messages).toHaveLength(0)
  })

  it('a viewer cannot run the connection test', async () => {
    const invited = await api.call('POST', '/v1/invitations', {
      key: acme.key,
      body: { email: 'viewer@acme.test', role: 'viewer' },
    })
    await api.call('POST', '/v1/invitations/accept', {
      body: { token: invited.body.token, password: 'a long enough password' },
    })
    const login = await api.call('POST', '/v1/login', {
      body: { email: 'viewer@acme.test', password: 'a long enough password' },
    })
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
    const res = await api.call('POST', `/v1/domains/${domainId}/routes/test`, { cookie })
    expect(res.status).toBe(403)
  })
})
