import { createRoute, z } from '@hono/zod-openapi'
import {
  addRelayNetwork,
  createSmtpCredential,
  enableSmtpCredential,
  getOutboundSettings,
  getSmtpCredential,
  listRelayNetworks,
  listSmtpCredentials,
  listTenantEvents,
  type RelayNetwork,
  removeRelayNetwork,
  revokeSmtpCredential,
  type SmtpCredential,
  setOutboundSpamThreshold,
} from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { problemResponses } from '../problems'
import { IdempotencyHeaders, IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'

const Credential = z
  .object({
    id: z.string(),
    username: z.string().openapi({ description: 'the SMTP AUTH username (the id)' }),
    name: z.string(),
    allowedDomains: z
      .array(z.string())
      .nullable()
      .openapi({ description: 'sender domains it may use; null: every verified domain of the tenant' }),
    status: z.enum(['active', 'suspended']),
    suspendedAt: Timestamp.nullable(),
    suspendedReason: z.string().nullable(),
    createdBy: z.string(),
    createdAt: Timestamp,
    lastUsedAt: Timestamp.nullable(),
  })
  .openapi('SmtpCredential')

const credentialOut = (c: SmtpCredential) => ({
  id: c.id,
  username: c.id,
  name: c.name,
  allowedDomains: c.allowedDomains,
  status: c.suspendedAt ? ('suspended' as const) : ('active' as const),
  suspendedAt: iso(c.suspendedAt),
  suspendedReason: c.suspendedReason,
  createdBy: c.createdBy,
  createdAt: iso(c.createdAt),
  lastUsedAt: iso(c.lastUsedAt),
})

const Network = z
  .object({
    id: z.string(),
    cidr: z.string().openapi({ example: '192.0.2.0/24' }),
    note: z.string().nullable(),
    createdBy: z.string(),
    createdAt: Timestamp,
  })
  .openapi('RelayNetwork')

const networkOut = (n: RelayNetwork) => ({
  id: n.id,
  cidr: n.cidr,
  note: n.note,
  createdBy: n.createdBy,
  createdAt: iso(n.createdAt),
})

const TenantEvent = z
  .object({
    id: z.string(),
    kind: z.string().openapi({ example: 'outbound.held' }),
    payload: z.record(z.string(), z.unknown()),
    createdAt: Timestamp,
  })
  .openapi('TenantEvent')

const OutboundSettings = z
  .object({
    spamThreshold: z
      .number()
      .nullable()
      .openapi({ description: "outbound mail scoring at or above this is held; null: Moat's default" }),
    senderPool: z
      .string()
      .nullable()
      .openapi({ description: "the operator's choice of sender pool; null: the default pool" }),
  })
  .openapi('OutboundSettings')

const routes = {
  createCredential: createRoute({
    method: 'post',
    path: '/v1/smtp-credentials',
    tags: ['outbound'],
    summary: 'Create SMTP credentials for outbound submission (the password is shown only in this answer)',
    request: {
      headers: IdempotencyHeaders,
      body: {
        required: true,
        ...json(
          z
            .object({
              name: z.string().min(1).max(100).openapi({ example: 'office printer' }),
              allowedDomains: z
                .array(z.string().min(1).max(253))
                .max(100)
                .optional()
                .openapi({ description: 'limit these credentials to these sender domains' }),
            })
            .openapi('NewSmtpCredential'),
        ),
      },
    },
    responses: {
      201: {
        description: 'the credentials: store the password now, Moat keeps only its hash',
        ...json(
          z.object({
            username: z.string(),
            password: z.string().openapi({ example: 'moat_smtp_Ab3dE9xQ…' }),
            credential: Credential,
          }),
        ),
      },
      ...problemResponses(400, 401, 403, 409, 422),
    },
  }),
  listCredentials: createRoute({
    method: 'get',
    path: '/v1/smtp-credentials',
    tags: ['outbound'],
    summary: "The tenant's SMTP credentials, newest first",
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of credentials', ...json(pageOf(Credential, 'SmtpCredentialPage')) },
      ...problemResponses(400, 401),
    },
  }),
  getCredential: createRoute({
    method: 'get',
    path: '/v1/smtp-credentials/{id}',
    tags: ['outbound'],
    summary: 'One SMTP credential, with whether it is suspended and why',
    request: { params: IdParam },
    responses: { 200: { description: 'the credential', ...json(Credential) }, ...problemResponses(401, 404) },
  }),
  revokeCredential: createRoute({
    method: 'delete',
    path: '/v1/smtp-credentials/{id}',
    tags: ['outbound'],
    summary: 'Revoke SMTP credentials',
    request: { params: IdParam },
    responses: { 204: { description: 'revoked' }, ...problemResponses(401, 403, 404) },
  }),
  enableCredential: createRoute({
    method: 'post',
    path: '/v1/smtp-credentials/{id}/enable',
    tags: ['outbound'],
    summary: 'Re-enable credentials that Moat suspended (a sending spike, a burst of held spam)',
    request: { params: IdParam },
    responses: {
      200: { description: 'active again', ...json(Credential) },
      ...problemResponses(401, 403, 404),
    },
  }),
  addNetwork: createRoute({
    method: 'post',
    path: '/v1/relay-networks',
    tags: ['outbound'],
    summary: 'Let your own mail servers in this network relay without AUTH',
    request: {
      headers: IdempotencyHeaders,
      body: {
        required: true,
        ...json(
          z
            .object({
              cidr: z.string().min(1).max(64).openapi({ example: '192.0.2.0/24' }),
              note: z.string().max(200).optional(),
            })
            .openapi('NewRelayNetwork'),
        ),
      },
    },
    responses: {
      201: { description: 'registered', ...json(Network) },
      ...problemResponses(400, 401, 403, 409, 422),
    },
  }),
  listNetworks: createRoute({
    method: 'get',
    path: '/v1/relay-networks',
    tags: ['outbound'],
    summary: "The tenant's relay networks",
    responses: {
      200: {
        description: 'every network',
        ...json(z.object({ items: z.array(Network) }).openapi('RelayNetworks')),
      },
      ...problemResponses(401),
    },
  }),
  removeNetwork: createRoute({
    method: 'delete',
    path: '/v1/relay-networks/{id}',
    tags: ['outbound'],
    summary: 'Stop relaying from a network',
    request: { params: IdParam },
    responses: { 204: { description: 'removed' }, ...problemResponses(401, 403, 404) },
  }),
  getSettings: createRoute({
    method: 'get',
    path: '/v1/outbound-settings',
    tags: ['outbound'],
    summary: 'Outbound settings: the spam threshold and the sender pool',
    responses: { 200: { description: 'the settings', ...json(OutboundSettings) }, ...problemResponses(401) },
  }),
  putSettings: createRoute({
    method: 'put',
    path: '/v1/outbound-settings',
    tags: ['outbound'],
    summary: "Set the score at or above which outbound mail is held (null: Moat's default)",
    request: {
      body: {
        required: true,
        ...json(z.object({ spamThreshold: z.number().min(-100).max(1000).nullable() }).strict()),
      },
    },
    responses: {
      200: { description: 'the settings', ...json(OutboundSettings) },
      ...problemResponses(400, 401, 403),
    },
  }),
  events: createRoute({
    method: 'get',
    path: '/v1/events',
    tags: ['outbound'],
    summary: 'Events for webhooks: outbound mail held, credentials suspended; newest first',
    request: { query: PageQuery },
    responses: {
      200: { description: 'a page of events', ...json(pageOf(TenantEvent, 'TenantEventPage')) },
      ...problemResponses(400, 401),
    },
  }),
}

