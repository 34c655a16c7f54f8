import { createRoute, z } from '@hono/zod-openapi'
import { checkDkimKeys, type DkimKey, dkimRecord, generateDkimKey, getDomain, listDkimKeys } from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { problemResponses } from '../problems'
import { IdParam, iso, json, Timestamp } from '../schemas'

const DkimKeySchema = z
  .object({
    id: z.string(),
    selector: z.string().openapi({ example: 'moat202601r' }),
    algorithm: z.enum(['rsa-sha256', 'ed25519-sha256']),
    status: z.enum(['pending', 'published', 'forced']).openapi({
      description: 'mail is signed once the record is published (or an operator forced it)',
    }),
    publishedAt: Timestamp.nullable(),
    lastCheckAt: Timestamp.nullable(),
    lastCheckResult: z.string().nullable(),
    createdAt: Timestamp,
    record: z
      .object({
        name: z.string().openapi({ example: 'moat202601r._domainkey.example.com' }),
        value: z.string().openapi({ example: 'v=DKIM1; k=rsa; p=MIIBIjANBgkqh…' }),
        zone: z.string().openapi({ description: 'the record as a zone-file line' }),
      })
      .openapi({ description: 'the TXT record to publish' }),
  })
  .openapi('DkimKey')

const Keys = z.object({ items: z.array(DkimKeySchema) }).openapi('DkimKeys')

const keyOut = (k: DkimKey, domainName: string) => ({
  id: k.id,
  selector: k.selector,
  algorithm: k.algorithm as 'rsa-sha256' | 'ed25519-sha256',
  status: k.publishedAt ? ('published' as const) : k.forced ? ('forced' as const) : ('pending' as const),
  publishedAt: iso(k.publishedAt),
  lastCheckAt: iso(k.lastCheckAt),
  lastCheckResult: k.lastCheckResult,
  createdAt: iso(k.createdAt),
  record: dkimRecord(k, domainName),
})

const routes = {
  create: createRoute({
    method: 'post',
    path: '/v1/domains/{id}/dkim-keys',
    tags: ['outbound'],
    summary: 'Generate a DKIM key for the domain; publish its record, then check it',
    request: {
      params: IdParam,
      body: {
        required: true,
        ...json(
          z
            .object({
              algorithm: z.enum(['rsa-sha256', 'ed25519-sha256']).default('rsa-sha256'),
              selector: z.string().min(1).max(63).optional(),
            })
            .openapi('NewDkimKey'),
        ),
      },
    },
    responses: {
      201: { description: 'the key; only its public half ever leaves Moat', ...json(DkimKeySchema) },
      ...problemResponses(400, 401, 403, 404, 409, 422),
    },
  }),
  list: createRoute({
    method: 'get',
    path: '/v1/domains/{id}/dkim-keys',
    tags: ['outbound'],
    summary: "The domain's DKIM keys, newest first (mail is signed with the newest published one)",
    request: { params: IdParam },
    responses: { 200: { description: 'the keys', ...json(Keys) }, ...problemResponses(401, 404) },
  }),
  check: createRoute({
    method: 'post',
    path: '/v1/domains/{id}/dkim-keys/check',
    tags: ['outbound'],
    summary: "Looks the domain's DKIM records up in DNS; a key found there is published",
    request: { params: IdParam },
    responses: {
      200: { description: 'the keys after the check', ...json(Keys) },
      ...problemResponses(401, 403, 404),
    },
  }),
}

export function registerDkim(app: Api, { db, resolver }: ApiDeps): void {
  app.openapi(routes.create, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const { id } = c.req.valid('param')
    const domain = await getDomain(db, tenantId, id)
    const key = await generateDkimKey(db, { tenantId, domainId: domain.id, actor, ...c.req.valid('json') })
    return c.json(keyOut(key, domain.name), 201)
  })
  app.openapi(routes.list, async (c) => {
    const { tenantId } = caller(c)
    const domain = await getDomain(db, tenantId, c.req.valid('param').id)
    const keys = await listDkimKeys(db, tenantId, domain.id)
    return c.json({ items: keys.map((k) => keyOut(k, domain.name)) }, 200)
  })
  app.openapi(routes.check, async (c) => {
    const { tenantId } = caller(c, 'admin')
    const domain = await getDomain(db, tenantId, c.req.valid('param').id)
    const keys = await checkDkimKeys(db, resolver, { tenantId, domainId: domain.id })
    return c.json({ items: keys.map((k) => keyOut(k, domain.name)) }, 200)
  })
}
