import { createRoute, z } from '@hono/zod-openapi'
import { login, logout, ROLES, signup } from '@moat/core'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import type { Api, ApiDeps } from '../app'
import { clientIp, SESSION_COOKIE } from '../auth'
import { ApiProblem, problemResponses } from '../problems'
import type { Limiters } from '../rate-limit'
import { iso, json, Timestamp } from '../schemas'

const Credentials = z.object({
  email: z.string().openapi({ example: 'owner@example.com' }),
  password: z.string().openapi({ example: 'correct horse battery staple' }),
})

export const User = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    email: z.string(),
    role: z.enum(ROLES),
    createdAt: Timestamp,
  })
  .openapi('User')

const Signup = Credentials.extend({
  tenant: z.string().openapi({ description: 'account name: letters, digits, dots, dashes', example: 'acme' }),
}).openapi('Signup')

const signupRoute = createRoute({
  method: 'post',
  path: '/v1/signup',
  tags: ['accounts'],
  summary: 'Create a tenant and its owner',
  security: [],
  request: { body: { required: true, ...json(Signup) } },
  responses: {
    201: {
      description: 'the new tenant and its owner; sign in next',
      ...json(z.object({ tenant: z.object({ id: z.string(), name: z.string() }), user: User })),
    },
    ...problemResponses(400, 409, 422),
  },
})

const loginRoute = createRoute({
  method: 'post',
  path: '/v1/login',
  tags: ['accounts'],
  summary: 'Sign in: sets the session cookie',
  security: [],
  request: { body: { required: true, ...json(Credentials.openapi('Credentials')) } },
  responses: {
    200: {
      description: `signed in; the \`${SESSION_COOKIE}\` cookie carries the session`,
      ...json(z.object({ user: User, expiresAt: Timestamp })),
    },
    ...problemResponses(400, 401, 429),
  },
})

const logoutRoute = createRoute({
  method: 'post',
  path: '/v1/logout',
  tags: ['accounts'],
  summary: 'Sign out: ends the session',
  responses: { 204: { description: 'signed out' }, ...problemResponses(401) },
})

type UserRow = { id: string; tenantId: string; email: string; role: string; createdAt: Date }
export const userOut = (u: UserRow) => ({
  ...u,
  role: u.role as (typeof ROLES)[number],
  createdAt: iso(u.createdAt),
})

export function registerAccounts(app: Api, { db }: ApiDeps, limiters: Limiters): void {
  app.openapi(signupRoute, async (c) => {
    const { tenant, user } = await signup(db, c.req.valid('json'))
    return c.json({ tenant: { id: tenant.id, name: tenant.name }, user: userOut(user) }, 201)
  })

  app.openapi(loginRoute, async (c) => {
    const credentials = c.req.valid('json')
    // every attempt counts, a successful one too, and none resets a counter
    limiters.loginEmail.hit(
      credentials.email.trim().toLowerCase(),
      'too many sign-in attempts for this e-mail address',
    )
    limiters.loginIp.hit(clientIp(c), 'too many sign-in attempts from this address')
    const session = await login(db, credentials)
    if (!session) throw new ApiProblem(401, 'wrong e-mail address or password')
    setCookie(c, SESSION_COOKIE, session.token, {
      httpOnly: true,
      sameSite: 'Lax',
      path: '/',
      expires: session.expiresAt,
    })
    return c.json({ user: userOut(session.user), expiresAt: iso(session.expiresAt) }, 200)
  })

  app.openapi(logoutRoute, async (c) => {
    const token = getCookie(c, SESSION_COOKIE)
    if (token) await logout(db, token)
    deleteCookie(c, SESSION_COOKIE, { path: '/' })
    return c.body(null, 204)
  })
}
