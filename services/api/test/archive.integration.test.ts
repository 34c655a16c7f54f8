import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_BASE } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let t: Awaited<ReturnType<TestApi['tenant']>>
let viewer: string
/** archived ids by label */
const arc: Record<string, string> = {}

const pdf = (name: string, text: string) => [
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b"',
  '',
  '--b',
  'Content-Type: text/plain; charset=utf-8',
  '',
  text,
  '--b',
  `Content-Type: application/pdf; name="${name}"`,
  `Content-Disposition: attachment; filename="${name}"`,
  'Content-Transfer-Encoding: base64',
  '',
  'JVBERi0xLjQK',
  '--b--',
]

beforeAll(async () => {
  api = await startTestApi()
  t = await api.tenant('archivist')
  viewer = (await api.call('POST', '/v1/api-keys', { key: t.key, body: { name: 'ro', role: 'viewer' } })).body
    .key
  const add = async (
    label: string,
    o: Parameters<TestApi['message']>[1],
    setup?: (id: string) => Promise<void>,
  ) => {
    const id = await api.message(t.tenantId, o)
    await setup?.(id)
    arc[label] = await api.archive(id)
  }
  const at = (days: number) => async (id: string) => {
    await api.database
      .sql`update messages set received_at = now() - make_interval(days => ${days}) where id = ${id}`
  }
  await add(
    'invoice',
    {
      status: 'delivered',
      from: 'billing@northwind.example',
      subject: 'Invoice 2291 for October',
      body: 'unused',
      headers: pdf('invoice-2291.pdf', 'Please pay invoice 2291 by the end of the month.'),
    },
    at(10),
  )
  await add(
    'lunch',
    {
      status: 'delivered',
      from: 'jane@friends.example',
      to: 'bob@archivist-mail.test',
      subject: 'Lunch on Friday?',
      body: 'Shall we meet at noon?\r\nFrom there we can walk to the office.\r\n>From the station too.',
    },
    at(5),
  )
  await add(
    'spam',
    {
      subject: 'Cheap pills',
      body: 'Buy pills now: the invoice <img src=x onerror=alert(1)> is attached & paid',
    },
    at(3),
  )
  await add(
    'outbound',
    {
      status: 'delivered',
      from: 'bob@archivist.test',
      to: 'client@partner.example',
      subject: 'Re: proposal',
      body: 'Our proposal is attached.',
    },
    async (id) => {
      await at(1)(id)
      await api.database.sql`update messages set direction = 'outbound' where id = ${id}`
    },
  )
})
afterAll(async () => {
  await api?.close()
})

const search = async (query: string, key = t.key) => api.call('GET', `/v1/archive/search?${query}`, { key })
const ids = (body: { items: { id: string }[] }) => body.items.map((h) => h.id)

