import { createRoute, z } from '@hono/zod-openapi'
import { getMessage, type Message, type MessageTrace, searchMessages, showMessage } from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { feedbackDeps } from '../feedback'
import { problemResponses } from '../problems'
import { IdParam, iso, json, PageQuery, page, pageOf, Timestamp } from '../schemas'

export const MessageSummary = z
  .object({
    id: z.string(),
    queueId: z.string(),
    direction: z.string(),
    status: z.string().openapi({
      description: 'received, queued, delivered, deferred, failed, quarantined, discarded or deleted',
    }),
    mailFrom: z.string(),
    rcptTo: z.array(z.string()),
    subject: z.string().nullable(),
    size: z.number().int(),
    spamScore: z.number().nullable(),
    action: z.string().nullable().openapi({ description: 'deliver, tag, quarantine or discard' }),
    virusScan: z.string().nullable(),
    virusName: z.string().nullable(),
    receivedAt: Timestamp,
    updatedAt: Timestamp,
  })
  .openapi('MessageSummary')

export const messageOut = (m: Message) => ({
  id: m.id,
  queueId: m.queueId,
  direction: m.direction,
  status: m.status,
  mailFrom: m.mailFrom,
  rcptTo: m.rcptTo,
  subject: m.subject,
  size: m.size,
  spamScore: m.spamScore,
  action: m.action,
  virusScan: m.virusScan,
  virusName: m.virusName,
  receivedAt: iso(m.receivedAt),
  updatedAt: iso(m.updatedAt),
})

const Trace = z
  .object({
    message: MessageSummary.extend({
      messageIdHeader: z.string().nullable(),
      clientIp: z.string().nullable(),
      clientHelo: z.string().nullable(),
    }),
    recipients: z.array(
      z.object({
        address: z.string(),
        status: z.string(),
        attempts: z.number().int(),
        lastReply: z.string().nullable(),
        updatedAt: Timestamp,
      }),
    ),
    events: z
      .array(
        z.object({
          at: Timestamp,
          kind: z.string().openapi({ example: 'scanned' }),
          detail: z.record(z.string(), z.unknown()).openapi({
            description: 'what happened; a `scanned` event carries the verdict, its score and `symbols`',
          }),
        }),
      )
      .openapi({ description: 'every step, oldest first' }),
    attempts: z.array(
      z.object({
        at: Timestamp,
        recipients: z.array(z.string()),
        host: z.string(),
        port: z.number().int(),
        outcome: z.string(),
        code: z.number().int().nullable(),
        reply: z.string(),
        durationMs: z.number().int(),
      }),
    ),
  })
  .openapi('MessageTrace')

/** date filters: an ISO 8601 date or date-time */
const DateQuery = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), 'not an ISO 8601 date')
  .transform((s) => new Date(s))
  .optional()

export const SearchQuery = PageQuery.extend({
  sender: z.string().min(1).optional().openapi({ description: 'the envelope sender, exactly' }),
  recipient: z.string().min(1).optional().openapi({ description: 'one envelope recipient, exactly' }),
  from: DateQuery.openapi({ type: 'string', format: 'date-time', description: 'received at or after' }),
  to: DateQuery.openapi({ type: 'string', format: 'date-time', description: 'received before' }),
})

const MessageQuery = SearchQuery.extend({
  subject: z.string().min(1).optional().openapi({ description: 'a substring of the subject' }),
  status: z.string().min(1).optional(),
  direction: z.enum(['inbound', 'outbound']).optional(),
})

const routes = {
  list: createRoute({
    method: 'get',
    path: '/v1/messages',
    tags: ['messages'],
    summary: "Search the tenant's messages, newest first",
    request: { query: MessageQuery },
    responses: {
      200: { description: 'a page of messages', ...json(pageOf(MessageSummary, 'MessagePage')) },
      ...problemResponses(400, 401),
    },
  }),
  get: createRoute({
    method: 'get',
    path: '/v1/messages/{id}',
    tags: ['messages'],
    summary: "One message's whole trace: recipients, events (the verdict and its symbols), delivery attempts",
    request: { params: IdParam },
    responses: { 200: { description: 'the trace', ...json(Trace) }, ...problemResponses(401, 404) },
  }),
  reportSpam: createRoute({
    method: 'post',
    path: '/v1/messages/{id}/report-spam',
    tags: ['messages'],
    summary: "This is spam: the tenant's model learns it (the message itself stays as it is)",
    request: { params: IdParam },
    responses: {
      200: {
        description: 'whether the model learnt (a second report of the same message changes nothing)',
        ...json(z.object({ id: z.string(), learnt: z.boolean() }).openapi('Feedback')),
      },
      ...problemResponses(401, 403, 404),
    },
  }),
}

const traceOut = (t: MessageTrace) => ({
  message: {
    ...messageOut(t.message),
    messageIdHeader: t.message.messageIdHeader,
    clientIp: t.message.clientIp,
    clientHelo: t.message.clientHelo,
  },
  recipients: t.recipients.map((r) => ({
    address: r.address,
    status: r.status,
    attempts: r.attempts,
    lastReply: r.lastReply,
    updatedAt: iso(r.updatedAt),
  })),
  events: t.events.map((e) => ({ at: iso(e.at), kind: e.kind, detail: e.detail })),
  attempts: t.attempts.map((a) => ({
    at: iso(a.at),
    recipients: a.recipients,
    host: a.host,
    port: a.port,
    outcome: a.outcome,
    code: a.code,
    reply: a.reply,
    durationMs: a.durationMs,
  })),
})

export function registerMessages(app: Api, deps: ApiDeps): void {
  const { db } = deps
  app.openapi(routes.list, async (c) => {
    const { tenantId } = caller(c)
    const { limit, ...filter } = c.req.valid('query')
    const { items, nextCursor } = page(
      await searchMessages(db, { tenantId, ...filter, limit: limit + 1 }),
      limit,
    )
    return c.json({ items: items.map(messageOut), nextCursor }, 200)
  })

  app.openapi(routes.get, async (c) => {
    const { tenantId } = caller(c)
    const message = await getMessage(db, tenantId, c.req.valid('param').id)
    const [trace] = await showMessage(db, message.id, tenantId)
    if (!trace) throw new Error('showMessage found no message that getMessage found')
    return c.json(traceOut(trace), 200)
  })

  app.openapi(routes.reportSpam, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const { id } = c.req.valid('param')
    await getMessage(db, tenantId, id)
    const { reportSpam } = await import('@moat/scan')
    const r = await reportSpam(await feedbackDeps(deps), { messageId: id, tenantId, actor })
    return c.json({ id, learnt: r.learnt }, 200)
  })
}
