import { createRoute, z } from '@hono/zod-openapi'
import {
  deleteQuarantined,
  getMessage,
  type Message,
  MoatError,
  purgeRawObject,
  searchMessages,
} from '@moat/core'
import { readMessage } from '@moat/detect'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { feedbackDeps, mailDeps } from '../feedback'
import { problemResponses, toProblem } from '../problems'
import { IdParam, json, page, pageOf } from '../schemas'
import { MessageSummary, messageOut, SearchQuery } from './messages'

/** The plain-text preview is cut at this many characters; HTML is never rendered or converted. */
export const PREVIEW_CHARS = 20 * 1024

const QuarantineQuery = SearchQuery.extend({
  reason: z.enum(['virus', 'spam']).optional().openapi({
    description: 'virus: quarantined for a virus; spam: for its score or a block-list entry',
  }),
  minScore: z.coerce.number().optional().openapi({ description: 'spam score at or above' }),
})

const Preview = MessageSummary.extend({
  headers: z
    .array(z.object({ name: z.string(), value: z.string() }))
    .openapi({ description: 'the header fields as received, in order' }),
  text: z.string().openapi({ description: 'the plain-text part only, never the HTML; see `truncated`' }),
  truncated: z.boolean(),
  hasHtml: z.boolean().openapi({ description: 'the message has an HTML part, which is not shown' }),
  attachments: z.array(z.object({ filename: z.string(), contentType: z.string(), size: z.number() })),
}).openapi('QuarantinedMessage')

const Released = z
  .object({ id: z.string(), status: z.string(), learnt: z.boolean() })
  .openapi('Released', { description: 'queued for delivery; `learnt`: the model learnt it was ham' })

const Ids = z.object({ ids: z.array(z.string().min(1)).min(1).max(100) })
const BulkResult = z
  .object({
    items: z.array(
      z.object({
        id: z.string(),
        ok: z.boolean(),
        status: z.string().optional().openapi({ description: "the message's status now, when ok" }),
        problem: z
          .object({ type: z.string(), status: z.number().int(), detail: z.string() })
          .optional()
          .openapi({ description: 'why not, when not ok' }),
      }),
    ),
  })
  .openapi('BulkResult', { description: 'one answer per id, in the order given' })

const ForceBody = z
  .object({
    force: z.boolean().default(false).openapi({
      description: 'release a message that carries a virus (owners and admins only)',
    }),
  })
  .openapi('ReleaseOptions')

const routes = {
  list: createRoute({
    method: 'get',
    path: '/v1/quarantine',
    tags: ['quarantine'],
    summary: 'Quarantined messages, newest first',
    request: { query: QuarantineQuery },
    responses: {
      200: { description: 'a page of messages', ...json(pageOf(MessageSummary, 'QuarantinePage')) },
      ...problemResponses(400, 401),
    },
  }),
  get: createRoute({
    method: 'get',
    path: '/v1/quarantine/{id}',
    tags: ['quarantine'],
    summary: 'A quarantined message: its headers and a safe plain-text preview',
    request: { params: IdParam },
    responses: { 200: { description: 'the message', ...json(Preview) }, ...problemResponses(401, 404) },
  }),
  raw: createRoute({
    method: 'get',
    path: '/v1/quarantine/{id}/raw',
    tags: ['quarantine'],
    summary: 'Download the message as received (.eml)',
    request: { params: IdParam },
    responses: {
      200: {
        description: 'the raw message, as an attachment',
        content: { 'message/rfc822': { schema: z.string().openapi({ format: 'binary' }) } },
      },
      ...problemResponses(401, 404),
    },
  }),
  release: createRoute({
    method: 'post',
    path: '/v1/quarantine/{id}/release',
    tags: ['quarantine'],
    summary: "Release: deliver it to its recipients and teach the tenant's model that it was ham",
    request: { params: IdParam, body: { required: false, ...json(ForceBody) } },
    responses: {
      200: { description: 'released', ...json(Released) },
      ...problemResponses(400, 401, 403, 404, 409),
    },
  }),
  remove: createRoute({
    method: 'delete',
    path: '/v1/quarantine/{id}',
    tags: ['quarantine'],
    summary: 'Delete from the quarantine (the message is marked deleted and never delivered)',
    request: { params: IdParam },
    responses: { 204: { description: 'deleted' }, ...problemResponses(401, 403, 404, 409) },
  }),
  releaseMany: createRoute({
    method: 'post',
    path: '/v1/quarantine/release',
    tags: ['quarantine'],
    summary: 'Release several messages (none carrying a virus); answers for each id',
    request: { body: { required: true, ...json(Ids.openapi('MessageIds')) } },
    responses: {
      200: { description: 'the outcome for each id', ...json(BulkResult) },
      ...problemResponses(400, 401, 403),
    },
  }),
  deleteMany: createRoute({
    method: 'post',
    path: '/v1/quarantine/delete',
    tags: ['quarantine'],
    summary: 'Delete several messages from the quarantine; answers for each id',
    request: { body: { required: true, ...json(Ids.openapi('MessageIds')) } },
    responses: {
      200: { description: 'the outcome for each id', ...json(BulkResult) },
      ...problemResponses(400, 401, 403),
    },
  }),
}

