import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
beforeAll(async () => {
  api = await startTestApi()
  acme = await api.tenant('acme')
})
afterAll(async () => {
  await api?.close()
})

const PASSWORD = 'a long enough password'

/** invites `email` as `role` with `auth`, accepts, signs in: the new user's id and session cookie */
async function join(auth: { key?: string; cookie?: string }, email: string, role: string) {
  const invited = await api.call('POST', '/v1/invitations', { ...auth, body: { email, role } })
  expect(invited.status, JSON.stringify(invited.body)).toBe(201)
  const accepted = await api.call('POST', '/v1/invitations/accept', {
    body: { token: invited.body.token, password: PASSWORD },
  })
  expect(accepted.status).toBe(201)
  const login = await api.call('POST', '/v1/login', { body: { email, password: PASSWORD } })
  expect(login.status).toBe(200)
  return {
    id: accepted.body.id as string,
    cookie: (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '',
  }
}

describe('users, invitations and roles', () => {
  it('an invitation is shown once, works once, and creates the user with the invited role', async () => {
    const invited = await api.call('POST', '/v1/invitations', {
      cookie: acme.cookie,
      body: { email: 'Ada@Acme.test', role: 'admin' },
    })
    expect(invited.status).toBe(201)
    expect(invited.body.token).toMatch(/^moat_inv_[A-Za-z0-9_-]{43}$/)
    expect(invited.body.invitation).toMatchObject({ email: 'ada@acme.test', role: 'admin' })
    const open = await api.call('GET', '/v1/invitations', { key: acme.key })
    expect(open.body.items).toHaveLength(1)
    expect(JSON.stringify(open.body)).not.toContain(invited.body.token)

    const short = await api.call('POST', '/v1/invitations/accept', {
      body: { token: invited.body.token, password: 'short' },
    })
    expect(short.status).toBe(422)
    expect(short.body).toMatchObject({
      detail: 'the password is too short',
      hint: 'use at least 10 characters',
    })

    const accepted = await api.call('POST', '/v1/invitations/accept', {
      body: { token: invited.body.token, password: PASSWORD },
    })
    expect(accepted.status).toBe(201)
    expect(accepted.body).toMatchObject({ email: 'ada@acme.test', role: 'admin', tenantId: acme.tenantId })

    const twice = await api.call('POST', '/v1/invitations/accept', {
      body: { token: invited.body.token, password: PASSWORD },
    })
    expect(twice.status).toBe(404)
    expect(twice.body).toMatchObject({
      type: `${PROBLEM_BASE}not-found`,
      detail: 'this invitation is not valid: it was used, revoked or has expired, or the token is mistyped',
    })
    expect((await api.call('GET', '/v1/invitations', { key: acme.key })).body.items).toEqual([])

    const login = await api.call('POST', '/v1/login', {
      body: { email: 'ada@acme.test', password: PASSWORD },
    })
    expect(login.status).toBe(200)
    expect(login.body.user.role).toBe('admin')
    const users = await api.call('GET', '/v1/users', { key: acme.key })
    expect(users.body.items.map((u: { email: string; role: string }) => [u.email, u.role])).toEqual([
      ['owner@acme.test', 'owner'],
      ['ada@acme.test', 'admin'],
    ])
  })

  it('refuses an address that already has an account, and a withdrawn invitation', async () => {
    const taken = await api.call('POST', '/v1/invitations', {
      key: acme.key,
      body: { email: 'owner@acme.test' },
    })
    expect(taken.status).toBe(409)
    expect(taken.body.detail).toBe('owner@acme.test already has a Moat account')
    const other = await api.tenant('other')
    const elsewhere = await api.call('POST', '/v1/invitations', {
      key: acme.key,
      body: { email: 'owner@other.test' },
    })
    expect(elsewhere.body.detail).toBe('owner@other.test already has a Moat account')
    expect(other.tenantId).not.toBe(acme.tenantId)

    const invited = await api.call('POST', '/v1/invitations', {
      key: acme.key,
      body: { email: 'gone@acme.test' },
    })
    const withdrawn = await api.call('DELETE', `/v1/invitations/${invited.body.invitation.id}`, {
      key: acme.key,
    })
    expect(withdrawn.status).toBe(204)
    const late = await api.call('POST', '/v1/invitations/accept', {
      body: { token: invited.body.token, password: PASSWORD },
    })
    expect(late.status).toBe(404)
    const bad = await api.call('POST', '/v1/invitations/accept', {
      body: { token: 'moat_inv_nope', password: PASSWORD },
    })
    expect(bad.status).toBe(404)
  })

  it('enforces roles: viewers read only, admins cannot touch owners, the last owner stays', async () => {
    const viewer = await join({ key: acme.key }, 'vic@acme.test', 'viewer')
    const admin = await join({ key: acme.key }, 'adam@acme.test', 'admin')

    const viewerInvites = await api.call('POST', '/v1/invitations', {
      cookie: viewer.cookie,
      body: { email: 'x@acme.test' },
    })
    expect(viewerInvites.status).toBe(403)
    expect(viewerInvites.body.detail).toBe('this needs the admin role; you are viewer')
    const viewerPromotes = await api.call('PATCH', `/v1/users/${viewer.id}`, {
      cookie: viewer.cookie,
      body: { role: 'owner' },
    })
    expect(viewerPromotes.status).toBe(403)
    expect((await api.call('GET', '/v1/users', { cookie: viewer.cookie })).status).toBe(200)

    const adminMakesOwner = await api.call('POST', '/v1/invitations', {
      cookie: admin.cookie,
      body: { email: 'boss@acme.test', role: 'owner' },
    })
    expect(adminMakesOwner.status).toBe(403)
    expect(adminMakesOwner.body.detail).toBe('only an owner may invite another owner')
    const ownerId = (await api.call('GET', '/v1/users', { key: acme.key })).body.items[0].id
    const adminDemotesOwner = await api.call('PATCH', `/v1/users/${ownerId}`, {
      cookie: admin.cookie,
      body: { role: 'viewer' },
    })
    expect(adminDemotesOwner.status).toBe(403)
    expect(adminDemotesOwner.body.detail).toBe("only an owner may change an owner's role or make an owner")

    const lastOwner = await api.call('PATCH', `/v1/users/${ownerId}`, {
      cookie: acme.cookie,
      body: { role: 'admin' },
    })
    expect(lastOwner.status).toBe(409)
    expect(lastOwner.body).toMatchObject({
      detail: 'owner@acme.test is the only owner',
      hint: 'make someone else owner first',
    })
    const removeLast = await api.call('DELETE', `/v1/users/${ownerId}`, { cookie: acme.cookie })
    expect(removeLast.status).toBe(409)

    // promote the viewer by steps an admin may take, then the owner hands over
    const toAdmin = await api.call('PATCH', `/v1/users/${viewer.id}`, {
      cookie: admin.cookie,
      body: { role: 'admin' },
    })
    expect(toAdmin.body.role).toBe('admin')
    const toOwner = await api.call('PATCH', `/v1/users/${viewer.id}`, {
      cookie: acme.cookie,
      body: { role: 'owner' },
    })
    expect(toOwner.body.role).toBe('owner')
    const stepDown = await api.call('PATCH', `/v1/users/${ownerId}`, {
      cookie: acme.cookie,
      body: { role: 'admin' },
    })
    expect(stepDown.status).toBe(200)
    expect(stepDown.body.role).toBe('admin')
    // the session carries the role as it is now
    const account = await api.call('GET', '/v1/account', { cookie: acme.cookie })
    expect(account.body.caller.role).toBe('admin')
  })

  it('removing a user ends their sessions, and every change is in the audit log with where it came from', async () => {
    const leaver = await join({ key: acme.key }, 'leaver@acme.test', 'viewer')
    expect((await api.call('GET', '/v1/account', { cookie: leaver.cookie })).status).toBe(200)
    const removed = await api.call('DELETE', `/v1/users/${leaver.id}`, { key: acme.key })
    expect(removed.status).toBe(204)
    const after = await api.call('GET', '/v1/account', { cookie: leaver.cookie })
    expect(after.status).toBe(401)
    const again = await api.call('POST', '/v1/login', {
      body: { email: 'leaver@acme.test', password: PASSWORD },
    })
    expect(again.status).toBe(401)

    const audit = await api.call('GET', '/v1/audit?limit=200', { key: acme.key })
    const actions = audit.body.items.map((e: { action: string }) => e.action)
    for (const action of ['user.invite', 'user.join', 'user.role', 'user.remove', 'user.invite_revoke']) {
      expect(actions).toContain(action)
    }
    const removal = audit.body.items.find((e: { action: string }) => e.action === 'user.remove')
    expect(removal).toMatchObject({
      actor: `key:${acme.keyId}`,
      target: leaver.id,
      detail: { email: 'leaver@acme.test', role: 'viewer' },
    })
    expect(removal.source).toMatch(/^(::ffff:)?127\.0\.0\.1$/)
  })

  it('the account says whether the tenant is active, and who is calling', async () => {
    const res = await api.call('GET', '/v1/account', { key: acme.key })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      tenant: {
        id: acme.tenantId,
        name: 'acme',
        status: 'active',
        suspension: null,
        createdAt: expect.any(String),
      },
      caller: { role: 'admin', keyId: acme.keyId },
    })
  })
})
