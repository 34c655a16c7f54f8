import fs from 'node:fs/promises'
import path from 'node:path'
import { addDomain, createTenant } from '@moat/core'
import { messages, queueJobs, recipients } from '@moat/db'
import { type Harness, rawSmtp, startHarness } from '@moat/testkit'
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

/** Everything Moat has recorded: message rows, recipient rows, queue jobs and stored objects. */
async function stored(h: Harness) {
  const db = h.stack.database.db
  const count = async (table: typeof messages | typeof recipients | typeof queueJobs) =>
    (await db.select({ n: sql<number>`count(*)::int` }).from(table))[0]?.n ?? 0
  const objects: string[] = []
  for await (const key of h.stack.store.list('')) objects.push(key)
  return {
    messages: await count(messages),
    recipients: await count(recipients),
    jobs: await count(queueJobs),
    objects,
  }
}

const body = (size: number) =>
  `From: a@sender.example\r\nTo: b@acme.test\r\nSubject: size test\r\n\r\n${'x'
    .repeat(76)
    .concat('\r\n')
    .repeat(Math.ceil(size / 78))
    .slice(0, size)}`

describe('SMTP refusals at the front door (ingest only, real SMTP)', () => {
  let h: Harness

  beforeAll(async () => {
    h = await startHarness({
      only: ['ingest'],
      env: { MOAT_MAX_MESSAGE_BYTES: '20000', MOAT_MAX_RECIPIENTS: '3' },
    })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: ['127.0.0.1:9'] })
    // a domain added but never verified
    const other = await createTenant(h.stack.database.db, { name: 'pending-co', actor: 'test' })
    await addDomain(h.stack.database.db, { tenant: other.id, name: 'pending.test', actor: 'test' })
  })
  afterAll(async () => {
    await h?.close()
  })

  it('refuses recipients outside verified customer domains with 550 5.7.1 and stores nothing', async () => {
    const smtp = await rawSmtp(h.smtpPort)
    expect(smtp.greeting.text).toMatch(/^220 mx\.moat\.test .*Moat ESMTP/)
    expect((await smtp.send('EHLO sender.example')).code).toBe(250)
    expect((await smtp.send('MAIL FROM:<a@sender.example>')).code).toBe(250)
    expect(await smtp.send('RCPT TO:<someone@unknown.example>')).toEqual({
      code: 550,
      text: '550 5.7.1 Relaying denied: unknown.example is not a domain served here',
    })
    expect(await smtp.send('RCPT TO:<user@pending.test>')).toEqual({
      code: 550,
      text: '550 5.7.1 Relaying denied: pending.test is not a domain served here',
    })
    // with no accepted recipient there is no DATA
    expect((await smtp.send('DATA')).code).toBe(503)
    expect((await smtp.send('QUIT')).code).toBe(221)
    smtp.close()
    expect(await stored(h)).toEqual({ messages: 0, recipients: 0, jobs: 0, objects: [] })
  })

  it('refuses an oversized message with 552 5.3.4, whether announced with SIZE or not, and stores nothing', async () => {
    const smtp = await rawSmtp(h.smtpPort)
    const ehlo = await smtp.send('EHLO sender.example')
    expect(ehlo.code).toBe(250)
    const announced = await smtp.send('MAIL FROM:<a@sender.example> SIZE=50000')
    expect(announced.code).toBe(552)
    expect(announced.text).toMatch(/^552 5\.3\.4 /)

    expect((await smtp.send('MAIL FROM:<a@sender.example>')).code).toBe(250)
    expect((await smtp.send('RCPT TO:<b@acme.test>')).code).toBe(250)
    expect((await smtp.send('DATA')).code).toBe(354)
    const reply = await smtp.data(body(30_000))
    expect(reply.code).toBe(552)
    expect(reply.text).toMatch(/^552 5\.3\.4 /)
    // the session goes on: a message within the limit is accepted afterwards
    expect((await smtp.send('MAIL FROM:<a@sender.example>')).code).toBe(250)
    expect((await smtp.send('RCPT TO:<b@acme.test>')).code).toBe(250)
    expect((await smtp.send('DATA')).code).toBe(354)
    expect((await smtp.data(body(5_000))).text).toMatch(/^250 2\.0\.0 queued as /)
    smtp.close()
    const after = await stored(h)
    expect(after.messages).toBe(1)
    expect(after.objects).toHaveLength(1)
    await h.stack.database.sql`truncate messages, recipients, message_events, queue_jobs cascade`
    for (const key of after.objects) await h.stack.store.delete(key)
  })

  it('answers 452 4.5.3 past the recipient limit and keeps the recipients it accepted', async () => {
    const smtp = await rawSmtp(h.smtpPort)
    await smtp.send('EHLO sender.example')
    await smtp.send('MAIL FROM:<a@sender.example>')
    for (const n of [1, 2, 3]) expect((await smtp.send(`RCPT TO:<u${n}@acme.test>`)).code).toBe(250)
    expect(await smtp.send('RCPT TO:<u4@acme.test>')).toEqual({
      code: 452,
      text: '452 4.5.3 Too many recipients (at most 3 per message)',
    })
    expect((await smtp.send('DATA')).code).toBe(354)
    const reply = await smtp.data(body(100))
    expect(reply.text).toMatch(/^250 2\.0\.0 queued as [0-9a-z]{26}$/)
    smtp.close()
    const rows = await h.stack.database.db.select().from(recipients)
    expect(rows.map((r) => r.address).sort()).toEqual(['u1@acme.test', 'u2@acme.test', 'u3@acme.test'])
    await h.stack.database.sql`truncate messages, recipients, message_events, queue_jobs cascade`
  })

  it('answers 451 4.3.0 when the object store cannot write, and leaves no message row or job', async () => {
    const before = await stored(h)
    // make the store's inbound directory impossible to create: a plain file stands in its place
    const blocker = path.join(h.dataDir, 'objects', 'inbound')
    await fs.rm(blocker, { recursive: true, force: true })
    await fs.mkdir(path.dirname(blocker), { recursive: true })
    await fs.writeFile(blocker, 'not a directory')

    const smtp = await rawSmtp(h.smtpPort)
    await smtp.send('EHLO sender.example')
    await smtp.send('MAIL FROM:<a@sender.example>')
    expect((await smtp.send('RCPT TO:<b@acme.test>')).code).toBe(250)
    expect((await smtp.send('DATA')).code).toBe(354)
    expect(await smtp.data(body(2_000))).toEqual({
      code: 451,
      text: '451 4.3.0 Temporary local error (message could not be stored); please try again later',
    })
    const after = await stored(h)
    expect({ messages: after.messages, recipients: after.recipients, jobs: after.jobs }).toEqual({
      messages: before.messages,
      recipients: before.recipients,
      jobs: before.jobs,
    })

    // once the store works again, the sender's retry is accepted on the same connection
    await fs.rm(blocker)
    await smtp.send('MAIL FROM:<a@sender.example>')
    await smtp.send('RCPT TO:<b@acme.test>')
    await smtp.send('DATA')
    expect((await smtp.data(body(2_000))).text).toMatch(/^250 2\.0\.0 queued as /)
    smtp.close()
    expect((await stored(h)).jobs).toBe(before.jobs + 1)
  })
})

