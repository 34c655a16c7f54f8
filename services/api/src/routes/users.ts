import { createRoute, z } from '@hono/zod-openapi'
import {
  acceptInvitation,
  changeRole,
  findTenant,
  type Invitation,
  inviteUser,
  pageInvitations,
  pageUsers,
  ROLES,
  removeUser,
  revokeInvitation,
} from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { problemResponses } from '../problems'
import { IdempotencyHeaders, IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'
import { User, userOut } from './accounts'

const Suspension = z
  .object({
    reason: z.enum(['operator', 'billing']),
    note: z.string().nullable(),
    since: Timestamp,
  })
  .openapi('Suspension', {
    description: 'while suspended, mail is accepted and kept but not delivered; nothing is lost',
  })

const Account = z
  .object({
    tenant: z.object({
      id: z.string(),
      name: z.string(),
      status: z.enum(['active', 'suspended']),
      suspension: Suspension.nullable(),
      createdAt: Timestamp,
    }),
    caller: z.object({
      role: z.enum(ROLES),
      userId: z.string().optional(),
      keyId: z.string().optional(),
    }),
  })
  .openapi('Account')

const InvitationSchema = z
  .object({
    id: z.string(),
    email: z.string(),
    role: z.enum(ROLES),
    invitedBy: z.string(),
    expiresAt: Timestamp,
    createdAt: Timestamp,
  })
  .openapi('Invitation')

const routes = {
  account: createRoute({
    method: 'get',
    path: '/v1/account',
    tags: ['accounts'],
    summary: 'The tenant (its status, and why it is suspended if it is) and who is calling',
    responses: { 200: { description: 'the account', ...json(Account) }, ...problemResponses(401) },
  }),
  listUsers: createRoute({
    method: 'get',
    path: '/v1/users',
    tags: ['users'],
    summary: "The tenant's users, oldest first",
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of users', ...json(pageOf(User, 'UserPage')) },
      ...problemResponses(400, 401),
    },
  }),
  changeRole: createRoute({
    method: 'patch',
    path: '/v1/users/{id}',
    tags: ['users'],
    summary: "Change a user's role (admins manage admins and viewers; owners manage everyone)",
    request: {
      params: IdParam,
      body: { required: true, ...json(z.object({ role: z.enum(ROLES) }).openapi('RoleChange')) },
    },
    responses: {
      200: { description: 'the user now', ...json(User) },
      ...problemResponses(400, 401, 403, 404, 409),
    },
  }),
  removeUser: createRoute({
    method: 'delete',
    path: '/v1/users/{id}',
    tags: ['users'],
    summary: 'Remove a user and end their sessions (the last owner cannot be removed)',
    request: { params: IdParam },
    responses: { 204: { description: 'removed' }, ...problemResponses(401, 403, 404, 409) },
  }),
  listInvitations: createRoute({
    method: 'get',
    path: '/v1/invitations',
    tags: ['users'],
    summary: 'Open invitations, newest first (owners and admins)',
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of invitations', ...json(pageOf(InvitationSchema, 'InvitationPage')) },
      ...problemResponses(400, 401, 403),
    },
  }),
  invite: createRoute({
    method: 'post',
    path: '/v1/invitations',
    tags: ['users'],
    summary: 'Invite someone with a role; the answer holds the one-time token to pass on',
    request: {
      headers: IdempotencyHeaders,
      body: {
        required: true,
        ...json(
          z
            .object({
              email: z.string().openapi({ example: 'colleague@example.com' }),
              role: z.enum(ROLES).default('viewer'),
            })
            .openapi('NewInvitation'),
        ),
      },
    },
    responses: {
      201: {
        description:
          'the invitation; `token` is shown only here and works once, for 7 days, with `POST /v1/invitations/accept`',
        ...json(
          z.object({ token: z.string().openapi({ example: 'moat_inv_…' }), invitation: InvitationSchema }),
        ),
      },
      ...problemResponses(400, 401, 403, 409, 422),
    },
  }),
  revokeInvitation: createRoute({
    method: 'delete',
    path: '/v1/invitations/{id}',
    tags: ['users'],
    summary: 'Withdraw an open invitation',
    request: { params: IdParam },
    responses: { 204: { description: 'withdrawn' }, ...problemResponses(401, 403, 404) },
  }),
  accept: createRoute({
    method: 'post',
    path: '/v1/invitations/accept',
    tags: ['users'],
    summary: 'Accept an invitation: creates the user with the invited role; sign in next',
    security: [],
    request: {
      body: {
        required: true,
        ...json(
          z
            .object({
              token: z.string().min(1),
              password: z.string().openapi({ description: 'at least 10 characters' }),
            })
            .openapi('AcceptInvitation'),
        ),
      },
    },
    responses: {
      201: { description: 'the new user', ...json(User) },
      ...problemResponses(400, 404, 409, 422),
    },
  }),
}

