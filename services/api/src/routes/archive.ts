import { Readable } from 'node:stream'
import { createRoute, z } from '@hono/zod-openapi'
import {
  type ArchiveExport,
  type ArchiveFilter,
  type ArchiveHit,
  type ArchiveHold,
  getArchived,
  getArchiveSettings,
  getExport,
  listHolds,
  mboxChunks,
  placeHold,
  presetOf,
  RETENTION_PRESETS,
  recordArchiveAccess,
  releaseHold,
  searchArchive,
  setArchiveSettings,
  startExport,
} from '@moat/archive'
import { MoatError } from '@moat/core'
import type { Api, ApiDeps } from '../app'
import { caller } from '../auth'
import { mailDeps } from '../feedback'
import { problemResponses } from '../problems'
import { IdParam, iso, json, Timestamp } from '../schemas'

const VERDICTS = ['clean', 'tagged', 'quarantined', 'discarded', 'virus', 'unscanned'] as const

const isoDate = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), 'not an ISO 8601 date')
  .transform((s) => new Date(s))
  .openapi({ type: 'string', format: 'date-time' })

const text = (description: string) => z.string().min(1).max(500).optional().openapi({ description })

/** The search filter as JSON (export and legal-hold bodies). */
const FilterBody = z
  .object({
    q: text('free text: words, "a phrase", -excluded, or; in subject, addresses, attachment names and body'),
    from: text("part of the sender's address or name"),
    to: text("part of a recipient's address or name (envelope, To or Cc)"),
    subject: text('part of the subject'),
    after: isoDate.optional().openapi({ description: 'received at or after' }),
    before: isoDate.optional().openapi({ description: 'received before' }),
    direction: z.enum(['inbound', 'outbound']).optional(),
    verdict: z.enum(VERDICTS).optional(),
    hasAttachment: z.boolean().optional(),
    attachment: text("part of an attachment's file name"),
    minSize: z.number().int().min(0).optional().openapi({ description: 'bytes, at least' }),
    maxSize: z.number().int().min(0).optional().openapi({ description: 'bytes, at most' }),
  })
  .strict()
  .openapi('ArchiveFilter')

/** The same filter as query parameters. */
const FilterQuery = FilterBody.extend({
  hasAttachment: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
  minSize: z.coerce.number().int().min(0).optional().openapi({ description: 'bytes, at least' }),
  maxSize: z.coerce.number().int().min(0).optional().openapi({ description: 'bytes, at most' }),
}).strip()

const SearchQuery = FilterQuery.extend({
  sort: z.enum(['date', 'relevance']).default('date').openapi({ description: 'relevance needs q' }),
  limit: z.coerce.number().int().min(1).max(100).default(25),
  cursor: z.string().min(1).max(1000).optional().openapi({ description: "the previous page's nextCursor" }),
})

const ArchivedSummary = z
  .object({
    id: z.string(),
    messageId: z.string().openapi({ description: 'the message log id it was archived from' }),
    direction: z.string(),
    mailFrom: z.string(),
    rcptTo: z.array(z.string()),
    from: z.string().nullable().openapi({ description: 'the From header' }),
    to: z.string().nullable(),
    cc: z.string().nullable(),
    subject: z.string().nullable(),
    messageIdHeader: z.string().nullable(),
    sentAt: Timestamp.nullable().openapi({ description: 'the Date header' }),
    receivedAt: Timestamp,
    archivedAt: Timestamp,
    verdict: z.enum(VERDICTS),
    spamScore: z.number().nullable(),
    size: z.number().int(),
    hasAttachments: z.boolean(),
    attachmentNames: z.array(z.string()),
    language: z.string().openapi({ description: 'the text-search configuration it was indexed with' }),
    sha256: z.string().openapi({ description: 'of the raw message, as archived' }),
  })
  .openapi('ArchivedMessage')

const Hit = ArchivedSummary.extend({
  snippet: z.string().openapi({
    description: 'a piece of the body around the matches, HTML-escaped, the matches in <mark>…</mark>',
  }),
  rank: z.number().nullable().openapi({ description: 'full-text rank, when q was given' }),
}).openapi('ArchiveHit')

const SearchPage = z
  .object({ items: z.array(Hit), nextCursor: z.string().nullable() })
  .openapi('ArchiveSearchPage')

