import { createRoute, z } from '@hono/zod-openapi'
import { pageAudit } from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { ApiProblem, problemResponses } from '../problems'
import { iso, json, PageQuery, pageOf, Timestamp } from '../schemas'

const AuditEntry = z
  .object({
    id: z.string(),
    at: Timestamp,
    actor: z.string().openapi({ example: 'user:usr_01jdx3m2k8c7q4v9w0y5z6t1ab' }),
    action: z.string().openapi({ example: 'domain.verified' }),
    target: z.string(),
    detail: z.record(z.string(), z.unknown()),
    source: z.string().nullable().openapi({
      description:
        'where the change came from: the client’s IP address, `cli`, or `system` for background checks',
      example: '203.0.113.7',
    }),
  })
  .openapi('AuditEntry')

const routes = {
  list: createRoute({
    method: 'get',
    path: '/v1/audit',
    tags: ['audit'],
    summary: 'Who changed what and when, newest first (owners and admins)',
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of entries', ...json(pageOf(AuditEntry, 'AuditPage')) },
      ...problemResponses(400, 401, 403),
    },
  }),
}

export function registerAudit(app: Api, { db }: ApiDeps): void {
  app.openapi(routes.list, async (c) => {
    const { tenantId } = caller(c, 'admin')
    const { limit, cursor } = c.req.valid('query')
    const after = cursor === undefined ? undefined : Number(cursor)
    if (after !== undefined && !Number.isSafeInteger(after)) {
      throw new ApiProblem(400, `query.cursor: not a cursor from this list: ${cursor}`)
    }
    const rows = await pageAudit(db, { tenantId, limit: limit + 1, cursor: after })
    const items = rows.slice(0, limit).map((e) => ({
      id: String(e.id),
      at: iso(e.at),
      actor: e.actor,
      action: e.action,
      target: e.target,
      detail: e.detail,
      source: e.source,
    }))
    return c.json({ items, nextCursor: rows.length > limit ? (items.at(-1)?.id ?? null) : null }, 200)
  })
}
