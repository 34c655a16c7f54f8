import { apiIdempotency, domains } from '@moat/db'
import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
let globex: Awaited<ReturnType<TestApi['tenant']>>
beforeAll(async () => {
  api = await startTestApi()
  acme = await api.tenant('acme')
  globex = await api.tenant('globex')
})
afterAll(async () => {
  await api?.close()
})

const post = (path: string, key: string, idempotencyKey: string, body: unknown) =>
  api.call('POST', path, { key, body, headers: { 'idempotency-key': idempotencyKey } })

describe('Idempotency-Key', () => {
  it('a retry of POST /v1/domains gets the first answer and creates nothing more', async () => {
    const first = await post('/v1/domains', acme.key, 'dom-1', { name: 'acme.test' })
    expect(first.status).toBe(201)
    const retry = await post('/v1/domains', acme.key, 'dom-1', { name: 'acme.test' })
    expect(retry.status).toBe(201)
    expect(retry.body).toEqual(first.body)
    expect(retry.headers.get('content-type')).toContain('application/json')
    expect(retry.headers.get('idempotent-replayed')).toBe('true')
    const rows = await api.database.db.select().from(domains).where(eq(domains.name, 'acme.test'))
    expect(rows).toHaveLength(1)
    // without the header the same request is a new one: the domain exists
    expect(
      (await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'acme.test' } })).status,
    ).toBe(409)
  })

  it('POST /v1/api-keys and POST /v1/lists replay too, the key included', async () => {
    const key = await post('/v1/api-keys', acme.key, 'key-1', { name: 'ci' })
    const keyAgain = await post('/v1/api-keys', acme.key, 'key-1', { name: 'ci' })
    expect(keyAgain.status).toBe(201)
    expect(keyAgain.body).toEqual(key.body)
    const keys = await api.call('GET', '/v1/api-keys', { key: acme.key })
    expect(keys.body.items.filter((k: { name: string }) => k.name === 'ci')).toHaveLength(1)

    const entry = { action: 'block', kind: 'address', value: 'spam@bad.example' }
    const added = await post('/v1/lists', acme.key, 'list-1', entry)
    expect(added.status).toBe(201)
    const again = await post('/v1/lists', acme.key, 'list-1', entry)
    expect(again.status).toBe(201)
    expect(again.body).toEqual(added.body)
  })

  it('the same key with another body is 422 idempotency-key-reused', async () => {
    const res = await post('/v1/domains', acme.key, 'dom-1', { name: 'other.test' })
    expect(res.status).toBe(422)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(res.body).toMatchObject({ type: `${PROBLEM_BASE}idempotency-key-reused`, status: 422 })
    const onOtherPath = await post('/v1/lists', acme.key, 'dom-1', {
      action: 'allow',
      kind: 'domain',
      value: 'x.test',
    })
    expect(onOtherPath.status).toBe(422)
  })

  it('keys are per tenant: another tenant may use the same key for its own request', async () => {
    const res = await post('/v1/domains', globex.key, 'dom-1', { name: 'globex.test' })
    expect(res.status).toBe(201)
    expect(res.body.name).toBe('globex.test')
  })

  it('an error answer is replayed as well; a key older than 24 hours is forgotten', async () => {
    const bad = await post('/v1/domains', acme.key, 'dom-bad', { name: 'not a domain' })
    expect(bad.status).toBe(422)
    expect(await post('/v1/domains', acme.key, 'dom-bad', { name: 'not a domain' })).toMatchObject({
      status: 422,
      body: bad.body,
    })

    await api.database.db
      .update(apiIdempotency)
      .set({ createdAt: sql`now() - interval '25 hours'` })
      .where(eq(apiIdempotency.key, 'dom-1'))
    const later = await post('/v1/domains', acme.key, 'dom-1', { name: 'other.test' })
    expect(later.status).toBe(201)
    expect(later.body.name).toBe('other.test')
  })

  it('a key of more than 255 characters is 400', async () => {
    const res = await post('/v1/domains', acme.key, 'k'.repeat(256), { name: 'long.test' })
    expect(res.status).toBe(400)
    expect(res.body.detail).toBe('Idempotency-Key must be 1 to 255 characters')
  })
})