const ExportOut = z
  .object({
    id: z.string(),
    status: z.enum(['running', 'done', 'failed']),
    filter: z.record(z.string(), z.unknown()),
    total: z.number().int().openapi({ description: 'messages matching when the export started' }),
    written: z.number().int(),
    bytes: z.number().int(),
    error: z.string().nullable(),
    createdAt: Timestamp,
    finishedAt: Timestamp.nullable(),
    download: z.string().nullable().openapi({ description: 'where to fetch the .mbox, once done' }),
  })
  .openapi('ArchiveExport')

const Retention = z.enum(['30d', '1y', '7y', 'unlimited'])
const SettingsOut = z
  .object({
    enabled: z.boolean(),
    retention: z.enum(['30d', '1y', '7y', 'unlimited', 'custom']),
    retentionDays: z.number().int().nullable().openapi({ description: 'null: kept for ever' }),
  })
  .openapi('ArchiveSettings')
const SettingsIn = z
  .object({ enabled: z.boolean().optional(), retention: Retention.optional() })
  .strict()
  .openapi('ArchiveSettingsUpdate')

const HoldOut = z
  .object({
    id: z.string(),
    scope: z.enum(['tenant', 'messages']),
    reason: z.string(),
    filter: z.record(z.string(), z.unknown()).nullable(),
    messageCount: z.number().int(),
    createdBy: z.string(),
    createdAt: Timestamp,
    releasedAt: Timestamp.nullable(),
    releasedBy: z.string().nullable(),
  })
  .openapi('LegalHold')
const HoldIn = z
  .object({
    reason: z.string().min(1).max(500),
    scope: z.enum(['tenant', 'messages']).openapi({
      description:
        'tenant: all of the archive, also what arrives while held; messages: what `filter` matches now',
    }),
    filter: FilterBody.optional(),
  })
  .strict()
  .openapi('LegalHoldCreate')

const mbox = {
  content: { 'application/mbox': { schema: z.string().openapi({ format: 'binary' }) } },
}

const routes = {
  search: createRoute({
    method: 'get',
    path: '/v1/archive/search',
    tags: ['archive'],
    summary: 'Search the archive: free text and filters, by date or relevance, with highlighted snippets',
    request: { query: SearchQuery },
    responses: {
      200: { description: 'a page of hits', ...json(SearchPage) },
      ...problemResponses(400, 401, 422),
    },
  }),
  searchMbox: createRoute({
    method: 'get',
    path: '/v1/archive/search/mbox',
    tags: ['archive'],
    summary: 'Everything a search matches, streamed as one .mbox (mboxrd), oldest first',
    request: { query: FilterQuery },
    responses: { 200: { description: 'the mbox, streamed', ...mbox }, ...problemResponses(400, 401, 403) },
  }),
  get: createRoute({
    method: 'get',
    path: '/v1/archive/messages/{id}',
    tags: ['archive'],
    summary: "One archived message's metadata",
    request: { params: IdParam },
    responses: {
      200: { description: 'the message', ...json(ArchivedSummary) },
      ...problemResponses(401, 404),
    },
  }),
  raw: createRoute({
    method: 'get',
    path: '/v1/archive/messages/{id}/raw',
    tags: ['archive'],
    summary: 'Download the archived message as received (.eml)',
    request: { params: IdParam },
    responses: {
      200: {
        description: 'the raw message',
        content: { 'message/rfc822': { schema: z.string().openapi({ format: 'binary' }) } },
      },
      ...problemResponses(401, 404),
    },
  }),
  startExport: createRoute({
    method: 'post',
    path: '/v1/archive/exports',
    tags: ['archive'],
    summary: 'Export a search as .mbox in the background; poll the export for progress',
    request: { body: { required: true, ...json(FilterBody) } },
    responses: { 202: { description: 'started', ...json(ExportOut) }, ...problemResponses(400, 401, 403) },
  }),
  getExport: createRoute({
    method: 'get',
    path: '/v1/archive/exports/{id}',
    tags: ['archive'],
    summary: "An export's progress",
    request: { params: IdParam },
    responses: { 200: { description: 'the export', ...json(ExportOut) }, ...problemResponses(401, 403, 404) },
  }),
  download: createRoute({
    method: 'get',
    path: '/v1/archive/exports/{id}/download',
    tags: ['archive'],
    summary: "A finished export's .mbox",
    request: { params: IdParam },
    responses: { 200: { description: 'the mbox', ...mbox }, ...problemResponses(401, 403, 404, 409) },
  }),
  getSettings: createRoute({
    method: 'get',
    path: '/v1/archive/settings',
    tags: ['archive'],
    summary: 'Whether mail is archived, and for how long',
    responses: { 200: { description: 'the settings', ...json(SettingsOut) }, ...problemResponses(401) },
  }),
  putSettings: createRoute({
    method: 'put',
    path: '/v1/archive/settings',
    tags: ['archive'],
    summary: 'Turn archiving on or off, or change the retention (30d, 1y, 7y, unlimited)',
    request: { body: { required: true, ...json(SettingsIn) } },
    responses: {
      200: { description: 'the settings now', ...json(SettingsOut) },
      ...problemResponses(400, 401, 403),
    },
  }),
  listHolds: createRoute({
    method: 'get',
    path: '/v1/archive/holds',
    tags: ['archive'],
    summary: 'Legal holds, newest first, released ones included',
    responses: {
      200: { description: 'the holds', ...json(z.object({ items: z.array(HoldOut) }).openapi('LegalHolds')) },
      ...problemResponses(401, 403),
    },
  }),
  placeHold: createRoute({
    method: 'post',
    path: '/v1/archive/holds',
    tags: ['archive'],
    summary: 'Place a legal hold on the whole archive or on what a search matches: the purge skips it',
    request: { body: { required: true, ...json(HoldIn) } },
    responses: { 201: { description: 'placed', ...json(HoldOut) }, ...problemResponses(400, 401, 403, 422) },
  }),
  releaseHold: createRoute({
    method: 'delete',
    path: '/v1/archive/holds/{id}',
    tags: ['archive'],
    summary: 'Release a legal hold (kept in the list, with who released it)',
    request: { params: IdParam },
    responses: {
      200: { description: 'released', ...json(HoldOut) },
      ...problemResponses(401, 403, 404, 409),
    },
  }),
}

