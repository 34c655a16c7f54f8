import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
let viewer: string
let domainId: string
beforeAll(async () => {
  api = await startTestApi()
  acme = await api.tenant('acme')
  viewer = (await api.call('POST', '/v1/api-keys', { key: acme.key, body: { name: 'ro', role: 'viewer' } }))
    .body.key
  domainId = (await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'acme.test' } })).body.id
})
afterAll(async () => {
  await api?.close()
})

describe('policies and lists', () => {
  it('the policy starts at the defaults; PUT changes the settings given, per tenant or per domain', async () => {
    const start = await api.call('GET', '/v1/policy', { key: viewer })
    expect(start.status).toBe(200)
    expect(start.body.tenant).toEqual({})
    expect(start.body.effective).toEqual(start.body.defaults)

    const tenant = await api.call('PUT', '/v1/policy', { key: acme.key, body: { quarantineThreshold: 8 } })
    expect(tenant.status).toBe(200)
    expect(tenant.body.tenant).toEqual({ quarantineThreshold: 8 })
    expect(tenant.body.effective.quarantineThreshold).toBe(8)

    const domain = await api.call('PUT', `/v1/policy?domainId=${domainId}`, {
      key: acme.key,
      body: { discardThreshold: null, subjectPrefix: '[SPAM]' },
    })
    expect(domain.body).toMatchObject({
      tenant: { quarantineThreshold: 8 },
      domain: { discardThreshold: null, subjectPrefix: '[SPAM]' },
      effective: { quarantineThreshold: 8, discardThreshold: null, subjectPrefix: '[SPAM]' },
    })
    expect((await api.call('GET', `/v1/policy?domainId=${domainId}`, { key: viewer })).body).toEqual(
      domain.body,
    )
  })

  it('bad settings are refused: unknown keys and out-of-range values (400), tag above quarantine (422)', async () => {
    const unknown = await api.call('PUT', '/v1/policy', { key: acme.key, body: { spamThreshold: 5 } })
    expect(unknown.status).toBe(400)
    expect(unknown.body.errors).toEqual([{ field: 'body', message: 'Unrecognized key: "spamThreshold"' }])
    const range = await api.call('PUT', '/v1/policy', { key: acme.key, body: { tagThreshold: 5000 } })
    expect(range.body.errors).toEqual([
      { field: 'body.tagThreshold', message: 'Too big: expected number to be <=1000' },
    ])
    const order = await api.call('PUT', '/v1/policy', { key: acme.key, body: { tagThreshold: 9 } })
    expect(order.status).toBe(422)
    expect(order.body).toMatchObject({
      type: `${PROBLEM_BASE}invalid`,
      detail: 'tagThreshold 9 is above quarantineThreshold 8',
    })
  })

  it('allow and block entries: added, listed by page, removed; duplicates are 409, bad values 422', async () => {
    const added = await api.call('POST', '/v1/lists', {
      key: acme.key,
      body: { action: 'allow', kind: 'address', value: 'News@Example.org', note: 'the newsletter' },
    })
    expect(added.status).toBe(201)
    expect(added.body).toMatchObject({
      action: 'allow',
      kind: 'address',
      value: 'news@example.org',
      note: 'the newsletter',
      domain: null,
      createdBy: expect.stringMatching(/^key:key_/),
    })
    await api.call('POST', '/v1/lists', {
      key: acme.key,
      body: { action: 'block', kind: 'ip', value: '203.0.113.0/24', domainId },
    })
    const dupe = await api.call('POST', '/v1/lists', {
      key: acme.key,
      body: { action: 'block', kind: 'address', value: 'news@example.org' },
    })
    expect(dupe.status).toBe(409)
    const bad = await api.call('POST', '/v1/lists', {
      key: acme.key,
      body: { action: 'block', kind: 'ip', value: 'x' },
    })
    expect(bad.status).toBe(422)

    const first = await api.call('GET', '/v1/lists?limit=1', { key: viewer })
    expect(first.body.items.map((e: { value: string }) => e.value)).toEqual(['news@example.org'])
    const second = await api.call('GET', `/v1/lists?limit=1&cursor=${first.body.nextCursor}`, { key: viewer })
    expect(second.body).toMatchObject({
      items: [{ value: '203.0.113.0/24', domain: 'acme.test' }],
      nextCursor: null,
    })

    expect((await api.call('DELETE', `/v1/lists/${added.body.id}`, { key: acme.key })).status).toBe(204)
    expect((await api.call('DELETE', `/v1/lists/${added.body.id}`, { key: acme.key })).status).toBe(404)
  })

  it('a viewer cannot change the policy or the lists (403)', async () => {
    const entry = (await api.call('GET', '/v1/lists', { key: viewer })).body.items[0]
    for (const [method, path, body] of [
      ['PUT', '/v1/policy', { tagThreshold: 2 }],
      ['POST', '/v1/lists', { action: 'allow', kind: 'domain', value: 'example.net' }],
      ['DELETE', `/v1/lists/${entry.id}`, undefined],
    ] as const) {
      const res = await api.call(method, path, { key: viewer, body })
      expect(res.status, `${method} ${path}`).toBe(403)
      expect(res.body.type).toBe(`${PROBLEM_BASE}forbidden`)
    }
    expect((await api.call('GET', '/v1/lists', { key: viewer })).body.items).toHaveLength(1)
  })
})
