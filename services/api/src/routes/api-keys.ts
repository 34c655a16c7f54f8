import { createRoute, z } from '@hono/zod-openapi'
import { createApiKey, listApiKeys, revokeApiKey } from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { problemResponses } from '../problems'
import { IdempotencyHeaders, IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'

const ApiKey = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z
      .string()
      .openapi({ description: 'the start of the key, to tell keys apart', example: 'moat_live_Ab3dE9xQ' }),
    role: z.enum(['admin', 'viewer']),
    createdBy: z.string(),
    createdAt: Timestamp,
    lastUsedAt: Timestamp.nullable(),
  })
  .openapi('ApiKey')

const createKeyRoute = createRoute({
  method: 'post',
  path: '/v1/api-keys',
  tags: ['api keys'],
  summary: 'Create an API key (the key is shown only in this answer)',
  request: {
    headers: IdempotencyHeaders,
    body: {
      required: true,
      ...json(
        z
          .object({
            name: z.string().min(1).max(100).openapi({ example: 'billing export' }),
            role: z.enum(['admin', 'viewer']).default('admin'),
          })
          .openapi('NewApiKey'),
      ),
    },
  },
  responses: {
    201: {
      description: 'the key: store it now, Moat keeps only its hash',
      ...json(z.object({ key: z.string().openapi({ example: 'moat_live_Ab3dE9xQ…' }), apiKey: ApiKey })),
    },
    ...problemResponses(400, 401, 403, 409, 422),
  },
})

const listKeysRoute = createRoute({
  method: 'get',
  path: '/v1/api-keys',
  tags: ['api keys'],
  summary: "The tenant's API keys, newest first",
  request: { query: PageQuery },
  responses: {
    200: { description: 'a page of keys', ...json(pageOf(ApiKey, 'ApiKeyPage')) },
    ...problemResponses(400, 401),
  },
})

const revokeKeyRoute = createRoute({
  method: 'delete',
  path: '/v1/api-keys/{id}',
  tags: ['api keys'],
  summary: 'Revoke an API key',
  request: { params: IdParam },
  responses: { 204: { description: 'revoked' }, ...problemResponses(401, 403, 404) },
})

type KeyRow = Awaited<ReturnType<typeof listApiKeys>>[number]
const keyOut = (k: KeyRow) => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  role: k.role as 'admin' | 'viewer',
  createdBy: k.createdBy,
  createdAt: iso(k.createdAt),
  lastUsedAt: iso(k.lastUsedAt),
})

export function registerApiKeys(app: Api, { db }: ApiDeps): void {
  app.openapi(createKeyRoute, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const { key, apiKey } = await createApiKey(db, { tenantId, actor, ...c.req.valid('json') })
    return c.json({ key, apiKey: keyOut(apiKey) }, 201)
  })

  app.openapi(listKeysRoute, async (c) => {
    const { tenantId } = caller(c)
    const { limit, cursor } = c.req.valid('query')
    const { items, nextCursor } = page(await listApiKeys(db, { tenantId, limit: limit + 1, cursor }), limit)
    return c.json({ items: items.map(keyOut), nextCursor }, 200)
  })

  app.openapi(revokeKeyRoute, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    await revokeApiKey(db, { tenantId, id: c.req.valid('param').id, actor })
    return c.body(null, 204)
  })
}