type Summary = ArchiveHit['message']

const summaryOut = (m: Summary) => ({
  id: m.id,
  messageId: m.messageId,
  direction: m.direction,
  mailFrom: m.mailFrom,
  rcptTo: m.rcptTo,
  from: m.fromHeader,
  to: m.toHeader,
  cc: m.ccHeader,
  subject: m.subject,
  messageIdHeader: m.messageIdHeader,
  sentAt: iso(m.sentAt),
  receivedAt: iso(m.receivedAt),
  archivedAt: iso(m.archivedAt),
  verdict: m.verdict as (typeof VERDICTS)[number],
  spamScore: m.spamScore,
  size: m.size,
  hasAttachments: m.hasAttachments,
  attachmentNames: m.attachmentNames,
  language: m.language,
  sha256: m.sha256,
})

const exportOut = (e: ArchiveExport) => ({
  id: e.id,
  status: e.status as 'running' | 'done' | 'failed',
  filter: e.query,
  total: e.total,
  written: e.written,
  bytes: e.bytes,
  error: e.error,
  createdAt: iso(e.createdAt),
  finishedAt: iso(e.finishedAt),
  download: e.status === 'done' ? `/v1/archive/exports/${e.id}/download` : null,
})

const holdOut = (h: ArchiveHold) => ({
  id: h.id,
  scope: h.scope as 'tenant' | 'messages',
  reason: h.reason,
  filter: h.query,
  messageCount: h.messageCount,
  createdBy: h.createdBy,
  createdAt: iso(h.createdAt),
  releasedAt: iso(h.releasedAt),
  releasedBy: h.releasedBy,
})

const settingsOut = (s: { enabled: boolean; retentionDays: number | null }) => ({
  enabled: s.enabled,
  retention: presetOf(s.retentionDays),
  retentionDays: s.retentionDays,
})

const mboxHeaders = (name: string) => ({
  'content-type': 'application/mbox',
  'content-disposition': `attachment; filename="${name}.mbox"`,
  'x-content-type-options': 'nosniff',
})

const stripUndefined = (f: Record<string, unknown>): ArchiveFilter =>
  Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as ArchiveFilter

