import { createRoute, z } from '@hono/zod-openapi'
import {
  addListEntry,
  getDomain,
  getPolicy,
  type ListEntryRow,
  listListEntries,
  removeListEntry,
  setPolicy,
} from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { problemResponses } from '../problems'
import { IdempotencyHeaders, IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'

const threshold = z.number().min(-100).max(1000).nullable()
const Settings = z
  .object({
    tagThreshold: threshold.optional(),
    quarantineThreshold: threshold.optional(),
    discardThreshold: threshold.optional(),
    subjectPrefix: z.string().min(1).max(40).nullable().optional(),
  })
  .strict()
  .openapi('PolicySettings', {
    description: 'a score at or above a threshold takes that action; null turns the action off',
  })

const Policy = z
  .object({
    effective: Settings.required(),
    defaults: Settings.required(),
    tenant: Settings,
    domain: Settings.nullable().openapi({
      description: "the domain's own settings, when a domain was asked for",
    }),
  })
  .openapi('Policy', {
    description: 'the policy in force, and each layer it is made of: domain over tenant over defaults',
  })

const DomainQuery = z.object({
  domainId: z.string().optional().openapi({ description: "one domain's policy instead of the tenant's" }),
})

const ListEntry = z
  .object({
    id: z.string(),
    domainId: z.string().nullable(),
    domain: z.string().nullable(),
    action: z.enum(['allow', 'block']),
    kind: z.enum(['address', 'domain', 'ip']),
    value: z.string().openapi({ example: 'newsletter@example.org' }),
    note: z.string().nullable(),
    createdBy: z.string(),
    createdAt: Timestamp,
  })
  .openapi('ListEntry')

const routes = {
  getPolicy: createRoute({
    method: 'get',
    path: '/v1/policy',
    tags: ['policies'],
    summary: 'The spam policy in force for the tenant or one of its domains',
    request: { query: DomainQuery },
    responses: { 200: { description: 'the policy', ...json(Policy) }, ...problemResponses(400, 401, 404) },
  }),
  setPolicy: createRoute({
    method: 'put',
    path: '/v1/policy',
    tags: ['policies'],
    summary: 'Change the settings given (the others stay as they are)',
    request: {
      query: DomainQuery,
      body: { required: true, ...json(Settings) },
    },
    responses: {
      200: { description: 'the policy now', ...json(Policy) },
      ...problemResponses(400, 401, 403, 404, 422),
    },
  }),
  listEntries: createRoute({
    method: 'get',
    path: '/v1/lists',
    tags: ['policies'],
    summary: 'Allow and block entries, oldest first',
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of entries', ...json(pageOf(ListEntry, 'ListEntryPage')) },
      ...problemResponses(400, 401),
    },
  }),
  addEntry: createRoute({
    method: 'post',
    path: '/v1/lists',
    tags: ['policies'],
    summary: 'Allow or block a sender address, a sender domain or a client IP/CIDR',
    request: {
      headers: IdempotencyHeaders,
      body: {
        required: true,
        ...json(
          ListEntry.pick({ action: true, kind: true, value: true })
            .extend({
              note: z.string().max(500).optional(),
              domainId: z
                .string()
                .optional()
                .openapi({ description: 'for one domain only; tenant-wide when absent' }),
            })
            .openapi('NewListEntry'),
        ),
      },
    },
    responses: {
      201: { description: 'the entry', ...json(ListEntry) },
      ...problemResponses(400, 401, 403, 404, 409, 422),
    },
  }),
  removeEntry: createRoute({
    method: 'delete',
    path: '/v1/lists/{id}',
    tags: ['policies'],
    summary: 'Remove an allow or block entry',
    request: { params: IdParam },
    responses: { 204: { description: 'removed' }, ...problemResponses(401, 403, 404) },
  }),
}

const entryOut = (e: ListEntryRow & { domain: string | null }) => ({
  id: e.id,
  domainId: e.domainId,
  domain: e.domain,
  action: e.action as 'allow' | 'block',
  kind: e.kind as 'address' | 'domain' | 'ip',
  value: e.value,
  note: e.note,
  createdBy: e.createdBy,
  createdAt: iso(e.createdAt),
})

export function registerPolicies(app: Api, { db }: ApiDeps): void {
  /** the name @moat/core's policy verbs take, of a domain that must be the tenant's */
  const domainName = async (tenantId: string, domainId: string | undefined) =>
    domainId ? (await getDomain(db, tenantId, domainId)).name : undefined

  app.openapi(routes.getPolicy, async (c) => {
    const { tenantId } = caller(c)
    const domain = await domainName(tenantId, c.req.valid('query').domainId)
    return c.json(await getPolicy(db, { tenantId, ...(domain ? { domain } : {}) }), 200)
  })

  app.openapi(routes.setPolicy, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const domain = await domainName(tenantId, c.req.valid('query').domainId)
    const settings = c.req.valid('json')
    return c.json(await setPolicy(db, { tenantId, settings, actor, ...(domain ? { domain } : {}) }), 200)
  })

  app.openapi(routes.listEntries, async (c) => {
    const { tenantId } = caller(c)
    const { limit, cursor } = c.req.valid('query')
    const { items, nextCursor } = page(
      await listListEntries(db, tenantId, { limit: limit + 1, cursor }),
      limit,
    )
    return c.json({ items: items.map(entryOut), nextCursor }, 200)
  })

  app.openapi(routes.addEntry, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const { domainId, ...input } = c.req.valid('json')
    const domain = await domainName(tenantId, domainId)
    const entry = await addListEntry(db, { tenantId, actor, ...input, ...(domain ? { domain } : {}) })
    return c.json(entryOut({ ...entry, domain: domain ?? null }), 201)
  })

  app.openapi(routes.removeEntry, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    await removeListEntry(db, { tenantId, id: c.req.valid('param').id, actor })
    return c.body(null, 204)
  })
}
