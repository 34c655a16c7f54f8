import { createHash, timingSafeEqual } from 'node:crypto'
import { createRoute, z } from '@hono/zod-openapi'
import { pageTenants, resumeTenant, suspendTenant, type TenantSummary, verifyDomainById } from '@moat/core'
import type { MiddlewareHandler } from 'hono'
import type { Api, ApiDeps } from '../app'
import { ApiProblem, problemResponses } from '../problems'
import { IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'

/** The operator's routes: not a tenant's, reached with `MOAT_ADMIN_TOKEN` only. */
export const ADMIN_PREFIX = '/v1/admin/'
const OPERATOR = 'operator'

const digest = (s: string) => createHash('sha256').update(s).digest()

/** Lets in `Authorization: Bearer <MOAT_ADMIN_TOKEN>`, compared in constant time; 401 otherwise. */
export function operatorOnly(adminToken: string | undefined): MiddlewareHandler {
  const expected = adminToken ? digest(adminToken) : undefined
  return async (c, next) => {
    if (!expected) {
      throw new ApiProblem(401, 'the operator routes are turned off: set MOAT_ADMIN_TOKEN to use them')
    }
    const bearer = /^Bearer (\S+)$/i.exec(c.req.header('authorization') ?? '')?.[1]
    if (!bearer || !timingSafeEqual(digest(bearer), expected)) {
      throw new ApiProblem(401, 'operator routes need Authorization: Bearer <MOAT_ADMIN_TOKEN>')
    }
    await next()
  }
}

const AdminTenant = z
  .object({
    id: z.string(),
    name: z.string(),
    status: z.enum(['active', 'suspended']),
    suspendedReason: z.enum(['operator', 'billing']).nullable(),
    suspendedNote: z.string().nullable(),
    suspendedAt: Timestamp.nullable(),
    domains: z.number().int(),
    users: z.number().int(),
    createdAt: Timestamp,
  })
  .openapi('AdminTenant')

const operatorSecurity = [{ operatorToken: [] }]

const routes = {
  tenants: createRoute({
    method: 'get',
    path: '/v1/admin/tenants',
    tags: ['operator'],
    summary: 'Every tenant, oldest first, with its domain and user counts (operator)',
    security: operatorSecurity,
    request: {
      query: PageQuery.extend({
        status: z
          .enum(['active', 'suspended'])
          .optional()
          .openapi({ description: 'only tenants in this state' }),
      }),
    },
    responses: {
      200: { description: 'a page of tenants', ...json(pageOf(AdminTenant, 'AdminTenantPage')) },
      ...problemResponses(400, 401),
    },
  }),
  suspend: createRoute({
    method: 'post',
    path: '/v1/admin/tenants/{id}/suspend',
    tags: ['operator'],
    summary:
      'Suspend a tenant: its mail is still accepted and kept, but not delivered, and its outbound submission is refused, until it is resumed (operator)',
    security: operatorSecurity,
    request: {
      params: IdParam,
      body: {
        required: false,
        ...json(
          z
            .object({ note: z.string().max(500).optional().openapi({ example: 'abuse report #4711' }) })
            .openapi('Suspend'),
        ),
      },
    },
    responses: {
      200: { description: 'the tenant now', ...json(AdminTenant) },
      ...problemResponses(400, 401, 404),
    },
  }),
  resume: createRoute({
    method: 'post',
    path: '/v1/admin/tenants/{id}/resume',
    tags: ['operator'],
    summary: 'Resume a suspended tenant (whatever the reason): held mail is delivered (operator)',
    security: operatorSecurity,
    request: { params: IdParam },
    responses: {
      200: { description: 'the tenant now', ...json(AdminTenant) },
      ...problemResponses(401, 404),
    },
  }),
  forceVerify: createRoute({
    method: 'post',
    path: '/v1/admin/domains/{id}/force-verify',
    tags: ['operator'],
    summary: "Verify a domain without its TXT record; recorded in the tenant's audit log (operator)",
    security: operatorSecurity,
    request: { params: IdParam },
    responses: {
      200: {
        description: 'the domain after the check',
        ...json(
          z
            .object({
              id: z.string(),
              tenantId: z.string(),
              name: z.string(),
              status: z.enum(['pending', 'verified', 'active']),
              verifiedBy: z.enum(['dns', 'operator']).nullable(),
              verifiedAt: Timestamp.nullable(),
            })
            .openapi('AdminDomain'),
        ),
      },
      ...problemResponses(401, 404, 409),
    },
  }),
}

const tenantOut = (t: TenantSummary) => ({
  id: t.id,
  name: t.name,
  status: t.status as 'active' | 'suspended',
  suspendedReason: t.suspendedReason as 'operator' | 'billing' | null,
  suspendedNote: t.suspendedNote,
  suspendedAt: iso(t.suspendedAt),
  domains: t.domains,
  users: t.users,
  createdAt: iso(t.createdAt),
})

export function registerAdmin(app: Api, { db, config, resolver }: ApiDeps): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'operatorToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'MOAT_ADMIN_TOKEN',
  })

  const one = async (id: string) => {
    const [t] = await pageTenants(db, { id, limit: 1 })
    if (!t) throw new ApiProblem(404, `no tenant ${id}`)
    return tenantOut(t)
  }

  app.openapi(routes.tenants, async (c) => {
    const { limit, cursor, status } = c.req.valid('query')
    const { items, nextCursor } = page(await pageTenants(db, { limit: limit + 1, cursor, status }), limit)
    return c.json({ items: items.map(tenantOut), nextCursor }, 200)
  })

  app.openapi(routes.suspend, async (c) => {
    const { id } = c.req.valid('param')
    const note = (c.req.header('content-type') ?? '').includes('json') ? c.req.valid('json')?.note : undefined
    await suspendTenant(db, { tenantId: id, reason: 'operator', note, actor: OPERATOR })
    return c.json(await one(id), 200)
  })

  app.openapi(routes.resume, async (c) => {
    const { id } = c.req.valid('param')
    await resumeTenant(db, { tenantId: id, reason: 'operator', actor: OPERATOR })
    return c.json(await one(id), 200)
  })

  app.openapi(routes.forceVerify, async (c) => {
    const result = await verifyDomainById(db, resolver, {
      id: c.req.valid('param').id,
      mxHosts: config.mxHosts,
      actor: OPERATOR,
      force: true,
    })
    const d = result.domain
    return c.json(
      {
        id: d.id,
        tenantId: d.tenantId,
        name: d.name,
        status: d.status as 'pending' | 'verified' | 'active',
        verifiedBy: d.verifiedBy as 'dns' | 'operator' | null,
        verifiedAt: iso(d.verifiedAt),
      },
      200,
    )
  })
}