export function registerArchive(app: Api, deps: ApiDeps): void {
  const { db } = deps

  app.openapi(routes.search, async (c) => {
    const { tenantId } = caller(c)
    const { sort, limit, cursor, ...filter } = c.req.valid('query')
    const page = await searchArchive(db, { tenantId, filter: stripUndefined(filter), sort, limit, cursor })
    return c.json(
      {
        items: page.items.map((h) => ({ ...summaryOut(h.message), snippet: h.snippet, rank: h.rank })),
        nextCursor: page.nextCursor,
      },
      200,
    )
  })

  app.openapi(routes.searchMbox, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const filter = stripUndefined(c.req.valid('query'))
    const { store } = mailDeps(deps)
    await recordArchiveAccess(db, {
      tenantId,
      actor,
      action: 'archive.export',
      target: 'search',
      detail: { filter },
    })
    const stream = Readable.from(mboxChunks(db, store, tenantId, filter))
    return c.body(Readable.toWeb(stream) as ReadableStream, 200, mboxHeaders('archive'))
  })

  app.openapi(routes.get, async (c) => {
    const { tenantId } = caller(c)
    return c.json(summaryOut(await getArchived(db, tenantId, c.req.valid('param').id)), 200)
  })

  app.openapi(routes.raw, async (c) => {
    const { tenantId, actor } = caller(c)
    const m = await getArchived(db, tenantId, c.req.valid('param').id)
    const body = await mailDeps(deps).store.stream(m.objectKey)
    await recordArchiveAccess(db, { tenantId, actor, action: 'archive.download', target: m.id })
    return c.body(Readable.toWeb(body) as ReadableStream, 200, {
      'content-type': 'message/rfc822',
      'content-length': String(m.size),
      'content-disposition': `attachment; filename="${m.id}.eml"`,
      'x-content-type-options': 'nosniff',
    })
  })

  app.openapi(routes.startExport, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const filter = stripUndefined(c.req.valid('json'))
    const { record } = await startExport(
      { db, store: mailDeps(deps).store, log: deps.log },
      { tenantId, filter, actor },
    )
    return c.json(exportOut(record), 202)
  })

  app.openapi(routes.getExport, async (c) => {
    const { tenantId } = caller(c, 'admin')
    return c.json(exportOut(await getExport(db, tenantId, c.req.valid('param').id)), 200)
  })

  app.openapi(routes.download, async (c) => {
    const { tenantId } = caller(c, 'admin')
    const e = await getExport(db, tenantId, c.req.valid('param').id)
    if (e.status !== 'done')
      throw new MoatError(
        'conflict',
        `export ${e.id} is ${e.status}`,
        'poll the export until its status is done',
      )
    const body = await mailDeps(deps).store.stream(e.objectKey)
    return c.body(Readable.toWeb(body) as ReadableStream, 200, {
      ...mboxHeaders(e.id),
      'content-length': String(e.bytes),
    })
  })

  app.openapi(routes.getSettings, async (c) => {
    const { tenantId } = caller(c)
    return c.json(settingsOut(await getArchiveSettings(db, tenantId)), 200)
  })

  app.openapi(routes.putSettings, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const body = c.req.valid('json')
    const settings = await setArchiveSettings(db, {
      tenantId,
      actor,
      enabled: body.enabled,
      retentionDays: body.retention === undefined ? undefined : RETENTION_PRESETS[body.retention],
    })
    return c.json(settingsOut(settings), 200)
  })

  app.openapi(routes.listHolds, async (c) => {
    const { tenantId } = caller(c, 'admin')
    return c.json({ items: (await listHolds(db, tenantId)).map(holdOut) }, 200)
  })

  app.openapi(routes.placeHold, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    const body = c.req.valid('json')
    if (body.scope === 'messages' && !body.filter)
      throw new MoatError('invalid', 'a hold on messages needs the search filter that chooses them')
    if (body.scope === 'tenant' && body.filter)
      throw new MoatError('invalid', 'a hold on the whole archive takes no filter', 'use scope messages')
    const hold =
      body.scope === 'tenant'
        ? await placeHold(db, { tenantId, actor, reason: body.reason, scope: 'tenant' })
        : await placeHold(db, {
            tenantId,
            actor,
            reason: body.reason,
            scope: 'messages',
            filter: stripUndefined(body.filter ?? {}),
          })
    return c.json(holdOut(hold), 201)
  })

  app.openapi(routes.releaseHold, async (c) => {
    const { tenantId, actor } = caller(c, 'admin')
    return c.json(holdOut(await releaseHold(db, { tenantId, id: c.req.valid('param').id, actor })), 200)
  })
}