describe('hostile and broken SMTP clients', () => {
  let h: Harness

  beforeAll(async () => {
    h = await startHarness({ only: ['ingest'] })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: ['127.0.0.1:9'] })
  })
  afterAll(async () => {
    await h?.close()
  })

  it('answers nonsense with errors, keeps serving the session, and stores nothing from it', async () => {
    // an HTTP client on the SMTP port is told off and dropped
    const web = await rawSmtp(h.smtpPort)
    expect((await web.send('GET / HTTP/1.1')).code).toBe(421)
    web.close()

    const smtp = await rawSmtp(h.smtpPort)
    expect((await smtp.send('FROBNICATE now')).code).toBe(500)
    expect((await smtp.send('EHLO client.example')).code).toBe(250)
    expect((await smtp.send('RCPT TO:<b@acme.test>')).text).toMatch(/^503 /) // no MAIL FROM yet
    expect((await smtp.send('MAIL FROM:<not an address>')).code).toBe(501)
    expect((await smtp.send(`MAIL FROM:<a@${'x'.repeat(3000)}.example>`)).code).toBeGreaterThanOrEqual(500)
    expect((await smtp.send('RCPT TO:<no-at-sign>')).code).toBeGreaterThanOrEqual(500)
    smtp.close()
    expect((await stored(h)).messages).toBe(0)
  })

  it('survives a client that disconnects in the middle of DATA, and keeps nothing of it', async () => {
    const smtp = await rawSmtp(h.smtpPort)
    await smtp.send('EHLO client.example')
    await smtp.send('MAIL FROM:<a@sender.example>')
    await smtp.send('RCPT TO:<b@acme.test>')
    expect((await smtp.send('DATA')).code).toBe(354)
    smtp.write('Subject: cut off\r\n\r\nhalf a messa')
    smtp.close()
    await new Promise((resolve) => setTimeout(resolve, 500))
    const after = await stored(h)
    expect(after).toEqual({ messages: 0, recipients: 0, jobs: 0, objects: [] })
    // and the server still takes mail
    const ok = await rawSmtp(h.smtpPort)
    await ok.send('EHLO client.example')
    await ok.send('MAIL FROM:<a@sender.example>')
    await ok.send('RCPT TO:<b@acme.test>')
    await ok.send('DATA')
    expect((await ok.data('Subject: whole\r\n\r\nall here\r\n')).code).toBe(250)
    ok.close()
  })
})