describe('archive search', () => {
  it('finds by free text with highlighted, HTML-escaped snippets, newest first', async () => {
    const res = await search('q=invoice', viewer)
    expect(res.status).toBe(200)
    expect(ids(res.body)).toEqual([arc.spam, arc.invoice])
    const [spam, invoice] = res.body.items
    expect(invoice).toMatchObject({
      from: 'billing@northwind.example',
      subject: 'Invoice 2291 for October',
      verdict: 'clean',
      hasAttachments: true,
      attachmentNames: ['invoice-2291.pdf'],
      direction: 'inbound',
    })
    expect(invoice.snippet).toBe('Please pay <mark>invoice</mark> 2291 by the end of the month')
    expect(spam.verdict).toBe('quarantined')
    // the body's markup comes back as text, never as markup
    expect(spam.snippet).toBe(
      'pills now: the <mark>invoice</mark> &lt;img src=x onerror=alert(1)&gt; is attached &amp; paid',
    )
  })

  it('sorts by relevance: a subject match beats a body match', async () => {
    const res = await search('q=invoice&sort=relevance')
    expect(ids(res.body)).toEqual([arc.invoice, arc.spam])
    expect(res.body.items[0].rank).toBeGreaterThan(res.body.items[1].rank)
  })

  it('filters by sender, recipient, subject, dates, direction, verdict, attachments and size', async () => {
    const q = async (query: string) => ids((await search(query)).body)
    expect(await q('from=NORTHWIND')).toEqual([arc.invoice])
    expect(await q('to=bob@archivist-mail')).toEqual([arc.lunch])
    expect(await q('subject=friday')).toEqual([arc.lunch])
    expect(await q('direction=outbound')).toEqual([arc.outbound])
    expect(await q('verdict=quarantined')).toEqual([arc.spam])
    expect(await q('hasAttachment=true')).toEqual([arc.invoice])
    expect(await q('attachment=2291')).toEqual([arc.invoice])
    expect(await q('attachment=%25')).toEqual([])
    const sixDaysAgo = new Date(Date.now() - 6 * 86_400_000).toISOString()
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString()
    expect(await q(`after=${sixDaysAgo}&before=${twoDaysAgo}`)).toEqual([arc.spam, arc.lunch])
    const sizes = (await search('limit=100')).body.items
      .map((h: { size: number }) => h.size)
      .sort((a: number, b: number) => a - b)
    expect(await q(`minSize=${sizes.at(-1)}`)).toEqual([arc.invoice])
    expect((await q(`maxSize=${sizes[0]}`)).length).toBe(1)
    expect(await q('q=invoice&from=jane')).toEqual([])
  })

  it('pages by cursor without repeating or skipping, by date and by relevance', async () => {
    for (const query of ['limit=1', 'limit=1&q=invoice or proposal or lunch&sort=relevance']) {
      const seen: string[] = []
      let cursor: string | null = null
      do {
        const res = await search(`${query}${cursor ? `&cursor=${cursor}` : ''}`)
        expect(res.status).toBe(200)
        seen.push(...ids(res.body))
        cursor = res.body.nextCursor
      } while (cursor)
      const all = ids((await search(query.replace('limit=1', 'limit=100'))).body)
      expect(seen).toEqual(all)
      expect(new Set(seen).size).toBe(seen.length)
    }
  })

  it('answers bad input with exact problems', async () => {
    const rel = await search('sort=relevance')
    expect(rel.status).toBe(422)
    expect(rel.body).toMatchObject({
      type: `${PROBLEM_BASE}invalid`,
      detail: 'sorting by relevance needs free text (q)',
      hint: 'add q, or sort by date',
    })
    const cursor = await search('cursor=bm90IGEgY3Vyc29y')
    expect(cursor.status).toBe(422)
    expect(cursor.body.detail).toBe('the cursor is not one this API gave out')
    const bad = await search('after=yesterday&verdict=evil&limit=1000')
    expect(bad.status).toBe(400)
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'query.after',
      'query.limit',
      'query.verdict',
    ])
  })
})

