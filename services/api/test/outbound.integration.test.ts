import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let t: Awaited<ReturnType<TestApi['tenant']>>

beforeAll(async () => {
  api = await startTestApi()
  t = await api.tenant('omega')
})
afterAll(async () => {
  await api?.close()
})

describe('SMTP credentials', () => {
  it('shows the password once; lists and reads never carry it', async () => {
    const created = await api.call('POST', '/v1/smtp-credentials', {
      key: t.key,
      body: { name: 'printer', allowedDomains: ['Omega.Test'] },
    })
    expect(created.status).toBe(201)
    expect(created.body.password).toMatch(/^moat_smtp_[A-Za-z0-9_-]{43}$/)
    expect(created.body.username).toBe(created.body.credential.id)
    expect(created.body.credential).toMatchObject({
      name: 'printer',
      allowedDomains: ['omega.test'],
      status: 'active',
      suspendedAt: null,
    })
    const list = await api.call('GET', '/v1/smtp-credentials', { key: t.key })
    expect(list.body.items.map((c: { id: string }) => c.id)).toEqual([created.body.username])
    expect(JSON.stringify(list.body)).not.toContain(created.body.password)
    expect(JSON.stringify(list.body)).not.toContain('secret')

    expect(
      (await api.call('DELETE', `/v1/smtp-credentials/${created.body.username}`, { key: t.key })).status,
    ).toBe(204)
    const gone = await api.call('GET', `/v1/smtp-credentials/${created.body.username}`, { key: t.key })
    expect(gone.status).toBe(404)
    expect(gone.body.detail).toBe(`no SMTP credential ${created.body.username}`)
  })

  it('refuses a bad allowed domain with the field and reason', async () => {
    const res = await api.call('POST', '/v1/smtp-credentials', {
      key: t.key,
      body: { name: 'x', allowedDomains: ['not a domain'] },
    })
    expect(res.status).toBe(422)
    expect(res.body).toMatchObject({
      type: `${PROBLEM_BASE}invalid`,
      detail: 'invalid domain name "not a domain"',
    })
  })
})

describe('relay networks', () => {
  it('takes an address or a network, and refuses nonsense, too-wide networks and duplicates', async () => {
    const one = await api.call('POST', '/v1/relay-networks', { key: t.key, body: { cidr: '198.51.100.7' } })
    expect(one.status).toBe(201)
    expect(one.body.cidr).toBe('198.51.100.7/32')
    const bad = await api.call('POST', '/v1/relay-networks', { key: t.key, body: { cidr: '300.1.2.3/24' } })
    expect(bad.status).toBe(422)
    expect(bad.body.detail).toBe('invalid IP or CIDR "300.1.2.3/24"')
    const wide = await api.call('POST', '/v1/relay-networks', { key: t.key, body: { cidr: '10.0.0.0/8' } })
    expect(wide.status).toBe(422)
    expect(wide.body).toMatchObject({
      detail: '10.0.0.0/8 is too wide a network to relay from',
      hint: 'use a prefix of at least /16',
    })
    const again = await api.call('POST', '/v1/relay-networks', {
      key: t.key,
      body: { cidr: '198.51.100.7/32' },
    })
    expect(again.status).toBe(409)
    expect(again.body.detail).toBe('198.51.100.7/32 is already registered')
    const other = await api.tenant('sigma')
    const theirs = await api.call('POST', '/v1/relay-networks', {
      key: other.key,
      body: { cidr: '198.51.100.7' },
    })
    expect(theirs.body.detail).toBe('198.51.100.7/32 is registered by another customer')
  })
})

describe('DKIM keys', () => {
  it('generates an Ed25519 key whose record carries the raw 32-byte key, pending until DNS shows it', async () => {
    const domain = await api.call('POST', '/v1/domains', { key: t.key, body: { name: 'omega.test' } })
    const key = await api.call('POST', `/v1/domains/${domain.body.id}/dkim-keys`, {
      key: t.key,
      body: { algorithm: 'ed25519-sha256', selector: 'ed1' },
    })
    expect(key.status).toBe(201)
    expect(key.body).toMatchObject({ selector: 'ed1', algorithm: 'ed25519-sha256', status: 'pending' })
    expect(key.body.record.name).toBe('ed1._domainkey.omega.test')
    const p = /^v=DKIM1; k=ed25519; p=(\S+)$/.exec(key.body.record.value)?.[1] ?? ''
    expect(Buffer.from(p, 'base64')).toHaveLength(32)
    expect(JSON.stringify(key.body)).not.toContain('PRIVATE KEY')

    const missing = await api.call('POST', `/v1/domains/${domain.body.id}/dkim-keys/check`, { key: t.key })
    expect(missing.body.items[0]).toMatchObject({
      status: 'pending',
      lastCheckResult: 'no TXT record at ed1._domainkey.omega.test (not found)',
    })
    api.dns.zones.set('ed1._domainkey.omega.test', { txt: [key.body.record.value] })
    const found = await api.call('POST', `/v1/domains/${domain.body.id}/dkim-keys/check`, { key: t.key })
    expect(found.body.items[0]).toMatchObject({ status: 'published' })

    const dup = await api.call('POST', `/v1/domains/${domain.body.id}/dkim-keys`, {
      key: t.key,
      body: { selector: 'ed1' },
    })
    expect(dup.status).toBe(409)
    expect(dup.body.detail).toBe('omega.test already has a key with selector ed1')
  })
})

describe('outbound settings', () => {
  it('sets the spam threshold; a viewer may read but not change it', async () => {
    const set = await api.call('PUT', '/v1/outbound-settings', { key: t.key, body: { spamThreshold: 4.5 } })
    expect(set.body).toEqual({ spamThreshold: 4.5, senderPool: null })
    const viewer = await api.call('POST', '/v1/api-keys', {
      key: t.key,
      body: { name: 'ro', role: 'viewer' },
    })
    const read = await api.call('GET', '/v1/outbound-settings', { key: viewer.body.key })
    expect(read.body.spamThreshold).toBe(4.5)
    const denied = await api.call('PUT', '/v1/outbound-settings', {
      key: viewer.body.key,
      body: { spamThreshold: 1 },
    })
    expect(denied.status).toBe(403)
  })
})
