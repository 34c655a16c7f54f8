import { createRoute, z } from '@hono/zod-openapi'
import {
  addDomain,
  type Domain,
  getDomain,
  listRoutes,
  pageDomains,
  type Route,
  requiredRecords,
  setDomainRoutes,
  TLS_MODES,
  type TlsMode,
  verifyDomain,
} from '@moat/core'
import { probeSmtp } from '@moat/deliver'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { problemResponses } from '../problems'
import { IdempotencyHeaders, IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'

const DomainSchema = z
  .object({
    id: z.string(),
    name: z.string().openapi({ example: 'example.com' }),
    status: z.enum(['pending', 'verified', 'active']).openapi({
      description:
        'pending until the TXT token is seen; verified: mail is accepted; active: MX points at Moat',
    }),
    verifiedAt: Timestamp.nullable(),
    mxPointsAtMoat: z.boolean().nullable(),
    lastCheckAt: Timestamp.nullable(),
    lastCheckResult: z.string().nullable(),
    mxDriftAt: Timestamp.nullable().openapi({
      description:
        'set while an active domain’s MX records no longer name Moat (found by the background check, also in the audit log as `domain.mx_drift`)',
    }),
    createdAt: Timestamp,
    records: z
      .object({
        txt: z.string(),
        mx: z.array(z.string()),
        zone: z.string().openapi({ description: 'the same records, ready to paste into a zone file' }),
      })
      .openapi({ description: 'the DNS records to publish' }),
  })
  .openapi('Domain')

const Destination = z.object({
  host: z.string().min(1).max(253).openapi({ example: 'mail.example.com' }),
  port: z.number().int().min(1).max(65535).default(25),
  priority: z.number().int().min(0).max(65535).default(10).openapi({ description: 'lower is tried first' }),
  tls: z.enum(TLS_MODES).default('opportunistic').openapi({
    description:
      '`opportunistic`: STARTTLS when the server offers it; `required`: mail waits rather than travel in the clear (certificates are not checked)',
  }),
  recipient: z.string().nullable().default(null).openapi({
    description:
      'an address of this domain: this destination then takes that recipient’s mail only, instead of the domain’s other destinations',
    example: null,
  }),
})

const RouteSchema = Destination.extend({ id: z.string(), createdAt: Timestamp }).openapi('Route')
const Routes = z.object({ items: z.array(RouteSchema) }).openapi('Routes')

const ConnectionTest = z
  .object({
    items: z.array(
      z.object({
        routeId: z.string(),
        host: z.string(),
        port: z.number().int(),
        tls: z.enum(TLS_MODES),
        recipient: z.string().nullable(),
        ok: z.boolean(),
        banner: z.string().nullable().openapi({ example: '220 mail.example.com ESMTP Postfix' }),
        starttls: z.object({
          offered: z.boolean(),
          negotiated: z.boolean(),
          protocol: z.string().nullable(),
        }),
        error: z.string().nullable().openapi({ example: 'connection refused by mail.example.com:25' }),
        ms: z.number().int(),
      }),
    ),
  })
  .openapi('ConnectionTest')

/** a test connection gives up after this long per destination */
const PROBE_TIMEOUT_MS = 10_000

const routes = {
  list: createRoute({
    method: 'get',
    path: '/v1/domains',
    tags: ['domains'],
    summary: "The tenant's domains, oldest first",
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of domains', ...json(pageOf(DomainSchema, 'DomainPage')) },
      ...problemResponses(400, 401),
    },
  }),
  add: createRoute({
    method: 'post',
    path: '/v1/domains',
    tags: ['domains'],
    summary: 'Add a domain, pending verification',
    request: {
      headers: IdempotencyHeaders,
      body: {
        required: true,
        ...json(z.object({ name: z.string().openapi({ example: 'example.com' }) }).openapi('NewDomain')),
      },
    },
    responses: {
      201: { description: 'added; publish `records`, then verify', ...json(DomainSchema) },
      ...problemResponses(400, 401, 403, 409, 422),
    },
  }),
  get: createRoute({
    method: 'get',
    path: '/v1/domains/{id}',
    tags: ['domains'],
    summary: 'One domain',
    request: { params: IdParam },
    responses: { 200: { description: 'the domain', ...json(DomainSchema) }, ...problemResponses(401, 404) },
  }),
  verify: createRoute({
    method: 'post',
    path: '/v1/domains/{id}/verify',
    tags: ['domains'],
    summary: "Check the domain's DNS now: TXT token → verified, MX at Moat → active",
    request: { params: IdParam },
    responses: {
      200: {
        description: 'the outcome; `verified: false` says why in `reason`',
        ...json(
          z
            .object({
              verified: z.boolean(),
              reason: z.string().optional(),
              mx: z.object({
                hosts: z.array(z.string()),
                pointsAtMoat: z.boolean(),
                error: z.string().optional(),
              }),
              domain: DomainSchema,
            })
            .openapi('Verification'),
        ),
      },
      ...problemResponses(401, 403, 404, 409),
    },
  }),
  getRoutes: createRoute({
    method: 'get',
    path: '/v1/domains/{id}/routes',
    tags: ['routes'],
    summary: "The domain's destination servers, by priority",
    request: { params: IdParam },
    responses: { 200: { description: 'the routes', ...json(Routes) }, ...problemResponses(401, 404) },
  }),
  testRoutes: createRoute({
    method: 'post',
    path: '/v1/domains/{id}/routes/test',
    tags: ['routes'],
    summary:
      'Open SMTP to each of the domain’s destinations (greeting, EHLO, STARTTLS; no mail is sent) and report the banner or the error',
    request: { params: IdParam },
    responses: {
      200: { description: 'one result per destination, by priority', ...json(ConnectionTest) },
      ...problemResponses(401, 403, 404),
    },
  }),
  setRoutes: createRoute({
    method: 'put',
    path: '/v1/domains/{id}/routes',
    tags: ['routes'],
    summary: "Replace the domain's destination servers",
    request: {
      params: IdParam,
      body: {
        required: true,
        ...json(z.object({ items: z.array(Destination).min(1) }).openapi('NewRoutes')),
      },
    },
    responses: {
      200: { description: 'the routes now', ...json(Routes) },
      ...problemResponses(400, 401, 403, 404, 422),
    },
  }),
}