describe('one archived message', () => {
  it('gives its metadata and its raw .eml, byte for byte, and audits the download', async () => {
    const meta = await api.call('GET', `/v1/archive/messages/${arc.lunch}`, { key: viewer })
    expect(meta.status).toBe(200)
    expect(meta.body).toMatchObject({ id: arc.lunch, subject: 'Lunch on Friday?', verdict: 'clean' })
    const res = await fetch(`${api.url}/v1/archive/messages/${arc.lunch}/raw`, {
      headers: { authorization: `Bearer ${viewer}` },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('message/rfc822')
    const raw = Buffer.from(await res.arrayBuffer())
    const [row] = await api.database
      .sql`select object_key, sha256 from archived_messages where id = ${arc.lunch ?? ''}`
    expect(raw.equals(await api.store.get(row?.object_key))).toBe(true)
    const { createHash } = await import('node:crypto')
    expect(createHash('sha256').update(raw).digest('hex')).toBe(meta.body.sha256)
    const audit = await api.call('GET', '/v1/audit', { key: t.key })
    expect(audit.body.items).toEqual(
      expect.arrayContaining([expect.objectContaining({ action: 'archive.download', target: arc.lunch })]),
    )
    const missing = await api.call('GET', '/v1/archive/messages/arc_nope', { key: t.key })
    expect(missing.status).toBe(404)
    expect(missing.body.detail).toBe('no archived message arc_nope')
  })
})

describe('mbox export', () => {
  const entries = (mbox: string) =>
    mbox.split('\n').filter((l) => /^From \S+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/.test(l))

  it('streams a search as mboxrd, oldest first, escaping From lines in bodies', async () => {
    const res = await fetch(`${api.url}/v1/archive/search/mbox?q=invoice or lunch`, {
      headers: { authorization: `Bearer ${t.key}` },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/mbox')
    const mbox = await res.text()
    expect(entries(mbox)).toHaveLength(3)
    expect(mbox.startsWith('From billing@northwind.example ')).toBe(true)
    // mboxrd: one more > on every line that starts with >*From, so readers can undo it exactly
    expect(mbox).toContain('\n>From there we can walk to the office.\n>>From the station too.\n')
    expect(mbox).not.toContain('\r\n')
    const viewerTry = await fetch(`${api.url}/v1/archive/search/mbox`, {
      headers: { authorization: `Bearer ${viewer}` },
    })
    expect(viewerTry.status).toBe(403)
  })

  it('runs a long export as a job whose progress can be polled, then serves the file', async () => {
    const start = await api.call('POST', '/v1/archive/exports', {
      key: t.key,
      body: { q: 'invoice or lunch' },
    })
    expect(start.status).toBe(202)
    expect(start.body).toMatchObject({
      status: 'running',
      total: 3,
      filter: { q: 'invoice or lunch' },
      download: null,
    })
    let job = start.body
    for (let i = 0; i < 100 && job.status === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 50))
      job = (await api.call('GET', `/v1/archive/exports/${start.body.id}`, { key: t.key })).body
    }
    expect(job).toMatchObject({
      status: 'done',
      total: 3,
      written: 3,
      download: `/v1/archive/exports/${job.id}/download`,
    })
    const file = await fetch(`${api.url}${job.download}`, { headers: { authorization: `Bearer ${t.key}` } })
    expect(file.status).toBe(200)
    const body = await file.text()
    expect(Buffer.byteLength(body)).toBe(job.bytes)
    const streamed = await (
      await fetch(`${api.url}/v1/archive/search/mbox?q=invoice or lunch`, {
        headers: { authorization: `Bearer ${t.key}` },
      })
    ).text()
    expect(body).toBe(streamed)
    const bad = await api.call('POST', '/v1/archive/exports', { key: t.key, body: { q: 'x', colour: 'red' } })
    expect(bad.status).toBe(400)
  })
})

describe('settings and legal holds', () => {
  it('archives by default and keeps everything until the tenant picks a retention', async () => {
    expect((await api.call('GET', '/v1/archive/settings', { key: viewer })).body).toEqual({
      enabled: true,
      retention: 'unlimited',
      retentionDays: null,
    })
    const set = await api.call('PUT', '/v1/archive/settings', { key: t.key, body: { retention: '7y' } })
    expect(set.body).toEqual({ enabled: true, retention: '7y', retentionDays: 2557 })
    expect(
      (await api.call('PUT', '/v1/archive/settings', { key: viewer, body: { retention: '30d' } })).status,
    ).toBe(403)
    const bad = await api.call('PUT', '/v1/archive/settings', { key: t.key, body: { retention: '2y' } })
    expect(bad.status).toBe(400)
    expect(bad.body.errors).toMatchObject([{ field: 'body.retention' }])
    await api.call('PUT', '/v1/archive/settings', { key: t.key, body: { retention: 'unlimited' } })
  })

  it('places a hold on what a search matches and releases it once', async () => {
    const placed = await api.call('POST', '/v1/archive/holds', {
      key: t.key,
      body: { reason: 'Northwind dispute', scope: 'messages', filter: { from: 'northwind' } },
    })
    expect(placed.status).toBe(201)
    expect(placed.body).toMatchObject({
      scope: 'messages',
      messageCount: 1,
      filter: { from: 'northwind' },
      releasedAt: null,
    })
    const noFilter = await api.call('POST', '/v1/archive/holds', {
      key: t.key,
      body: { reason: 'x', scope: 'messages' },
    })
    expect(noFilter.status).toBe(422)
    expect(noFilter.body.detail).toBe('a hold on messages needs the search filter that chooses them')
    const list = await api.call('GET', '/v1/archive/holds', { key: t.key })
    expect(list.body.items.map((h: { id: string }) => h.id)).toContain(placed.body.id)
    const released = await api.call('DELETE', `/v1/archive/holds/${placed.body.id}`, { key: t.key })
    expect(released.status).toBe(200)
    expect(released.body.releasedBy).toMatch(/^key:/)
    const again = await api.call('DELETE', `/v1/archive/holds/${placed.body.id}`, { key: t.key })
    expect(again.status).toBe(409)
    expect(again.body.detail).toBe(`legal hold ${placed.body.id} was already released`)
  })
})
