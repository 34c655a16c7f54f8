import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

describe('rate limits (in memory, per process)', () => {
  let api: TestApi
  beforeAll(async () => {
    // 3 sign-ins per e-mail, and 3 per client IP: every test request comes from 127.0.0.1
    api = await startTestApi({ limits: { loginAttempts: 3, apiPerMinute: 5 } })
  })
  afterAll(async () => {
    await api?.close()
  })

  it('the attempt after the budget for one e-mail is 429 with Retry-After; a success resets nothing', async () => {
    const body = { tenant: 'acme', email: 'owner@acme.test', password: 'acme-password-1' }
    expect((await api.call('POST', '/v1/signup', { body })).status).toBe(201)
    const login = (password: string, email = body.email) =>
      api.call('POST', '/v1/login', { body: { email, password } })

    expect((await login('wrong')).status).toBe(401)
    expect((await login(body.password)).status).toBe(200)
    expect((await login('wrong')).status).toBe(401)
    const limited = await login(body.password, 'OWNER@acme.test')
    expect(limited.status).toBe(429)
    expect(limited.headers.get('content-type')).toBe('application/problem+json')
    const retryAfter = Number(limited.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThan(14 * 60)
    expect(retryAfter).toBeLessThanOrEqual(15 * 60)
    expect(limited.body).toMatchObject({
      type: `${PROBLEM_BASE}rate-limited`,
      title: 'Too many requests',
      status: 429,
      detail: expect.stringContaining('too many sign-in attempts for this e-mail address'),
    })
  })

  it('the client IP has its own budget, whichever e-mail addresses it tries', async () => {
    // the four attempts above already spent this IP's three
    const other = await api.call('POST', '/v1/login', { body: { email: 'nobody@else.test', password: 'x' } })
    expect(other.status).toBe(429)
    expect(other.body.detail).toContain('too many sign-in attempts from this address')
    expect(other.headers.get('retry-after')).toMatch(/^\d+$/)
  })

  it('each API key has its own budget of requests per minute', async () => {
    const fresh = await startTestApi({ limits: { apiPerMinute: 5 } })
    try {
      const acme = await fresh.tenant('acme') // its key has made no request yet
      const second = await fresh.call('POST', '/v1/api-keys', { cookie: acme.cookie, body: { name: 'b' } })
      for (let i = 0; i < 5; i++) {
        expect((await fresh.call('GET', '/v1/domains', { key: acme.key })).status).toBe(200)
      }
      const limited = await fresh.call('GET', '/v1/domains', { key: acme.key })
      expect(limited.status).toBe(429)
      expect(limited.body.type).toBe(`${PROBLEM_BASE}rate-limited`)
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(60)
      // another key, and the session, are not limited by it
      expect((await fresh.call('GET', '/v1/domains', { key: second.body.key })).status).toBe(200)
      expect((await fresh.call('GET', '/v1/domains', { cookie: acme.cookie })).status).toBe(200)
    } finally {
      await fresh.close()
    }
  })
})

describe('CORS', () => {
  const portal = 'https://portal.moat.test'
  let api: TestApi
  let bare: TestApi
  beforeAll(async () => {
    api = await startTestApi({ portalOrigin: portal })
    bare = await startTestApi()
  })
  afterAll(async () => {
    await api?.close()
    await bare?.close()
  })

  const preflight = (url: string, origin: string) =>
    fetch(`${url}/v1/domains`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, idempotency-key',
      },
    })

  it("the portal's preflight is allowed, with credentials", async () => {
    const res = await preflight(api.url, portal)
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe(portal)
    expect(res.headers.get('access-control-allow-credentials')).toBe('true')
    expect(res.headers.get('access-control-allow-methods')).toContain('POST')
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('idempotency-key')

    const get = await api.call('GET', '/v1/domains', { headers: { origin: portal } })
    expect(get.status).toBe(401)
    expect(get.headers.get('access-control-allow-origin')).toBe(portal)
    expect(get.headers.get('access-control-allow-credentials')).toBe('true')
  })

  it('another origin gets no Access-Control-Allow-Origin', async () => {
    const res = await preflight(api.url, 'https://evil.example')
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
    const get = await api.call('GET', '/v1/domains', { headers: { origin: 'https://evil.example' } })
    expect(get.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('without MOAT_PORTAL_ORIGIN there are no CORS headers at all', async () => {
    const res = await preflight(bare.url, portal)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
    expect(res.headers.get('access-control-allow-credentials')).toBeNull()
    expect(res.headers.get('access-control-allow-methods')).toBeNull()
    const get = await bare.call('GET', '/v1/domains', { headers: { origin: portal } })
    expect([...get.headers.keys()].filter((h) => h.startsWith('access-control-'))).toEqual([])
  })
})
