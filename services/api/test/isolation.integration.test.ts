import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateOpenApi, PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

/**
 * Tenant B must not read, change or learn of tenant A's objects: every operation in the OpenAPI
 * document that takes an `{id}` answers B with the same 404 as a missing object. The operations come
 * from the document, so a new route is swept as soon as it exists; one without a fixture below fails.
 */

let api: TestApi
let a: Awaited<ReturnType<TestApi['tenant']>>
let b: Awaited<ReturnType<TestApi['tenant']>>
/** tenant A's object of each collection, by the path before `/{id}` */
const objectOf: Record<string, string> = {}
/** a valid body for each operation that needs one, so that B's 404 is not a 400 */
const bodies: Record<string, unknown> = {
  'PUT /v1/domains/{id}/routes': { items: [{ host: 'attacker.test', port: 25, priority: 1 }] },
  'POST /v1/quarantine/{id}/release': { force: true },
  'POST /v1/domains/{id}/dkim-keys': { algorithm: 'ed25519-sha256' },
  'PATCH /v1/users/{id}': { role: 'viewer' },
}

beforeAll(async () => {
  api = await startTestApi()
  a = await api.tenant('alpha')
  b = await api.tenant('bravo')
  const domain = await api.call('POST', '/v1/domains', { key: a.key, body: { name: 'alpha.test' } })
  objectOf['/v1/domains'] = domain.body.id
  await api.call('PUT', `/v1/domains/${domain.body.id}/routes`, {
    key: a.key,
    body: { items: [{ host: 'mail.alpha.test', port: 25 }] },
  })
  const spare = await api.call('POST', '/v1/api-keys', { key: a.key, body: { name: 'spare' } })
  objectOf['/v1/api-keys'] = spare.body.apiKey.id
  const entry = await api.call('POST', '/v1/lists', {
    key: a.key,
    body: { action: 'block', kind: 'domain', value: 'spam.example', domainId: domain.body.id },
  })
  objectOf['/v1/lists'] = entry.body.id
  const credential = await api.call('POST', '/v1/smtp-credentials', { key: a.key, body: { name: 'alpha' } })
  objectOf['/v1/smtp-credentials'] = credential.body.credential.id
  const network = await api.call('POST', '/v1/relay-networks', { key: a.key, body: { cidr: '192.0.2.0/24' } })
  objectOf['/v1/relay-networks'] = network.body.id
  objectOf['/v1/messages'] = await api.message(a.tenantId, { status: 'delivered', subject: 'alpha log' })
  objectOf['/v1/quarantine'] = await api.message(a.tenantId, { subject: 'alpha held' })
  objectOf['/v1/archive/messages'] = await api.archive(
    await api.message(a.tenantId, {
      status: 'delivered',
      subject: 'alpha archived secret',
      body: 'merger plans',
    }),
  )
  const hold = await api.call('POST', '/v1/archive/holds', {
    key: a.key,
    body: { reason: 'alpha case', scope: 'messages', filter: { q: 'merger' } },
  })
  objectOf['/v1/archive/holds'] = hold.body.id
  const exported = await api.call('POST', '/v1/archive/exports', { key: a.key, body: { q: 'merger' } })
  objectOf['/v1/archive/exports'] = exported.body.id
  for (let i = 0; i < 100; i++) {
    const e = await api.call('GET', `/v1/archive/exports/${exported.body.id}`, { key: a.key })
    if (e.body.status !== 'running') break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const invited = await api.call('POST', '/v1/invitations', {
    key: a.key,
    body: { email: 'second@alpha.test', role: 'admin' },
  })
  const joined = await api.call('POST', '/v1/invitations/accept', {
    body: { token: invited.body.token, password: 'a long enough password' },
  })
  objectOf['/v1/users'] = joined.body.id
  const open = await api.call('POST', '/v1/invitations', { key: a.key, body: { email: 'third@alpha.test' } })
  objectOf['/v1/invitations'] = open.body.invitation.id
})
afterAll(async () => {
  await api?.close()
})

const operations = () => {
  const doc = generateOpenApi()
  return Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
    (['get', 'post', 'put', 'patch', 'delete'] as const)
      // the operator's routes are not a tenant's: they take the operator token only (admin tests)
      .filter((m) => item[m] && path.includes('{id}') && !path.startsWith('/v1/admin/'))
      .map((m) => ({ method: m.toUpperCase(), path, needsBody: Boolean(item[m]?.requestBody) })),
  )
}

