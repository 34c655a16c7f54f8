import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { MX_HOSTS, startTestApi, type TestApi } from './api'

let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
beforeAll(async () => {
  api = await startTestApi()
  acme = await api.tenant('acme')
})
afterAll(async () => {
  await api?.close()
})

describe('domains and routes', () => {
  it('adding a domain answers with the TXT and MX records to publish, pasteable into a zone file', async () => {
    const res = await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'Example.COM.' } })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ name: 'example.com', status: 'pending', verifiedAt: null })
    const { txt, mx, zone } = res.body.records
    expect(txt).toMatch(/^example\.com\. 3600 IN TXT "moat-verification=[0-9a-f]{32}"$/)
    expect(mx).toEqual([
      `example.com. 3600 IN MX 10 ${MX_HOSTS[0]}.`,
      `example.com. 3600 IN MX 20 ${MX_HOSTS[1]}.`,
    ])
    expect(zone).toBe([txt, ...mx].join('\n'))
    const again = await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'example.com' } })
    expect(again.status).toBe(409)
    expect(again.body.detail).toBe('example.com is already added to acme')
    const bad = await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'not a domain' } })
    expect(bad.status).toBe(422)
    expect(bad.body).toMatchObject({ type: `${PROBLEM_BASE}invalid`, hint: 'give a name like example.com' })
  })

  it('verifies against the DNS server: no TXT → pending with the reason, TXT → verified, MX at Moat → active', async () => {
    const domain = (await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'verify.test' } }))
      .body
    const token = /"(moat-verification=[0-9a-f]+)"/.exec(domain.records.txt)?.[1] ?? ''

    const missing = await api.call('POST', `/v1/domains/${domain.id}/verify`, { key: acme.key })
    expect(missing.status).toBe(200)
    expect(missing.body.verified).toBe(false)
    expect(missing.body.reason).toBe(
      `no TXT record at verify.test (the name does not exist); publish: verify.test. TXT "${token}"`,
    )
    expect(missing.body.domain.status).toBe('pending')

    api.dns.zones.set('verify.test', {
      txt: ['v=spf1 -all', token],
      mx: [{ exchange: 'mx.elsewhere.test', priority: 10 }],
    })
    const verified = await api.call('POST', `/v1/domains/${domain.id}/verify`, { key: acme.key })
    expect(verified.body).toMatchObject({
      verified: true,
      mx: { hosts: ['mx.elsewhere.test'], pointsAtMoat: false },
      domain: { status: 'verified', lastCheckResult: 'verified; MX does not point at Moat yet' },
    })
    expect(verified.body.domain.verifiedAt).not.toBeNull()

    api.dns.zones.set('verify.test', { txt: [token], mx: [{ exchange: MX_HOSTS[0] ?? '', priority: 10 }] })
    const active = await api.call('POST', `/v1/domains/${domain.id}/verify`, { key: acme.key })
    expect(active.body).toMatchObject({
      verified: true,
      mx: { pointsAtMoat: true },
      domain: { status: 'active' },
    })
    expect((await api.call('GET', `/v1/domains/${domain.id}`, { key: acme.key })).body.status).toBe('active')
  })

  it('a domain verified by one tenant cannot be claimed by another (409)', async () => {
    const other = await api.tenant('other')
    const res = await api.call('POST', '/v1/domains', { key: other.key, body: { name: 'verify.test' } })
    expect(res.status).toBe(409)
    expect(res.body).toMatchObject({
      type: `${PROBLEM_BASE}conflict`,
      detail: 'verify.test is already verified by another customer',
    })
  })

  it('lists page by cursor', async () => {
    const tenant = await api.tenant('paging')
    const names = ['a.test', 'b.test', 'c.test', 'd.test', 'e.test']
    for (const name of names) await api.call('POST', '/v1/domains', { key: tenant.key, body: { name } })
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2'
      const res = await api.call('GET', `/v1/domains${query}`, { key: tenant.key })
      expect(res.status).toBe(200)
      seen.push(...res.body.items.map((d: { name: string }) => d.name))
      cursor = res.body.nextCursor
      pages++
    } while (cursor)
    expect(seen).toEqual(names)
    expect(pages).toBe(3)
    const tooMany = await api.call('GET', '/v1/domains?limit=1000', { key: tenant.key })
    expect(tooMany.status).toBe(400)
    expect(tooMany.body.errors).toEqual([
      { field: 'query.limit', message: 'Too big: expected number to be <=200' },
    ])
  })

  it('routes: replaced with PUT, listed by priority, validated field by field', async () => {
    const domain = (await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'routes.test' } }))
      .body
    const put = await api.call('PUT', `/v1/domains/${domain.id}/routes`, {
      key: acme.key,
      body: {
        items: [{ host: 'backup.routes.test', port: 2525, priority: 20 }, { host: 'mail.routes.test' }],
      },
    })
    expect(put.status).toBe(200)
    expect(put.body.items).toMatchObject([
      { host: 'mail.routes.test', port: 25, priority: 10 },
      { host: 'backup.routes.test', port: 2525, priority: 20 },
    ])
    const got = await api.call('GET', `/v1/domains/${domain.id}/routes`, { key: acme.key })
    expect(got.body).toEqual(put.body)

    const bad = await api.call('PUT', `/v1/domains/${domain.id}/routes`, {
      key: acme.key,
      body: { items: [{ host: 'mail.routes.test', port: 70000 }] },
    })
    expect(bad.status).toBe(400)
    expect(bad.body.errors).toEqual([
      { field: 'body.items.0.port', message: 'Too big: expected number to be <=65535' },
    ])
    const empty = await api.call('PUT', `/v1/domains/${domain.id}/routes`, {
      key: acme.key,
      body: { items: [] },
    })
    expect(empty.status).toBe(400)
    expect(empty.body.errors[0].field).toBe('body.items')
  })
})
