import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApi, generateOpenApi, PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

const TOKEN = 'operator-token-0123456789abcdef'
let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
let beta: Awaited<ReturnType<TestApi['tenant']>>
const op = { headers: { authorization: `Bearer ${TOKEN}` } }

beforeAll(async () => {
  api = await startTestApi({ adminToken: TOKEN })
  acme = await api.tenant('acme')
  beta = await api.tenant('beta')
})
afterAll(async () => {
  await api?.close()
})

const adminOperations = () =>
  Object.entries(generateOpenApi().paths ?? {}).flatMap(([path, item]) =>
    (['get', 'post', 'put', 'patch', 'delete'] as const)
      .filter((m) => item[m] && path.startsWith('/v1/admin/'))
      .map((m) => ({ method: m.toUpperCase(), path })),
  )

describe('operator routes', () => {
  it('take the operator token only: not a tenant key, session or a wrong token', async () => {
    const ops = adminOperations()
    expect(ops.map((o) => `${o.method} ${o.path}`)).toEqual([
      'GET /v1/admin/tenants',
      'POST /v1/admin/tenants/{id}/suspend',
      'POST /v1/admin/tenants/{id}/resume',
      'POST /v1/admin/domains/{id}/force-verify',
    ])
    for (const o of ops) {
      const path = o.path.replace('{id}', acme.tenantId)
      for (const auth of [
        { key: acme.key },
        { cookie: acme.cookie },
        { headers: { authorization: 'Bearer operator-token-wrong-wrong-wrong' } },
      ]) {
        const res = await api.call(o.method, path, auth)
        expect(res.status, `${o.method} ${o.path}`).toBe(401)
        expect(res.body).toMatchObject({
          type: `${PROBLEM_BASE}unauthorized`,
          detail: 'operator routes need Authorization: Bearer <MOAT_ADMIN_TOKEN>',
        })
      }
    }
    const account = await api.call('GET', '/v1/account', { key: acme.key })
    expect(account.body.tenant.status).toBe('active')
  })

  it('are turned off without MOAT_ADMIN_TOKEN', async () => {
    const fail = () => Promise.reject(new Error('unused'))
    const app = createApi({
      db: {} as never,
      config: { mxHosts: [], hostname: 'moat.invalid' },
      resolver: { resolveTxt: fail, resolveMx: fail },
    })
    const res = await app.request('/v1/admin/tenants', { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(res.status).toBe(401)
    expect(((await res.json()) as { detail: string }).detail).toBe(
      'the operator routes are turned off: set MOAT_ADMIN_TOKEN to use them',
    )
  })

  it('list every tenant with counts, filtered by status', async () => {
    await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'acme.test' } })
    const res = await api.call('GET', '/v1/admin/tenants', op)
    expect(res.status).toBe(200)
    const byName = Object.fromEntries(res.body.items.map((t: { name: string }) => [t.name, t]))
    expect(byName.acme).toMatchObject({ id: acme.tenantId, status: 'active', domains: 1, users: 1 })
    expect(byName.beta).toMatchObject({ id: beta.tenantId, domains: 0, users: 1 })
    const paged = await api.call('GET', '/v1/admin/tenants?limit=1', op)
    expect(paged.body.items).toHaveLength(1)
    const next = await api.call('GET', `/v1/admin/tenants?limit=1&cursor=${paged.body.nextCursor}`, op)
    expect(next.body.items[0].id).not.toBe(paged.body.items[0].id)
    const bad = await api.call('GET', '/v1/admin/tenants?status=gone', op)
    expect(bad.status).toBe(400)
    expect(bad.body.errors[0].field).toBe('query.status')
  })

  it('suspend and resume a tenant; the customer sees why, and the audit log records it', async () => {
    const suspended = await api.call('POST', `/v1/admin/tenants/${beta.tenantId}/suspend`, {
      ...op,
      body: { note: 'abuse report #4711' },
    })
    expect(suspended.status).toBe(200)
    expect(suspended.body).toMatchObject({
      status: 'suspended',
      suspendedReason: 'operator',
      suspendedNote: 'abuse report #4711',
    })
    const seen = await api.call('GET', '/v1/account', { key: beta.key })
    expect(seen.body.tenant).toMatchObject({
      status: 'suspended',
      suspension: { reason: 'operator', note: 'abuse report #4711', since: suspended.body.suspendedAt },
    })
    const only = await api.call('GET', '/v1/admin/tenants?status=suspended', op)
    expect(only.body.items.map((t: { name: string }) => t.name)).toEqual(['beta'])

    const resumed = await api.call('POST', `/v1/admin/tenants/${beta.tenantId}/resume`, op)
    expect(resumed.body).toMatchObject({ status: 'active', suspendedReason: null, suspendedAt: null })
    expect((await api.call('GET', '/v1/account', { key: beta.key })).body.tenant.suspension).toBeNull()
    const audit = await api.call('GET', '/v1/audit', { key: beta.key })
    expect(audit.body.items.slice(0, 2)).toMatchObject([
      { action: 'tenant.resume', actor: 'operator', detail: { reason: 'operator' } },
      {
        action: 'tenant.suspend',
        actor: 'operator',
        detail: { reason: 'operator', note: 'abuse report #4711' },
      },
    ])

    const missing = await api.call('POST', '/v1/admin/tenants/ten_nope/suspend', op)
    expect(missing.status).toBe(404)
    expect(missing.body.detail).toBe('no tenant ten_nope')
  })

  it('force-verify a domain whose TXT record cannot be published', async () => {
    const added = await api.call('POST', '/v1/domains', { key: beta.key, body: { name: 'forced.test' } })
    const res = await api.call('POST', `/v1/admin/domains/${added.body.id}/force-verify`, op)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ name: 'forced.test', status: 'verified', verifiedBy: 'operator' })
    const seen = await api.call('GET', `/v1/domains/${added.body.id}`, { key: beta.key })
    expect(seen.body.status).toBe('verified')
    const audit = await api.call('GET', '/v1/audit', { key: beta.key })
    expect(audit.body.items[0]).toMatchObject({ action: 'domain.force_verify', actor: 'operator' })
    // another tenant can no longer claim it
    const claim = await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'forced.test' } })
    expect(claim.status).toBe(409)
    const missing = await api.call('POST', '/v1/admin/domains/dom_nope/force-verify', op)
    expect(missing.status).toBe(404)
  })
})
