import path from 'node:path'
import { LocalObjectStore } from '@moat/blobstore'
import { archivedMessages } from '@moat/db'
import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { capText, indexMessage, searchArchive, setArchiveSettings, TEXT_EXTRACT_BYTES } from '../src/index'
import { type ArchiveFixture, archiveFixture, keys } from './fixtures'

let fx: ArchiveFixture
let store: LocalObjectStore
let tenantId: string
beforeAll(async () => {
  fx = await archiveFixture()
  store = new LocalObjectStore(path.join(fx.dataDir, 'objects'))
  tenantId = await fx.tenant('acme')
})
afterAll(async () => {
  await fx?.close()
})

const deps = () => ({ db: fx.database.db, store })

const withAttachment = `From: "Ann Archer" <ann@supplier.example>
To: Bob <bob@customer.test>
Cc: carol@customer.test
Subject: Invoice 4471 for October
Date: Tue, 03 Nov 2026 09:30:00 +0000
Message-ID: <inv-4471@supplier.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Please find attached the invoice for the October deliveries. Payment is due in 30 days.

--b1
Content-Type: application/pdf; name="invoice-4471.pdf"
Content-Disposition: attachment; filename="invoice-4471.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcOkw7zDtsOfCg==
--b1--
`

describe('archiving a message', () => {
  it('copies the raw message to an immutable object of its own and indexes envelope, headers, verdict and attachments', async () => {
    const messageId = await fx.message(store, tenantId, withAttachment, { action: 'tag' })
    expect(await indexMessage(deps(), messageId)).toBe('archived')
    const [row] = await fx.database.db
      .select()
      .from(archivedMessages)
      .where(eq(archivedMessages.messageId, messageId))
    expect(row).toMatchObject({
      tenantId,
      direction: 'inbound',
      mailFrom: 'ann@supplier.example',
      rcptTo: ['user@customer.test'],
      fromHeader: 'Ann Archer <ann@supplier.example>',
      toHeader: 'bob@customer.test',
      ccHeader: 'carol@customer.test',
      subject: 'Invoice 4471 for October',
      messageIdHeader: null,
      verdict: 'tagged',
      spamScore: 1.5,
      hasAttachments: true,
      attachmentNames: ['invoice-4471.pdf'],
      language: 'simple',
    })
    expect(row?.sentAt?.toISOString()).toBe('2026-11-03T09:30:00.000Z')
    expect(row?.textExtract).toContain('invoice for the October deliveries')
    expect(row?.objectKey).toMatch(
      new RegExp(`^archive/${tenantId}/\\d{4}/\\d{2}/\\d{2}/${messageId}\\.eml$`),
    )
    const inbound = await store.get(
      (await fx.database.sql`select object_key from messages where id = ${messageId}`)[0]?.object_key,
    )
    const archived = await store.get(row?.objectKey ?? '')
    expect(archived.equals(inbound)).toBe(true)
    expect(row?.size).toBe(inbound.length)
    const { createHash } = await import('node:crypto')
    expect(row?.sha256).toBe(createHash('sha256').update(inbound).digest('hex'))
  })

  it('archives a message once, however often it is queued', async () => {
    const messageId = await fx.message(store, tenantId, 'From: a@b.example\nSubject: twice\n\nhello\n')
    expect(await indexMessage(deps(), messageId)).toBe('archived')
    expect(await indexMessage(deps(), messageId)).toBe('already')
    const rows = await fx.database.db
      .select()
      .from(archivedMessages)
      .where(eq(archivedMessages.messageId, messageId))
    expect(rows).toHaveLength(1)
  })

  it('records the verdict of quarantined, discarded and infected mail too', async () => {
    const verdicts: Record<string, string> = {}
    for (const [label, o] of [
      ['quarantined', { action: 'quarantine' }],
      ['discarded', { action: 'discard' }],
      ['virus', { action: 'quarantine', virus: true }],
      ['outbound held', { action: 'hold', direction: 'outbound' }],
    ] as const) {
      const id = await fx.message(store, tenantId, `From: x@y.example\nSubject: ${label}\n\nbody\n`, o)
      await indexMessage(deps(), id)
      const [row] = await fx.database.db
        .select()
        .from(archivedMessages)
        .where(eq(archivedMessages.messageId, id))
      verdicts[label] = row?.verdict ?? ''
    }
    expect(verdicts).toEqual({
      quarantined: 'quarantined',
      discarded: 'discarded',
      virus: 'virus',
      'outbound held': 'quarantined',
    })
  })

  it('indexes in the language the message declares, so a German query finds inflected German words', async () => {
    const id = await fx.message(
      store,
      tenantId,
      'From: buchhaltung@lieferant.example\nSubject: Offene Posten\nContent-Language: de-DE\nContent-Type: text/plain; charset=utf-8\n\nDie Rechnungen vom Oktober sind noch nicht bezahlt.\n',
    )
    await indexMessage(deps(), id)
    const [row] = await fx.database.db
      .select()
      .from(archivedMessages)
      .where(eq(archivedMessages.messageId, id))
    expect(row?.language).toBe('german')
    // "Rechnung" (singular) finds "Rechnungen" only through the German stemmer
    const found = await searchArchive(fx.database.db, { tenantId, filter: { q: 'Rechnung' }, limit: 10 })
    expect(found.items.map((h) => h.message.id)).toEqual([row?.id])
    expect(found.items[0]?.snippet).toContain('<mark>Rechnungen</mark>')
  })

  it('keeps at most 64 KiB of body text, cut on a character boundary, and the text of HTML-only mail', async () => {
    const long = 'ü'.repeat(40_000) // 80,000 bytes of UTF-8
    const id = await fx.message(
      store,
      tenantId,
      `From: a@b.example\nSubject: long\nContent-Type: text/plain; charset=utf-8\n\n${long}\n`,
    )
    await indexMessage(deps(), id)
    const [row] = await fx.database.db
      .select()
      .from(archivedMessages)
      .where(eq(archivedMessages.messageId, id))
    expect(Buffer.byteLength(row?.textExtract ?? '')).toBe(TEXT_EXTRACT_BYTES)
    expect(row?.textExtract).toBe('ü'.repeat(TEXT_EXTRACT_BYTES / 2))
    expect(capText('aü', 2)).toBe('a')

    const html = await fx.message(
      store,
      tenantId,
      'From: news@shop.example\nSubject: offer\nContent-Type: text/html\n\n<html><head><style>p{}</style></head><body><p>Winter&nbsp;sale &amp; free shipping</p><script>alert(1)</script></body></html>\n',
    )
    await indexMessage(deps(), html)
    const [h] = await fx.database.db
      .select()
      .from(archivedMessages)
      .where(eq(archivedMessages.messageId, html))
    expect(h?.textExtract).toBe('Winter sale & free shipping')
  })

  it('does nothing for a tenant that turned archiving off', async () => {
    const other = await fx.tenant('noarchive')
    await setArchiveSettings(fx.database.db, { tenantId: other, actor: 'test', enabled: false })
    const id = await fx.message(store, other, 'From: a@b.example\nSubject: private\n\nhello\n')
    expect(await indexMessage(deps(), id)).toBe('disabled')
    expect(await keys(store, `archive/${other}/`)).toEqual([])
    const counted = (await fx.database.db.execute(
      sql`select count(*)::int as n from archived_messages where tenant_id = ${other}`,
    )) as unknown as { n: number }[]
    expect(counted[0]?.n).toBe(0)
    expect(await indexMessage(deps(), 'msg_missing')).toBe('missing')
  })
})
