import { apiKeys, sessions, users } from '@moat/db'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
beforeAll(async () => {
  api = await startTestApi()
})
afterAll(async () => {
  await api?.close()
})

const owner = { tenant: 'acme', email: 'Owner@Acme.test', password: 'correct horse battery' }

describe(`accounts on ${process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'}`, () => {
  it('signup creates a tenant and its owner, with the password stored as a salted scrypt hash', async () => {
    const res = await api.call('POST', '/v1/signup', { body: owner })
    expect(res.status).toBe(201)
    expect(res.body.tenant).toEqual({ id: expect.stringMatching(/^ten_/), name: 'acme' })
    expect(res.body.user).toMatchObject({ email: 'owner@acme.test', role: 'owner' })
    expect(res.body.user.passwordHash).toBeUndefined()
    const [row] = await api.database.db.select().from(users).where(eq(users.email, 'owner@acme.test'))
    expect(row?.passwordHash).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{88}$/)
    expect(row?.passwordHash).not.toContain(owner.password)
  })

  it('a second signup with the same e-mail is 409, whatever its case', async () => {
    const res = await api.call('POST', '/v1/signup', {
      body: { ...owner, tenant: 'other', email: 'OWNER@acme.test' },
    })
    expect(res.status).toBe(409)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(res.body).toEqual({
      type: `${PROBLEM_BASE}conflict`,
      title: 'Conflict',
      status: 409,
      detail: 'owner@acme.test already has an account',
      hint: 'sign in instead',
    })
  })

  it('a missing field is 400 naming it', async () => {
    const res = await api.call('POST', '/v1/signup', { body: { tenant: 'x', email: 'x@x.test' } })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(res.body).toEqual({
      type: `${PROBLEM_BASE}invalid-request`,
      title: 'Invalid request',
      status: 400,
      detail: 'body.password: Invalid input: expected string, received undefined',
      errors: [{ field: 'body.password', message: 'Invalid input: expected string, received undefined' }],
    })
  })

  it('malformed JSON is a 400 problem, and a body that is not JSON a 415 problem', async () => {
    const bad = await fetch(`${api.url}/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"email":',
    })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ type: `${PROBLEM_BASE}invalid-request`, status: 400 })
    const form = await fetch(`${api.url}/v1/login`, { method: 'POST', body: new URLSearchParams({ a: 'b' }) })
    expect(form.status).toBe(415)
    expect(await form.json()).toMatchObject({ type: `${PROBLEM_BASE}unsupported-media-type`, status: 415 })
  })

  it('a short password and a bad tenant name are 422 with the reason', async () => {
    const res = await api.call('POST', '/v1/signup', {
      body: { ...owner, email: 'b@b.test', password: 'short' },
    })
    expect(res.status).toBe(422)
    expect(res.body).toMatchObject({
      type: `${PROBLEM_BASE}invalid`,
      detail: 'the password is too short',
      hint: 'use at least 10 characters',
    })
    const name = await api.call('POST', '/v1/signup', {
      body: { ...owner, tenant: 'no spaces', email: 'c@c.test' },
    })
    expect(name.status).toBe(422)
    expect(name.body.detail).toBe('invalid tenant name "no spaces"')
  })

  it('a wrong password or an unknown e-mail is the same 401', async () => {
    const expected = {
      type: `${PROBLEM_BASE}unauthorized`,
      title: 'Not signed in',
      status: 401,
      detail: 'wrong e-mail address or password',
    }
    const wrong = await api.call('POST', '/v1/login', { body: { email: owner.email, password: 'nope' } })
    expect(wrong.status).toBe(401)
    expect(wrong.body).toEqual(expected)
    expect(wrong.headers.get('set-cookie')).toBeNull()
    const unknown = await api.call('POST', '/v1/login', { body: { email: 'who@x.test', password: 'nope' } })
    expect(unknown.status).toBe(401)
    expect(unknown.body).toEqual(expected)
  })

  it('login sets an HttpOnly SameSite=Lax session cookie whose token is stored only as a hash; logout ends it', async () => {
    const res = await api.call('POST', '/v1/login', {
      body: { email: owner.email, password: owner.password },
    })
    expect(res.status).toBe(200)
    expect(res.body.user).toMatchObject({ email: 'owner@acme.test', role: 'owner' })
    const setCookie = res.headers.get('set-cookie') ?? ''
    expect(setCookie).toMatch(/^moat_session=[A-Za-z0-9_-]{43}; /)
    expect(setCookie).toContain('HttpOnly')
    expect(setCookie).toContain('SameSite=Lax')
    const cookie = setCookie.split(';')[0] ?? ''
    const token = cookie.split('=')[1] ?? ''
    const stored = await api.database.db.select().from(sessions)
    expect(stored.map((s) => s.tokenHash)).not.toContain(token)
    expect(stored.every((s) => /^[0-9a-f]{64}$/.test(s.tokenHash))).toBe(true)

    expect((await api.call('GET', '/v1/domains', { cookie })).status).toBe(200)
    expect((await api.call('POST', '/v1/logout', { cookie })).status).toBe(204)
    const after = await api.call('GET', '/v1/domains', { cookie })
    expect(after.status).toBe(401)
    expect(after.body.detail).toBe('the API key or session is not valid (revoked, expired or mistyped)')
  })

  it('an API key is shown once, stored as a hash, listed by prefix with its last use, and revocable', async () => {
    const login = await api.call('POST', '/v1/login', {
      body: { email: owner.email, password: owner.password },
    })
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
    const created = await api.call('POST', '/v1/api-keys', { cookie, body: { name: 'ci', role: 'viewer' } })
    expect(created.status).toBe(201)
    const { key, apiKey } = created.body
    expect(key).toMatch(/^moat_live_[A-Za-z0-9_-]{43}$/)
    expect(apiKey).toMatchObject({ name: 'ci', role: 'viewer', prefix: key.slice(0, 18), lastUsedAt: null })
    const [row] = await api.database.db.select().from(apiKeys).where(eq(apiKeys.id, apiKey.id))
    expect(row?.keyHash).toMatch(/^[0-9a-f]{64}$/)
    expect(JSON.stringify(row)).not.toContain(key)

    expect((await api.call('GET', '/v1/domains', { key })).status).toBe(200)
    const list = await api.call('GET', '/v1/api-keys', { key })
    expect(list.status).toBe(200)
    expect(list.body.nextCursor).toBeNull()
    const listed = list.body.items.find((k: { id: string }) => k.id === apiKey.id)
    expect(listed).toMatchObject({ prefix: apiKey.prefix, name: 'ci' })
    expect(listed.lastUsedAt).not.toBeNull()
    expect(JSON.stringify(list.body)).not.toContain(key)

    expect((await api.call('DELETE', `/v1/api-keys/${apiKey.id}`, { cookie })).status).toBe(204)
    expect((await api.call('GET', '/v1/domains', { key })).status).toBe(401)
    expect((await api.call('DELETE', `/v1/api-keys/${apiKey.id}`, { cookie })).status).toBe(404)
  })

  it('a viewer may read but not change (403 problem)', async () => {
    const login = await api.call('POST', '/v1/login', {
      body: { email: owner.email, password: owner.password },
    })
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
    const { key } = (await api.call('POST', '/v1/api-keys', { cookie, body: { name: 'ro', role: 'viewer' } }))
      .body
    expect((await api.call('GET', '/v1/domains', { key })).status).toBe(200)
    const add = await api.call('POST', '/v1/domains', { key, body: { name: 'viewer.test' } })
    expect(add.status).toBe(403)
    expect(add.body).toEqual({
      type: `${PROBLEM_BASE}forbidden`,
      title: 'Not allowed',
      status: 403,
      detail: 'this needs the admin role; you are viewer',
    })
    expect((await api.call('POST', '/v1/api-keys', { key, body: { name: 'escalate' } })).status).toBe(403)
  })

  it('unknown paths are a 404 problem (under /v1 only once signed in)', async () => {
    expect((await api.call('GET', '/v1/nothing-here')).status).toBe(401)
    const res = await api.call('GET', '/nothing-here')
    expect(res.status).toBe(404)
    expect(res.body).toMatchObject({ type: `${PROBLEM_BASE}not-found`, status: 404 })
  })
})
