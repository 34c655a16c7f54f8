import { S3ObjectStore } from '@moat/blobstore'
import { createApiKey } from '@moat/core'
import {
  type Harness,
  type SmtpSink,
  startHarness,
  startS3Emulator,
  startSmtpSink,
  type TestS3,
} from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

/**
 * The archive in the whole stack, on S3: the raw messages and the archive live in a bucket on the
 * `fauxqs` emulator (an S3 wire-protocol endpoint on loopback, started in this process; no AWS).
 * Mail goes in over SMTP, is scanned (virus and spam scanning off: the verdict path is tested
 * elsewhere), delivered, archived by the archive worker that runs with the scan service, and found
 * through the API's archive search.
 */
describe('every accepted message is archived and searchable', () => {
  let h: Harness
  let sink: SmtpSink
  let s3: TestS3
  let store: S3ObjectStore
  let key: string
  let quietKey: string

  beforeAll(async () => {
    sink = await startSmtpSink()
    s3 = await startS3Emulator()
    store = new S3ObjectStore({ ...s3.options(s3.bucket()), prefix: 'moat/' })
    h = await startHarness({ env: { MOAT_VIRUS_SCAN: 'off', MOAT_SPAM_SCAN: 'off' }, store })
    const acme = await h.customer({
      tenant: 'acme',
      domain: 'acme.test',
      destinations: [`127.0.0.1:${sink.port}:10`],
    })
    const quiet = await h.customer({
      tenant: 'quiet',
      domain: 'quiet.test',
      destinations: [`127.0.0.1:${sink.port}:10`],
    })
    const db = h.stack.database.db
    key = (await createApiKey(db, { tenantId: acme.tenantId, name: 'e2e', role: 'admin', actor: 'test' })).key
    quietKey = (
      await createApiKey(db, { tenantId: quiet.tenantId, name: 'e2e', role: 'admin', actor: 'test' })
    ).key
  })
  afterAll(async () => {
    await h?.close()
    await sink?.stop()
    await s3?.stop()
  })

  const api = async (path: string, k: string, init: RequestInit = {}) => {
    const res = await fetch(`${h.apiUrl}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json', ...init.headers },
    })
    return { status: res.status, text: await res.text() }
  }

  it('archives what arrives over SMTP, in S3, unless the tenant turned archiving off', async () => {
    const off = await api('/v1/archive/settings', quietKey, {
      method: 'PUT',
      body: JSON.stringify({ enabled: false }),
    })
    expect(off.status).toBe(200)

    const acmeId = await h.send({
      from: 'Carla <carla@supplier.example>',
      to: 'bob@acme.test',
      subject: 'Shipment 7781 delayed',
      text: 'The container with shipment 7781 is held at customs until Monday.',
      attachments: [{ filename: 'customs-form.pdf', content: Buffer.from('%PDF-1.4') }],
    })
    const quietId = await h.send({
      from: 'x@sender.example',
      to: 'ann@quiet.test',
      subject: 'not archived',
      text: 'private',
    })
    await h.traceWhen(acmeId, (t) => t.message.status === 'delivered')

    let hits: { items: Array<Record<string, unknown>> } = { items: [] }
    for (let i = 0; i < 100 && !hits.items.length; i++) {
      hits = JSON.parse((await api('/v1/archive/search?q=customs%20shipment', key)).text)
      if (!hits.items.length) await new Promise((r) => setTimeout(r, 100))
    }
    expect(hits.items).toHaveLength(1)
    const hit = hits.items[0] ?? {}
    expect(hit).toMatchObject({
      mailFrom: 'carla@supplier.example',
      rcptTo: ['bob@acme.test'],
      subject: 'Shipment 7781 delayed',
      verdict: 'clean',
      attachmentNames: ['customs-form.pdf'],
    })
    expect(String(hit.snippet)).toContain('<mark>shipment</mark> 7781')

    // the archived copy is an object of its own in the bucket, under the tenant's prefix
    const objects: string[] = []
    for await (const k of store.list('archive/')) objects.push(k)
    expect(objects).toHaveLength(1)
    expect(objects[0]).toMatch(/^archive\/ten_[0-9a-z]+\/\d{4}\/\d{2}\/\d{2}\/msg_[0-9a-z]+\.eml$/)
    const raw = await api(`/v1/archive/messages/${hit.id}/raw`, key)
    expect(raw.text).toContain('Subject: Shipment 7781 delayed')
    expect(raw.text).toMatch(/^Received: from /)

    // the tenant that turned archiving off: delivered, never archived
    await h.traceWhen(quietId, (t) => t.message.status === 'delivered')
    expect(sink.messages.map((m) => m.to).sort()).toEqual([['ann@quiet.test'], ['bob@acme.test']])
    await new Promise((r) => setTimeout(r, 300))
    expect(JSON.parse((await api('/v1/archive/search', quietKey)).text).items).toEqual([])
  })
})