const invitationOut = (i: Invitation) => ({
  id: i.id,
  email: i.email,
  role: i.role as (typeof ROLES)[number],
  invitedBy: i.invitedBy,
  expiresAt: iso(i.expiresAt),
  createdAt: iso(i.createdAt),
})

export function registerUsers(app: Api, { db }: ApiDeps): void {
  app.openapi(routes.account, async (c) => {
    const { tenantId, role, userId, keyId } = caller(c)
    const tenant = await findTenant(db, tenantId)
    const suspended = tenant.status === 'suspended'
    return c.json(
      {
        tenant: {
          id: tenant.id,
          name: tenant.name,
          status: suspended ? ('suspended' as const) : ('active' as const),
          suspension: suspended
            ? {
                reason: (tenant.suspendedReason ?? 'operator') as 'operator' | 'billing',
                note: tenant.suspendedNote,
                since: iso(tenant.suspendedAt ?? tenant.createdAt),
              }
            : null,
          createdAt: iso(tenant.createdAt),
        },
        caller: { role, ...(userId ? { userId } : {}), ...(keyId ? { keyId } : {}) },
      },
      200,
    )
  })

  app.openapi(routes.listUsers, async (c) => {
    const { tenantId } = caller(c)
    const { limit, cursor } = c.req.valid('query')
    const { items, nextCursor } = page(await pageUsers(db, { tenantId, limit: limit + 1, cursor }), limit)
    return c.json({ items: items.map(userOut), nextCursor }, 200)
  })

  app.openapi(routes.changeRole, async (c) => {
    const { tenantId, actor, role: callerRole } = caller(c, 'admin')
    const user = await changeRole(db, {
      tenantId,
      id: c.req.valid('param').id,
      role: c.req.valid('json').role,
      callerRole,
      actor,
    })
    return c.json(userOut(user), 200)
  })

  app.openapi(routes.removeUser, async (c) => {
    const { tenantId, actor, role: callerRole } = caller(c, 'admin')
    await removeUser(db, { tenantId, id: c.req.valid('param').id, callerRole, actor })
    return c.body(null, 204)
  })

  app.openapi(routes.listInvitations, async (c) => {
    const { tenantId } = caller(c, 'admin')
    const { limit, cursor } = c.req.valid('query')
    const rows = await pageInvitations(db, { tenantId, limit: limit + 1, cursor })
    const { items, nextCursor } = page(rows, limit)
    return c.json({ items: items.map(invitationOut), nextCursor }, 200)
  })

  app.openapi(routes.invite, async (c) => {
    const { tenantId, actor, role: inviterRole } = caller(c, 'admin')
    const { token, invitation } = await inviteUser(db, {
      tenantId,
      actor,
      inviterRole,
      ...c.req.valid('json'),
    })
    return c.json({ token, invitation: invitationOut(invitation) }, 201)
  })

  app.openapi(routes.revokeInvitation, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    await revokeInvitation(db, { tenantId, id: c.req.valid('param').id, actor })
    return c.body(null, 204)
  })

  app.openapi(routes.accept, async (c) => {
    const user = await acceptInvitation(db, c.req.valid('json'))
    return c.json(userOut(user), 201)
  })
}