export function registerOutbound(app: Api, { db }: ApiDeps): void {
  app.openapi(routes.createCredential, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const body = c.req.valid('json')
    const created = await createSmtpCredential(db, { tenantId, actor, ...body })
    return c.json(
      {
        username: created.username,
        password: created.password,
        credential: credentialOut(created.credential),
      },
      201,
    )
  })
  app.openapi(routes.listCredentials, async (c) => {
    const { tenantId } = caller(c)
    const { limit, cursor } = c.req.valid('query')
    const { items, nextCursor } = page(
      await listSmtpCredentials(db, { tenantId, limit: limit + 1, cursor }),
      limit,
    )
    return c.json({ items: items.map(credentialOut), nextCursor }, 200)
  })
  app.openapi(routes.getCredential, async (c) => {
    const { tenantId } = caller(c)
    return c.json(credentialOut(await getSmtpCredential(db, tenantId, c.req.valid('param').id)), 200)
  })
  app.openapi(routes.revokeCredential, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    await revokeSmtpCredential(db, { tenantId, id: c.req.valid('param').id, actor })
    return c.body(null, 204)
  })
  app.openapi(routes.enableCredential, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const row = await enableSmtpCredential(db, { tenantId, id: c.req.valid('param').id, actor })
    return c.json(credentialOut(row), 200)
  })
  app.openapi(routes.addNetwork, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const row = await addRelayNetwork(db, { tenantId, actor, ...c.req.valid('json') })
    return c.json(networkOut(row), 201)
  })
  app.openapi(routes.listNetworks, async (c) => {
    const { tenantId } = caller(c)
    return c.json({ items: (await listRelayNetworks(db, tenantId)).map(networkOut) }, 200)
  })
  app.openapi(routes.removeNetwork, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    await removeRelayNetwork(db, { tenantId, id: c.req.valid('param').id, actor })
    return c.body(null, 204)
  })
  app.openapi(routes.getSettings, async (c) => {
    const { tenantId } = caller(c)
    return c.json(await getOutboundSettings(db, tenantId), 200)
  })
  app.openapi(routes.putSettings, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    await setOutboundSpamThreshold(db, { tenantId, actor, spamThreshold: c.req.valid('json').spamThreshold })
    return c.json(await getOutboundSettings(db, tenantId), 200)
  })
  app.openapi(routes.events, async (c) => {
    const { tenantId } = caller(c)
    const { limit, cursor } = c.req.valid('query')
    const { items, nextCursor } = page(
      await listTenantEvents(db, { tenantId, limit: limit + 1, cursor }),
      limit,
    )
    return c.json(
      {
        items: items.map((e) => ({
          id: e.id,
          kind: e.kind,
          payload: e.payload,
          createdAt: iso(e.createdAt),
        })),
        nextCursor,
      },
      200,
    )
  })
}