export function registerDomains(app: Api, { db, config, resolver }: ApiDeps): void {
  const domainOut = (d: Domain) => {
    const records = requiredRecords(d, config.mxHosts)
    return {
      id: d.id,
      name: d.name,
      status: d.status as 'pending' | 'verified' | 'active',
      verifiedAt: iso(d.verifiedAt),
      mxPointsAtMoat: d.mxPointsAtMoat,
      lastCheckAt: iso(d.lastCheckAt),
      lastCheckResult: d.lastCheckResult,
      mxDriftAt: iso(d.mxDriftAt),
      createdAt: iso(d.createdAt),
      records: { ...records, zone: [records.txt, ...records.mx].join('\n') },
    }
  }
  const routeOut = (r: Route) => ({
    id: r.id,
    host: r.host,
    port: r.port,
    priority: r.priority,
    tls: r.tls as TlsMode,
    recipient: r.recipient,
    createdAt: iso(r.createdAt),
  })

  app.openapi(routes.list, async (c) => {
    const { tenantId } = caller(c)
    const { limit, cursor } = c.req.valid('query')
    const { items, nextCursor } = page(await pageDomains(db, { tenantId, limit: limit + 1, cursor }), limit)
    return c.json({ items: items.map(domainOut), nextCursor }, 200)
  })

  app.openapi(routes.add, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const domain = await addDomain(db, { tenant: tenantId, name: c.req.valid('json').name, actor })
    return c.json(domainOut(domain), 201)
  })

  app.openapi(routes.get, async (c) => {
    const { tenantId } = caller(c)
    return c.json(domainOut(await getDomain(db, tenantId, c.req.valid('param').id)), 200)
  })

  app.openapi(routes.verify, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const domain = await getDomain(db, tenantId, c.req.valid('param').id)
    const result = await verifyDomain(db, resolver, {
      name: domain.name,
      tenantId,
      mxHosts: config.mxHosts,
      actor,
    })
    const { verified, reason, mx } = result
    return c.json({ verified, ...(reason ? { reason } : {}), mx, domain: domainOut(result.domain) }, 200)
  })

  app.openapi(routes.getRoutes, async (c) => {
    const { tenantId } = caller(c)
    const domain = await getDomain(db, tenantId, c.req.valid('param').id)
    return c.json({ items: (await listRoutes(db, domain.id)).map(routeOut) }, 200)
  })

  app.openapi(routes.testRoutes, async (c) => {
    const { tenantId } = caller(c, 'admin')
    const domain = await getDomain(db, tenantId, c.req.valid('param').id)
    const list = await listRoutes(db, domain.id)
    const items = await Promise.all(
      list.map(async (r) => ({
        routeId: r.id,
        host: r.host,
        port: r.port,
        tls: r.tls as TlsMode,
        recipient: r.recipient,
        ...(await probeSmtp(r, { hostname: config.hostname, timeoutMs: PROBE_TIMEOUT_MS })),
      })),
    )
    return c.json({ items }, 200)
  })

  app.openapi(routes.setRoutes, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const rows = await setDomainRoutes(db, {
      tenantId,
      domainId: c.req.valid('param').id,
      destinations: c.req.valid('json').items,
      actor,
    })
    return c.json({ items: rows.map(routeOut) }, 200)
  })
}