describe('tenant isolation, swept from the OpenAPI document', () => {
  it('covers every operation with an {id}', () => {
    const swept = operations().map((o) => `${o.method} ${o.path}`)
    expect(swept).toEqual(
      expect.arrayContaining([
        'GET /v1/domains/{id}',
        'POST /v1/domains/{id}/verify',
        'GET /v1/domains/{id}/routes',
        'PUT /v1/domains/{id}/routes',
        'DELETE /v1/api-keys/{id}',
        'DELETE /v1/lists/{id}',
        'GET /v1/messages/{id}',
        'POST /v1/messages/{id}/report-spam',
        'GET /v1/quarantine/{id}',
        'GET /v1/quarantine/{id}/raw',
        'POST /v1/quarantine/{id}/release',
        'DELETE /v1/quarantine/{id}',
        'GET /v1/archive/messages/{id}',
        'GET /v1/archive/messages/{id}/raw',
        'GET /v1/archive/exports/{id}',
        'GET /v1/archive/exports/{id}/download',
        'DELETE /v1/archive/holds/{id}',
        'GET /v1/smtp-credentials/{id}',
        'DELETE /v1/smtp-credentials/{id}',
        'POST /v1/smtp-credentials/{id}/enable',
        'DELETE /v1/relay-networks/{id}',
        'GET /v1/domains/{id}/dkim-keys',
        'POST /v1/domains/{id}/dkim-keys',
        'POST /v1/domains/{id}/dkim-keys/check',
        'POST /v1/domains/{id}/routes/test',
        'PATCH /v1/users/{id}',
        'DELETE /v1/users/{id}',
        'DELETE /v1/invitations/{id}',
      ]),
    )
  })

  for (const as of ['key', 'session'] as const) {
    it(`tenant B's ${as} gets 404, exactly as for a missing object, on every operation with an {id}`, async () => {
      for (const op of operations()) {
        const name = `${op.method} ${op.path}`
        const collection = op.path.split('/{id}')[0] ?? ''
        const id = objectOf[collection]
        expect(id, `add tenant A's object for ${collection} to the isolation sweep`).toBeDefined()
        const body = bodies[name]
        expect(
          !op.needsBody || body !== undefined,
          `add a valid body for ${name} to the isolation sweep`,
        ).toBe(true)
        const auth = as === 'key' ? { key: b.key } : { cookie: b.cookie }

        const theirs = await api.call(op.method, op.path.replace('{id}', id ?? ''), { ...auth, body })
        const missing = await api.call(op.method, op.path.replace('{id}', `${id}x`), { ...auth, body })
        expect(theirs.status, name).toBe(404)
        expect(theirs.body.type, name).toBe(`${PROBLEM_BASE}not-found`)
        expect(theirs.body, name).toEqual({
          ...missing.body,
          detail: missing.body.detail.replace(`${id}x`, id),
        })
      }
    })
  }

  it("tenant B gets 404 when it names A's domain in a domainId query parameter or body field", async () => {
    const domainId = objectOf['/v1/domains'] ?? ''
    const doc = generateOpenApi()
    const withQuery = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
      (['get', 'put'] as const)
        .filter((m) => item[m]?.parameters?.some((p) => 'name' in p && p.name === 'domainId'))
        .map((m) => ({ method: m.toUpperCase(), path })),
    )
    expect(withQuery.map((o) => `${o.method} ${o.path}`)).toEqual(['GET /v1/policy', 'PUT /v1/policy'])
    for (const op of withQuery) {
      const res = await api.call(op.method, `${op.path}?domainId=${domainId}`, {
        key: b.key,
        body: op.method === 'PUT' ? { tagThreshold: 1 } : undefined,
      })
      expect(res.status, `${op.method} ${op.path}`).toBe(404)
      expect(res.body.detail).toBe(`no domain ${domainId}`)
    }
    const add = await api.call('POST', '/v1/lists', {
      key: b.key,
      body: { action: 'allow', kind: 'ip', value: '192.0.2.1', domainId },
    })
    expect(add.status).toBe(404)
  })

  it("tenant A's objects are untouched, and A itself reaches them", async () => {
    const domainId = objectOf['/v1/domains']
    const routes = await api.call('GET', `/v1/domains/${domainId}/routes`, { key: a.key })
    expect(routes.status).toBe(200)
    expect(routes.body.items).toMatchObject([{ host: 'mail.alpha.test', port: 25 }])
    expect((await api.call('GET', `/v1/domains/${domainId}`, { cookie: a.cookie })).body.name).toBe(
      'alpha.test',
    )
    const keys = await api.call('GET', '/v1/api-keys', { key: a.key })
    expect(keys.body.items.map((k: { id: string }) => k.id)).toContain(objectOf['/v1/api-keys'])
    const credential = await api.call('GET', `/v1/smtp-credentials/${objectOf['/v1/smtp-credentials']}`, {
      key: a.key,
    })
    expect(credential.body).toMatchObject({ name: 'alpha', status: 'active' })
    const networks = await api.call('GET', '/v1/relay-networks', { key: a.key })
    expect(networks.body.items).toMatchObject([{ cidr: '192.0.2.0/24' }])
    expect((await api.call('GET', `/v1/domains/${domainId}/dkim-keys`, { key: a.key })).body.items).toEqual(
      [],
    )
    const lists = await api.call('GET', '/v1/lists', { key: a.key })
    expect(lists.body.items).toMatchObject([
      { id: objectOf['/v1/lists'], domain: 'alpha.test', value: 'spam.example' },
    ])
    const policy = await api.call('GET', `/v1/policy?domainId=${domainId}`, { key: a.key })
    expect(policy.body.domain).toEqual({})
    const held = await api.call('GET', `/v1/quarantine/${objectOf['/v1/quarantine']}`, { key: a.key })
    expect(held.body).toMatchObject({ status: 'quarantined', subject: 'alpha held' })
    const users = await api.call('GET', '/v1/users', { key: a.key })
    expect(users.body.items).toMatchObject([
      { email: 'owner@alpha.test', role: 'owner' },
      { id: objectOf['/v1/users'], email: 'second@alpha.test', role: 'admin' },
    ])
    const invitations = await api.call('GET', '/v1/invitations', { key: a.key })
    expect(invitations.body.items).toMatchObject([
      { id: objectOf['/v1/invitations'], email: 'third@alpha.test' },
    ])
    const log = await api.call('GET', `/v1/messages/${objectOf['/v1/messages']}`, { key: a.key })
    expect(log.body.events).toMatchObject([{ kind: 'scanned' }])
  })

  it('lists show only the caller’s own objects', async () => {
    const theirs = await api.call('GET', '/v1/domains', { key: b.key })
    expect(theirs.body).toEqual({ items: [], nextCursor: null })
    const keys = await api.call('GET', '/v1/api-keys', { key: b.key })
    expect(keys.body.items.map((k: { id: string }) => k.id)).toEqual([b.keyId])
    for (const path of ['/v1/messages', '/v1/quarantine', '/v1/smtp-credentials', '/v1/events']) {
      expect((await api.call('GET', path, { key: b.key })).body, path).toEqual({
        items: [],
        nextCursor: null,
      })
    }
    // the archive: search, the mbox stream and exports find nothing of A's
    for (const query of ['', 'q=merger', 'subject=alpha', 'from=spam.example']) {
      const found = await api.call('GET', `/v1/archive/search?${query}`, { key: b.key })
      expect(found.body, query).toEqual({ items: [], nextCursor: null })
    }
    const mbox = await api.call('GET', '/v1/archive/search/mbox', { key: b.key })
    expect(mbox.status).toBe(200)
    expect(mbox.body).toBe('')
    const started = await api.call('POST', '/v1/archive/exports', { key: b.key, body: { q: 'merger' } })
    expect(started.body).toMatchObject({ total: 0 })
    const holds = await api.call('GET', '/v1/archive/holds', { key: b.key })
    expect(holds.body).toEqual({ items: [] })
    const hold = await api.call('POST', '/v1/archive/holds', {
      key: b.key,
      body: { reason: 'fishing', scope: 'messages', filter: { q: 'merger' } },
    })
    expect(hold.body.messageCount).toBe(0)
    const users = await api.call('GET', '/v1/users', { key: b.key })
    expect(users.body.items.map((u: { email: string }) => u.email)).toEqual(['owner@bravo.test'])
    expect((await api.call('GET', '/v1/invitations', { key: b.key })).body.items).toEqual([])
    const audit = await api.call('GET', '/v1/audit', { key: b.key })
    expect(audit.body.items.length).toBeGreaterThan(0)
    expect(JSON.stringify(audit.body)).not.toContain(a.tenantId)
    expect(JSON.stringify(audit.body)).not.toContain('alpha')
  })
})
