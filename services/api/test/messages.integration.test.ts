import { messages } from '@moat/db'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PREVIEW_CHARS } from '../src/routes/quarantine'
import { startTestApi, type TestApi } from './api'

let api: TestApi
let t: Awaited<ReturnType<TestApi['tenant']>>
let viewer: string
beforeAll(async () => {
  api = await startTestApi()
  t = await api.tenant('msgs')
  viewer = (await api.call('POST', '/v1/api-keys', { key: t.key, body: { name: 'ro', role: 'viewer' } })).body
    .key
})
afterAll(async () => {
  await api?.close()
})

const ids = (body: { items: { id: string }[] }) => body.items.map((m) => m.id)

describe('message log', () => {
  it('filters by sender, recipient, subject, status and date, newest first', async () => {
    const one = await api.message(t.tenantId, {
      status: 'delivered',
      from: 'Ann@Example.org',
      subject: 'Invoice 7',
    })
    const two = await api.message(t.tenantId, {
      status: 'delivered',
      to: 'bob@msgs-log.test',
      subject: 'lunch?',
    })
    const three = await api.message(t.tenantId, { subject: 'invoice overdue' })
    const all = await api.call('GET', '/v1/messages', { key: viewer })
    expect(all.status).toBe(200)
    expect(ids(all.body).slice(0, 3)).toEqual([three, two, one])

    const q = async (query: string) =>
      ids((await api.call('GET', `/v1/messages?${query}`, { key: t.key })).body)
    expect(await q('sender=ann@example.org')).toEqual([one])
    expect(await q('recipient=BOB@msgs-log.test')).toEqual([two])
    expect(await q('subject=INVOICE')).toEqual([three, one])
    expect(await q('subject=%25')).toEqual([])
    expect(await q('status=quarantined&subject=invoice')).toEqual([three])
    expect(await q('direction=outbound')).toEqual([])
    expect(await q('from=2999-01-01')).toEqual([])
    expect((await q('to=2999-01-01T00:00:00Z')).length).toBeGreaterThanOrEqual(3)
    const bad = await api.call('GET', '/v1/messages?from=yesterday', { key: t.key })
    expect(bad.status).toBe(400)
    expect(bad.body.errors).toMatchObject([{ field: 'query.from' }])
  })

  it('pages by cursor without repeating or skipping a message', async () => {
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const res = await api.call('GET', `/v1/messages?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        key: t.key,
      })
      expect(res.body.items.length).toBeLessThanOrEqual(2)
      seen.push(...ids(res.body))
      cursor = res.body.nextCursor
    } while (cursor)
    const all = ids((await api.call('GET', '/v1/messages?limit=200', { key: t.key })).body)
    expect(seen).toEqual(all)
    expect(new Set(seen).size).toBe(seen.length)
  })

  it('one message: the whole trace, with the scanned verdict and its symbols', async () => {
    const id = await api.message(t.tenantId, { score: 15 })
    const res = await api.call('GET', `/v1/messages/${id}`, { cookie: t.cookie })
    expect(res.status).toBe(200)
    expect(res.body.message).toMatchObject({ id, status: 'quarantined', spamScore: 15 })
    expect(res.body.recipients).toMatchObject([{ address: `user@${t.tenantId}.test`, status: 'quarantined' }])
    expect(res.body.events).toMatchObject([
      { kind: 'scanned', detail: { score: 15, symbols: [{ name: 'BAYES_SPAM' }] } },
    ])
    expect(res.body.attempts).toEqual([])
    const missing = await api.call('GET', '/v1/messages/msg_nope', { key: t.key })
    expect(missing.status).toBe(404)
    expect(missing.body.detail).toBe('no message msg_nope')
  })

  it('report-spam teaches the model once; a viewer may not', async () => {
    const id = await api.message(t.tenantId, { status: 'delivered' })
    expect((await api.call('POST', `/v1/messages/${id}/report-spam`, { key: viewer })).status).toBe(403)
    const first = await api.call('POST', `/v1/messages/${id}/report-spam`, { key: t.key })
    expect(first.status).toBe(200)
    expect(first.body).toEqual({ id, learnt: true })
    const again = await api.call('POST', `/v1/messages/${id}/report-spam`, { key: t.key })
    expect(again.body).toEqual({ id, learnt: false })
    const trace = await api.call('GET', `/v1/messages/${id}`, { key: t.key })
    expect(trace.body.events.map((e: { kind: string }) => e.kind)).toEqual([
      'scanned',
      'reported_spam',
      'reported_spam',
    ])
  })
})

describe('quarantine', () => {
  it('lists quarantined messages only, filtered by reason and score', async () => {
    const spam = await api.message(t.tenantId, { score: 30, subject: 'q-spam' })
    const virus = await api.message(t.tenantId, { virus: 'Eicar-Test-Signature', subject: 'q-virus' })
    await api.message(t.tenantId, { status: 'delivered', subject: 'q-clean' })
    const list = await api.call('GET', '/v1/quarantine?limit=200', { key: viewer })
    expect(list.status).toBe(200)
    expect(list.body.items.every((m: { status: string }) => m.status === 'quarantined')).toBe(true)
    expect(ids(list.body)).toEqual(expect.arrayContaining([spam, virus]))
    expect(ids((await api.call('GET', '/v1/quarantine?reason=virus', { key: t.key })).body)).toEqual([virus])
    const high = ids((await api.call('GET', '/v1/quarantine?minScore=25', { key: t.key })).body)
    expect(high).toEqual([spam])
  })

  it('shows headers and the plain text only, capped; never the HTML', async () => {
    const html = '<script>alert(1)</script><p>hidden</p>'
    const body = [
      '--b',
      'Content-Type: text/plain',
      '',
      'x'.repeat(PREVIEW_CHARS + 100),
      '--b',
      'Content-Type: text/html',
      '',
      html,
      '--b--',
    ].join('\r\n')
    const id = await api.message(t.tenantId, {
      body,
      headers: ['MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="b"'],
      subject: 'preview',
    })
    const res = await api.call('GET', `/v1/quarantine/${id}`, { key: viewer })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ id, subject: 'preview', truncated: true, hasHtml: true })
    expect(res.body.text).toBe('x'.repeat(PREVIEW_CHARS))
    expect(JSON.stringify(res.body)).not.toContain('alert(1)')
    expect(res.body.headers).toEqual(expect.arrayContaining([{ name: 'subject', value: 'preview' }]))
  })

  it('downloads the raw message as an .eml attachment', async () => {
    const id = await api.message(t.tenantId, { body: 'raw body here' })
    const res = await api.call('GET', `/v1/quarantine/${id}/raw`, { key: viewer })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('message/rfc822')
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${id}.eml"`)
    expect(res.body).toContain('raw body here')
  })

  it('release: viewers 403; queued for delivery and taught as ham; then gone from the quarantine', async () => {
    const id = await api.message(t.tenantId)
    const denied = await api.call('POST', `/v1/quarantine/${id}/release`, { key: viewer })
    expect(denied.status).toBe(403)
    const before = (await api.deliverQueue.depth()).visible
    const res = await api.call('POST', `/v1/quarantine/${id}/release`, { key: t.key })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ id, status: 'queued', learnt: true })
    expect((await api.deliverQueue.depth()).visible).toBe(before + 1)
    const trace = await api.call('GET', `/v1/messages/${id}`, { key: t.key })
    expect(trace.body.recipients).toMatchObject([{ status: 'pending' }])
    expect(trace.body.events.at(-1)).toMatchObject({ kind: 'released', detail: { learnt: 'ham' } })
    expect((await api.call('POST', `/v1/quarantine/${id}/release`, { key: t.key })).status).toBe(404)
    expect((await api.call('GET', `/v1/quarantine/${id}`, { key: t.key })).status).toBe(404)
    const audit = await api.call('GET', '/v1/audit', { key: t.key })
    expect(audit.body.items[0]).toMatchObject({
      action: 'quarantine.release',
      actor: `key:${t.keyId}`,
      target: id,
      detail: { from: 'sender@spam.example', subject: 'cheap pills', score: 12 },
    })
  })

  it('a message with a virus is released only with force', async () => {
    const id = await api.message(t.tenantId, { virus: 'Eicar-Test-Signature' })
    const refused = await api.call('POST', `/v1/quarantine/${id}/release`, { key: t.key })
    expect(refused.status).toBe(409)
    expect(refused.body.detail).toContain('carries a virus')
    const forced = await api.call('POST', `/v1/quarantine/${id}/release`, {
      key: t.key,
      body: { force: true },
    })
    expect(forced.status).toBe(200)
    expect(forced.body).toEqual({ id, status: 'queued', learnt: false })
  })

  it('delete: viewers 403; the message and its recipients become deleted', async () => {
    const id = await api.message(t.tenantId)
    expect((await api.call('DELETE', `/v1/quarantine/${id}`, { key: viewer })).status).toBe(403)
    expect((await api.call('DELETE', `/v1/quarantine/${id}`, { key: t.key })).status).toBe(204)
    const trace = await api.call('GET', `/v1/messages/${id}`, { key: t.key })
    expect(trace.body.message.status).toBe('deleted')
    expect(trace.body.recipients).toMatchObject([{ status: 'deleted' }])
    expect(trace.body.events.at(-1)).toMatchObject({ kind: 'deleted', detail: { actor: `key:${t.keyId}` } })
    expect((await api.call('DELETE', `/v1/quarantine/${id}`, { key: t.key })).status).toBe(404)
    // its content is gone from the store, and the audit log says who deleted it
    await expect(api.store.get(`inbound/${id}.eml`)).rejects.toThrow('object not found')
    const audit = await api.call('GET', '/v1/audit', { key: t.key })
    expect(audit.body.items[0]).toMatchObject({
      action: 'quarantine.delete',
      actor: `key:${t.keyId}`,
      target: id,
      detail: { from: 'sender@spam.example', subject: 'cheap pills' },
    })
    const report = await api.call('POST', `/v1/messages/${id}/report-spam`, { key: t.key })
    expect(report.status).toBe(409)
    expect(report.body).toMatchObject({
      detail: `message ${id} was deleted from the quarantine, and its content with it`,
      hint: 'report a message before deleting it',
    })
  })

  it("deleting one tenant's copy keeps the raw object another tenant's copy still needs", async () => {
    const other = await api.tenant('sharing')
    const mine = await api.message(t.tenantId, { subject: 'to both' })
    const theirs = await api.message(other.tenantId, { subject: 'to both' })
    // one SMTP transaction for both tenants: their rows share the stored message
    await api.database.db
      .update(messages)
      .set({ objectKey: `inbound/${mine}.eml` })
      .where(eq(messages.id, theirs))
    expect((await api.call('DELETE', `/v1/quarantine/${mine}`, { key: t.key })).status).toBe(204)
    const raw = await api.call('GET', `/v1/quarantine/${theirs}/raw`, { key: other.key })
    expect(raw.status).toBe(200)
    expect(raw.body).toContain('Subject: to both')
    expect((await api.call('DELETE', `/v1/quarantine/${theirs}`, { key: other.key })).status).toBe(204)
    await expect(api.store.get(`inbound/${mine}.eml`)).rejects.toThrow('object not found')
  })

  it('bulk release and delete answer for each id', async () => {
    const [a, b, virus] = [
      await api.message(t.tenantId),
      await api.message(t.tenantId),
      await api.message(t.tenantId, { virus: 'Eicar-Test-Signature' }),
    ]
    expect(
      (await api.call('POST', '/v1/quarantine/release', { key: viewer, body: { ids: [a] } })).status,
    ).toBe(403)
    const released = await api.call('POST', '/v1/quarantine/release', {
      key: t.key,
      body: { ids: [a, 'msg_nope', virus] },
    })
    expect(released.status).toBe(200)
    expect(released.body.items).toMatchObject([
      { id: a, ok: true, status: 'queued' },
      { id: 'msg_nope', ok: false, problem: { status: 404 } },
      { id: virus, ok: false, problem: { status: 409 } },
    ])
    const deleted = await api.call('POST', '/v1/quarantine/delete', {
      key: t.key,
      body: { ids: [b, a, virus] },
    })
    expect(deleted.body.items).toMatchObject([
      { id: b, ok: true, status: 'deleted' },
      { id: a, ok: false, problem: { status: 404 } },
      { id: virus, ok: true, status: 'deleted' },
    ])
    expect((await api.call('POST', '/v1/quarantine/delete', { key: t.key, body: { ids: [] } })).status).toBe(
      400,
    )
  })
})

describe('audit log', () => {
  it('owners and admins read it newest first, by cursor; viewers 403', async () => {
    expect((await api.call('GET', '/v1/audit', { key: viewer })).status).toBe(403)
    await api.call('POST', '/v1/lists', {
      key: t.key,
      body: { action: 'block', kind: 'ip', value: '192.0.2.9' },
    })
    const first = await api.call('GET', '/v1/audit?limit=1', { cookie: t.cookie })
    expect(first.status).toBe(200)
    expect(first.body.items).toMatchObject([{ actor: `key:${t.keyId}` }])
    expect(first.body.nextCursor).toBe(first.body.items[0].id)
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const res = await api.call('GET', `/v1/audit?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        key: t.key,
      })
      seen.push(...ids(res.body))
      cursor = res.body.nextCursor
    } while (cursor)
    expect(seen.map(Number)).toEqual([...seen.map(Number)].sort((x, y) => y - x))
    expect(seen.length).toBeGreaterThanOrEqual(3)
    expect((await api.call('GET', '/v1/audit?cursor=abc', { key: t.key })).status).toBe(400)
  })
})