export function registerQuarantine(app: Api, deps: ApiDeps): void {
  const { db } = deps

  const quarantined = async (tenantId: string, id: string): Promise<Message> => {
    const m = await getMessage(db, tenantId, id)
    // out of quarantine is as absent from it as never there; the message log still shows it
    if (m.status !== 'quarantined') throw new MoatError('not_found', `no quarantined message ${id}`)
    return m
  }

  const release = async (
    principal: { tenantId: string; actor: string; role: string },
    id: string,
    force: boolean,
  ) => {
    await quarantined(principal.tenantId, id)
    const { releaseMessage } = await import('@moat/scan')
    const r = await releaseMessage(await feedbackDeps(deps), {
      messageId: id,
      tenantId: principal.tenantId,
      actor: principal.actor,
      force,
    })
    return { id, status: r.message.status, learnt: r.learnt }
  }

  /** Deletes from the quarantine and then from the store: a deleted message's content is gone. */
  const remove = async (tenantId: string, id: string, actor: string) => {
    await quarantined(tenantId, id)
    const m = await deleteQuarantined(db, { tenantId, messageId: id, actor })
    try {
      await purgeRawObject(db, mailDeps(deps).store, m.objectKey)
    } catch (err) {
      // the deletion stands; an object left behind is logged for the operator, not an error for the customer
      deps.log?.error(
        { err, messageId: id, objectKey: m.objectKey },
        'could not purge a deleted message’s raw object',
      )
    }
    return m
  }

  const each = async (ids: string[], one: (id: string) => Promise<{ status: string }>) => {
    const items = []
    for (const id of ids) {
      try {
        items.push({ id, ok: true, status: (await one(id)).status })
      } catch (err) {
        const p = toProblem(err)
        if (p.status >= 500) deps.log?.error({ err, messageId: id }, 'bulk quarantine action failed')
        items.push({ id, ok: false, problem: { type: p.type, status: p.status, detail: p.detail } })
      }
    }
    return { items }
  }

  app.openapi(routes.list, async (c) => {
    const { tenantId } = caller(c)
    const { limit, ...filter } = c.req.valid('query')
    const rows = await searchMessages(db, { tenantId, ...filter, status: 'quarantined', limit: limit + 1 })
    const { items, nextCursor } = page(rows, limit)
    return c.json({ items: items.map(messageOut), nextCursor }, 200)
  })

  app.openapi(routes.get, async (c) => {
    const { tenantId } = caller(c)
    const m = await quarantined(tenantId, c.req.valid('param').id)
    const view = await readMessage(await mailDeps(deps).store.get(m.objectKey))
    const headers = [...view.headers].flatMap(([name, values]) => values.map((value) => ({ name, value })))
    return c.json(
      {
        ...messageOut(m),
        headers,
        text: view.text.slice(0, PREVIEW_CHARS),
        truncated: view.text.length > PREVIEW_CHARS,
        hasHtml: view.html.length > 0,
        attachments: view.attachments.map(({ filename, contentType, size }) => ({
          filename,
          contentType,
          size,
        })),
      },
      200,
    )
  })

  app.openapi(routes.raw, async (c) => {
    const { tenantId } = caller(c)
    const m = await quarantined(tenantId, c.req.valid('param').id)
    const raw = await mailDeps(deps).store.get(m.objectKey)
    return c.body(new Uint8Array(raw), 200, {
      'content-type': 'message/rfc822',
      'content-disposition': `attachment; filename="${m.id}.eml"`,
      'x-content-type-options': 'nosniff',
    })
  })

  app.openapi(routes.release, async (c) => {
    const principal = caller(c, 'admin')
    const { force } = c.req.valid('json') ?? { force: false }
    return c.json(await release(principal, c.req.valid('param').id, force), 200)
  })

  app.openapi(routes.remove, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const { id } = c.req.valid('param')
    await remove(tenantId, id, actor)
    return c.body(null, 204)
  })

  app.openapi(routes.releaseMany, async (c) => {
    const principal = caller(c, 'admin')
    return c.json(await each(c.req.valid('json').ids, (id) => release(principal, id, false)), 200)
  })

  app.openapi(routes.deleteMany, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    return c.json(await each(c.req.valid('json').ids, (id) => remove(tenantId, id, actor)), 200)
  })
}
