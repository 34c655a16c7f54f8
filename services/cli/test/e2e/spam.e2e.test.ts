import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { loadSpamAssassin } from '@moat/classifier'
import { ContentModel } from '@moat/detect'
import { type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const run = promisify(execFile)
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')
const clamdUrl = inject('clamdUrl')

/** The corpus spam the default model is surest about, with its envelope sender. */
function certainSpam(): { raw: string; from: string } {
  const file = process.env.MOAT_TEST_SPAM_MODEL
  if (!file) throw new Error('MOAT_TEST_SPAM_MODEL is set by the test global setup')
  const model = ContentModel.fromFile(file)
  let best = { raw: '', p: -1 }
  for (const m of loadSpamAssassin()) {
    if (m.label !== 1) continue
    const raw = Buffer.isBuffer(m.raw) ? m.raw.toString('latin1') : m.raw
    if (raw.length > 20_000 || /[^\t\n\r\x20-\x7e]/.test(raw)) continue
    const p = model.score(model.features(Buffer.from(raw, 'latin1')))
    if (p > best.p) best = { raw, p }
  }
  // drop the mbox separator line and the corpus's own trace headers; keep what a sender sends
  const raw = best.raw.replace(/^From [^\n]*\n/, '').replace(/\r?\n/g, '\r\n')
  return { raw, from: 'promo@bulk-sender.example' }
}

const HAM = [
  'From: Alice <alice@sender.example>',
  'To: Bob <bob@acme.test>',
  'Subject: minutes of Tuesday',
  'Date: Tue, 24 Nov 2026 10:00:00 +0000',
  'Message-ID: <minutes-1@sender.example>',
  // forged: claims to be Moat's own verdict, must not reach the customer
  'Authentication-Results: mx.moat.test; spf=pass smtp.mailfrom=sender.example; dmarc=pass',
  // someone else's results are none of Moat's business and stay
  'Authentication-Results: relay.sender.example; spf=pass smtp.mailfrom=sender.example',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hi Bob,',
  '',
  'attached are the notes from the meeting on Tuesday; the next one is on the 8th.',
  'Let me know if I missed anything.',
  '',
  'Alice',
  '',
].join('\r\n')

describe.skipIf(!clamdUrl)(`spam detection end to end through SMTP ${inject('clamdMissing')}`, () => {
  let h: Harness
  let acme: SmtpSink
  let globex: SmtpSink
  let spam: { raw: string; from: string }
  const cli = async (...args: string[]) =>
    (await run(process.execPath, [MOAT, ...args], { env: { ...process.env, ...h.env } })).stdout

  beforeAll(async () => {
    spam = certainSpam()
    acme = await startSmtpSink()
    globex = await startSmtpSink()
    h = await startHarness({ env: { MOAT_CLAMD: clamdUrl } })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${acme.port}`] })
    await h.customer({ tenant: 'globex', domain: 'globex.test', destinations: [`127.0.0.1:${globex.port}`] })
    h.dns.zones.set('sender.example', { txt: ['v=spf1 ip4:127.0.0.1 -all'] })
  })
  afterAll(async () => {
    await h?.close()
    await acme?.stop()
    await globex?.stop()
  })

  it('delivers ham with Authentication-Results and score headers, and strips forged results', async () => {
    const queueId = await h.send({
      envelope: { from: 'alice@sender.example', to: ['bob@acme.test'] },
      raw: HAM,
    })
    const trace = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(trace.message.action).toBe('deliver')
    const delivered = (await acme.waitFor(1)).find((m) => m.raw.includes('minutes of Tuesday'))
    const head = delivered?.raw.toString('latin1').split('\r\n\r\n')[0] ?? ''
    const results = head.match(/^Authentication-Results:.*(\r\n[ \t].*)*/gm) ?? []
    expect(results).toHaveLength(2)
    expect(results[0]).toMatch(/^Authentication-Results: mx\.moat\.test;/)
    expect(results[0]).toContain('spf=pass')
    expect(results[0]).toContain('smtp.mailfrom=alice@sender.example')
    expect(results[1]).toBe(
      'Authentication-Results: relay.sender.example; spf=pass smtp.mailfrom=sender.example',
    )
    expect(head).toMatch(/^X-Moat-Spam: no$/m)
    expect(head).toMatch(
      new RegExp(`^X-Moat-Score: ${trace.message.spamScore?.toFixed(2)} / 7 \\(deliver\\)$`, 'm'),
    )
    expect(head).toMatch(/^X-Moat-Symbols: .*SPF_PASS\(-0\.10\)/m)
  })

  it('quarantines spam, never delivers it, and explains why in message show', async () => {
    const queueId = await h.send({ envelope: { from: spam.from, to: ['bob@acme.test'] }, raw: spam.raw })
    const trace = await h.traceWhen(queueId, (t) => t.message.status === 'quarantined')
    expect(trace.message.action).toBe('quarantine')
    expect(trace.message.spamScore).toBeGreaterThanOrEqual(7)
    expect(trace.recipients.map((r) => r.status)).toEqual(['quarantined'])
    const scanned = trace.events.find((e) => e.kind === 'scanned')?.detail
    expect(scanned?.reason).toMatch(/^spam: score \d+\.\d\d ≥ quarantine threshold 7$/)
    expect(((scanned?.symbols ?? []) as { name: string }[]).map((s) => s.name)).toContain('CONTENT_SPAM')

    const shown = await cli('message', 'show', queueId)
    expect(shown).toContain('status:   quarantined')
    expect(shown).toMatch(/spam: +score \d+\.\d\d, quarantine/)
    expect(shown).toMatch(/CONTENT_SPAM +\+\d+\.\d\d {2}p=(?:0\.9|1\.0)/)
    await new Promise((r) => setTimeout(r, 500))
    expect(acme.messages.some((m) => m.raw.includes(spam.raw.slice(-200)))).toBe(false)
  })

  it('lets an allow-listed sender through despite a high score, and says so', async () => {
    const added = await cli('list', 'add', 'acme', 'allow', 'address', spam.from, '--note', 'our newsletter')
    expect(added).toMatch(/^added lst_\w+: allow address promo@bulk-sender\.example/)
    const queueId = await h.send({ envelope: { from: spam.from, to: ['carol@acme.test'] }, raw: spam.raw })
    const trace = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(trace.message.spamScore).toBeGreaterThanOrEqual(7)
    const scanned = trace.events.find((e) => e.kind === 'scanned')?.detail
    expect(scanned?.reason).toMatch(
      /^allowed by address promo@bulk-sender\.example \(score \d+\.\d\d ignored\)$/,
    )
    // the same mail to another tenant is still quarantined: lists are per tenant
    const other = await h.send({ envelope: { from: spam.from, to: ['dan@globex.test'] }, raw: spam.raw })
    await h.traceWhen(other, (t) => t.message.status === 'quarantined')
    const id = /^(lst_\w+)/m.exec((await cli('list', 'show', 'acme')).split('\n')[1] ?? '')?.[1] ?? ''
    await cli('list', 'remove', 'acme', id)
  })

  it("delivers a released message and teaches that tenant's model, not another's", async () => {
    const first = await h.send({ envelope: { from: spam.from, to: ['erin@acme.test'] }, raw: spam.raw })
    const before = await h.traceWhen(first, (t) => t.message.status === 'quarantined')
    const released = await cli('message', 'release', before.message.id)
    expect(released).toMatch(/^released msg_\w+: queued for delivery to erin@acme\.test$/m)
    expect(released).toMatch(
      /the tenant's model learnt it is ham \(spam probability (?:0\.9\d+|1\.000) → 0\.[0-2]\d+\)/,
    )
    const after = await h.traceWhen(first, (t) => t.message.status === 'delivered')
    expect(after.events.map((e) => e.kind)).toEqual([
      'received',
      'scanned',
      'quarantined',
      'released',
      'delivered',
    ])
    expect((await acme.waitFor(1)).some((m) => m.to.includes('erin@acme.test'))).toBe(true)

    // the same mail again: acme's model now calls it ham, globex's still calls it spam
    const again = await h.send({ envelope: { from: spam.from, to: ['erin@acme.test'] }, raw: spam.raw })
    const acmeAgain = await h.traceWhen(again, (t) => t.message.status === 'delivered')
    expect(acmeAgain.message.spamScore).toBeLessThan(before.message.spamScore ?? 0)
    const symbols = acmeAgain.events.find((e) => e.kind === 'scanned')?.detail.symbols as { name: string }[]
    expect(symbols.map((s) => s.name)).toContain('CONTENT_HAM')
    const toGlobex = await h.send({ envelope: { from: spam.from, to: ['dan@globex.test'] }, raw: spam.raw })
    const globexTrace = await h.traceWhen(toGlobex, (t) => t.message.status === 'quarantined')
    expect(globexTrace.message.spamScore).toBeGreaterThanOrEqual(7)

    // a second release of the same message is refused: it is no longer quarantined
    const err = await cli('message', 'release', before.message.id).catch((e: { stderr: string }) => e.stderr)
    expect(err).toContain(`error: message ${before.message.id} is delivered, not quarantined`)
  })

  it('learns from a spam report: the same ham scores higher for that tenant afterwards', async () => {
    const first = await h.send({
      envelope: { from: 'alice@sender.example', to: ['bob@acme.test'] },
      raw: HAM,
    })
    const t1 = await h.traceWhen(first, (t) => t.message.status === 'delivered')
    const reported = await cli('message', 'report-spam', t1.message.id)
    expect(reported).toMatch(
      /^reported msg_\w+ as spam: spam probability for this tenant 0\.\d+ → 0\.[7-9]\d+$/m,
    )
    expect(await cli('message', 'report-spam', t1.message.id)).toContain(
      'was already reported as spam; nothing changed',
    )
    const second = await h.send({
      envelope: { from: 'alice@sender.example', to: ['bob@acme.test'] },
      raw: HAM,
    })
    const t2 = await h.traceWhen(second, (t) => t.message.action !== null)
    expect(t2.message.spamScore).toBeGreaterThan(t1.message.spamScore ?? 0)
  })

  it('applies the tenant policy: tag with a subject prefix, and a domain override', async () => {
    const set = await cli(
      'policy',
      'set',
      'acme',
      '--tag',
      '-20',
      '--quarantine',
      'off',
      '--subject-prefix',
      '[SPAM]',
    )
    expect(set).toMatch(/tagThreshold +-20 +tenant/)
    expect(set).toMatch(/quarantineThreshold +off +tenant/)
    const queueId = await h.send({
      envelope: { from: 'alice@sender.example', to: ['frank@acme.test'] },
      raw: HAM,
    })
    const trace = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(trace.message.action).toBe('tag')
    const delivered = (await acme.waitFor(1)).find((m) => m.to.includes('frank@acme.test'))
    const head = delivered?.raw.toString('latin1').split('\r\n\r\n')[0] ?? ''
    expect(head).toMatch(/^Subject: \[SPAM\] minutes of Tuesday$/m)
    expect(head).toMatch(/^X-Moat-Spam: yes$/m)

    const bad = await cli('policy', 'set', 'acme', '--tag', 'lots').catch((e: { stderr: string }) => e.stderr)
    expect(bad).toContain('error: expected a number or off, not "lots"')
    const shown = await cli('policy', 'show', 'acme', '--domain', 'acme.test')
    expect(shown).toMatch(/discardThreshold +off +default/)
    await cli('policy', 'set', 'acme', '--tag', '5', '--quarantine', '7', '--subject-prefix', 'off')
  })
})
