import { Resolver } from 'node:dns/promises'
import { resumeTenant, suspendTenant } from '@moat/core'
import {
  EICAR,
  freePort,
  type Harness,
  rawSmtp,
  type SmtpSink,
  startHarness,
  startSmtpSink,
} from '@moat/testkit'
import { dkimVerify } from 'mailauth/lib/dkim/verify'
import nodemailer from 'nodemailer'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

// biome-ignore lint/suspicious/noExplicitAny: JSON answers, which the assertions check
type Json = any

/**
 * Outbound relay end to end: a customer's client submits over SMTP (STARTTLS + AUTH, or implicit
 * TLS), Moat scans it with a real clamd, signs it with the domain's DKIM key and delivers it to
 * the recipients' MX hosts, found in a DNS server on loopback and standing on 127.0.0.2, .3, .4
 * and .5 on one high port (MOAT_OUTBOUND_SMTP_PORT).
 */
describe.skipIf(!clamdUrl)(`outbound relay over real SMTP ${inject('clamdMissing')}`, () => {
  let h: Harness
  let port: number
  let alphaMx: SmtpSink
  let bravoMx: SmtpSink
  /** the customer's own domain's MX: where DSNs to its senders arrive */
  let homeMx: SmtpSink
  let key: string
  let tenantId: string
  let domainId: string

  async function api(method: string, path: string, body?: unknown) {
    const res = await fetch(`${h.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    return { status: res.status, body: (res.status === 204 ? null : await res.json()) as Json }
  }

  async function credential(name: string) {
    const res = await api('POST', '/v1/smtp-credentials', { name })
    expect(res.status).toBe(201)
    return {
      user: res.body.username as string,
      pass: res.body.password as string,
      id: res.body.credential.id,
    }
  }

  function client(
    auth: { user: string; pass: string },
    options: { secure?: boolean; localAddress?: string } = {},
  ) {
    return nodemailer.createTransport({
      host: '127.0.0.1',
      port: options.secure ? h.submissionsPort : h.submissionPort,
      secure: options.secure ?? false,
      requireTLS: !options.secure,
      localAddress: options.localAddress,
      auth,
      tls: { rejectUnauthorized: false },
    })
  }

  const message = (o: { from?: string; to: string; subject: string; body?: string }) =>
    [
      `From: ${o.from ?? 'Alice <alice@acme.test>'}`,
      `To: ${o.to}`,
      `Subject: ${o.subject}`,
      'Date: Tue, 24 Nov 2026 10:00:00 +0000',
      `Message-ID: <${o.subject.replace(/\W+/g, '-')}@acme.test>`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      o.body ?? 'Hello, the minutes are attached in spirit.',
      '',
    ].join('\r\n')

  const queueIdOf = (response: string) => /queued as (\S+)/.exec(response)?.[1] ?? ''

  beforeAll(async () => {
    port = await freePort()
    alphaMx = await startSmtpSink({ host: '127.0.0.2', port })
    bravoMx = await startSmtpSink({ host: '127.0.0.3', port })
    homeMx = await startSmtpSink({ host: '127.0.0.4', port })
    h = await startHarness({
      env: {
        MOAT_CLAMD: clamdUrl,
        MOAT_OUTBOUND_SMTP_PORT: String(port),
        MOAT_OUTBOUND_RATE_PER_MINUTE: '3',
        MOAT_SUBMISSION_AUTH_SLOW_AFTER: '2',
        MOAT_SUBMISSION_AUTH_BLOCK_AFTER: '4',
        MOAT_OUTBOUND_SUSPEND_AFTER_HELD: '2',
      },
    })
    const zones = h.dns.zones
    zones.set('alpha.example', { mx: [{ exchange: 'mx.alpha.example', priority: 10 }] })
    zones.set('mx.alpha.example', { a: ['127.0.0.2'] })
    zones.set('bravo.example', { mx: [{ exchange: 'mx.bravo.example', priority: 10 }] })
    zones.set('mx.bravo.example', { a: ['127.0.0.3'] })

    const signup = await fetch(`${h.apiUrl}/v1/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'acme', email: 'owner@acme.test', password: 'a long password' }),
    }).then((r) => r.json() as Promise<Json>)
    tenantId = signup.tenant.id
    const login = await fetch(`${h.apiUrl}/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@acme.test', password: 'a long password' }),
    })
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
    key = await fetch(`${h.apiUrl}/v1/api-keys`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'test' }),
    })
      .then((r) => r.json() as Promise<Json>)
      .then((b) => b.key)
    const domain = await api('POST', '/v1/domains', { name: 'acme.test' })
    domainId = domain.body.id
    zones.set('acme.test', {
      txt: [domain.body.records.txt.match(/"(.*)"/)[1]],
      mx: [{ exchange: 'mail.acme.test', priority: 10 }],
    })
    zones.set('mail.acme.test', { a: ['127.0.0.4'] })
    expect((await api('POST', `/v1/domains/${domainId}/verify`)).body.domain.status).toBe('verified')

    const dkim = await api('POST', `/v1/domains/${domainId}/dkim-keys`, { algorithm: 'rsa-sha256' })
    expect(dkim.status).toBe(201)
    expect(dkim.body.status).toBe('pending')
    zones.set(dkim.body.record.name, { txt: [dkim.body.record.value] })
    const checked = await api('POST', `/v1/domains/${domainId}/dkim-keys/check`)
    expect(checked.body.items[0]).toMatchObject({
      status: 'published',
      lastCheckResult: `published at ${dkim.body.record.name}`,
    })
  })
  afterAll(async () => {
    await h?.close()
    await Promise.all([alphaMx, bravoMx, homeMx].map((s) => s?.stop()))
  })

  it('delivers to two domains through their MX hosts, DKIM-signed so that it verifies against the published key', async () => {
    const auth = await credential('laptop')
    const info = await client(auth).sendMail({
      envelope: { from: 'alice@acme.test', to: ['bob@alpha.example', 'carol@bravo.example'] },
      raw: message({ to: 'bob@alpha.example, carol@bravo.example', subject: 'Quarterly figures' }),
    })
    expect(info.response).toMatch(/^250 2\.0\.0 queued as [0-9a-z]{26}$/)
    const [atAlpha] = await alphaMx.waitFor(1)
    const [atBravo] = await bravoMx.waitFor(1)
    expect(atAlpha).toMatchObject({ from: 'alice@acme.test', to: ['bob@alpha.example'], secure: true })
    expect(atBravo).toMatchObject({ from: 'alice@acme.test', to: ['carol@bravo.example'], secure: true })

    const resolver = new Resolver()
    resolver.setServers([h.dns.address])
    for (const got of [atAlpha, atBravo]) {
      const raw = got?.raw ?? Buffer.alloc(0)
      expect(raw.toString()).toMatch(/^DKIM-Signature: .*d=acme\.test/s)
      const verified = await dkimVerify(raw, {
        resolver: (name: string, type: string) => resolver.resolve(name, type as 'TXT'),
      })
      expect(verified.results.map((r) => r.status.result)).toEqual(['pass'])
    }
    const trace = await h.traceWhen(queueIdOf(info.response), (t) => t.message.status === 'delivered')
    expect(trace.message.direction).toBe('outbound')
    expect(trace.recipients.map((r) => r.status)).toEqual(['delivered', 'delivered'])
    expect(trace.attempts.map((a) => a.host).sort()).toEqual(['mx.alpha.example', 'mx.bravo.example'])
  })

  it('takes submissions on the implicit-TLS port too', async () => {
    const before = alphaMx.messages.length
    const info = await client(await credential('phone'), { secure: true }).sendMail({
      envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
      raw: message({ to: 'bob@alpha.example', subject: 'From my phone' }),
    })
    expect(info.response).toMatch(/^250 2\.0\.0 queued as/)
    await alphaMx.waitFor(before + 1)
  })

  it('refuses AUTH before STARTTLS, and MAIL FROM without AUTH', async () => {
    const smtp = await rawSmtp(h.submissionPort)
    try {
      const ehlo = await smtp.send('EHLO client.test')
      expect(ehlo.code).toBe(250)
      const auth = await smtp.send(`AUTH PLAIN ${Buffer.from('\0user\0pass').toString('base64')}`)
      expect(auth.text).toBe('538 5.7.0 Error: Must issue a STARTTLS command first')
      expect(await smtp.send('MAIL FROM:<alice@acme.test>')).toEqual({
        code: 530,
        text: '530 5.7.0 Authentication required: AUTH with your SMTP credentials, or relay from a registered network',
      })
    } finally {
      smtp.close()
    }
  })

  it('refuses a wrong password with 535, then slows down and blocks the address after repeated failures', async () => {
    const good = await credential('desktop')
    const attempt = async (pass: string) => {
      const started = Date.now()
      const err = await client({ user: good.user, pass }, { localAddress: '127.0.0.9' })
        .verify()
        .then(
          () => undefined,
          (e: { response?: string }) => e,
        )
      return { response: err?.response, ms: Date.now() - started }
    }
    const first = await attempt('wrong password')
    expect(first.response).toBe('535 5.7.8 Authentication credentials invalid')
    expect((await attempt('wrong again')).response).toBe('535 5.7.8 Authentication credentials invalid')
    // third failure: slowed down by a second
    const third = await attempt('still wrong')
    expect(third.response).toBe('535 5.7.8 Authentication credentials invalid')
    expect(third.ms).toBeGreaterThanOrEqual(1000)
    await attempt('fourth') // the fourth failure blocks the address
    const blocked = await attempt(good.pass)
    expect(blocked.response).toMatch(
      /^454 4\.7\.0 Too many failed authentications from your address; try again in \d+ seconds$/,
    )
    // another address is not affected
    expect(await client(good, { localAddress: '127.0.0.10' }).verify()).toBe(true)
  })

  it('refuses a sender or From header outside the tenant’s verified domains with 550 5.7.1', async () => {
    const auth = await credential('refusals')
    const envelope = await client(auth)
      .sendMail({
        envelope: { from: 'ceo@foreign.example', to: ['bob@alpha.example'] },
        raw: message({ to: 'bob@alpha.example', subject: 'x' }),
      })
      .catch((e: { response?: string }) => e)
    expect((envelope as { response?: string }).response).toBe(
      '550 5.7.1 Sender refused: foreign.example is not a verified domain of this account',
    )
    const header = await client(auth)
      .sendMail({
        envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
        raw: message({
          from: 'CEO <ceo@foreign.example>',
          to: 'bob@alpha.example',
          subject: 'wire the money',
        }),
      })
      .catch((e: { response?: string }) => e)
    expect((header as { response?: string }).response).toBe(
      '550 5.7.1 From header refused: foreign.example is not a verified domain of this account',
    )
  })

  it('holds a message with a virus: never sent, in the message log and as an event for webhooks', async () => {
    const before = alphaMx.messages.length
    const info = await client(await credential('virus')).sendMail({
      envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
      raw: message({ to: 'bob@alpha.example', subject: 'invoice', body: EICAR }),
    })
    const trace = await h.traceWhen(queueIdOf(info.response), (t) => t.message.status === 'held')
    expect(trace.message).toMatchObject({ virusScan: 'infected', action: 'hold' })
    expect(trace.events.find((e) => e.kind === 'held')?.detail.reason).toMatch(/^virus: .*EICAR/i)
    const log = await api('GET', `/v1/messages/${trace.message.id}`)
    expect(log.body.message).toMatchObject({ status: 'held', direction: 'outbound', virusScan: 'infected' })
    const events = await api('GET', '/v1/events')
    expect(events.body.items[0]).toMatchObject({
      kind: 'outbound.virus',
      payload: { messageId: trace.message.id, subject: 'invoice' },
    })
    await new Promise((r) => setTimeout(r, 500))
    expect(alphaMx.messages.length).toBe(before)
  })

  it('answers 451 4.7.0 once a credential reaches its rate per minute', async () => {
    const auth = await credential('rate')
    const transport = client(auth)
    for (let i = 0; i < 3; i++) {
      await transport.sendMail({
        envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
        raw: message({ to: 'bob@alpha.example', subject: `rate ${i}` }),
      })
    }
    const fourth = await transport
      .sendMail({
        envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
        raw: message({ to: 'bob@alpha.example', subject: 'rate 3' }),
      })
      .catch((e: { response?: string }) => e)
    expect((fourth as { response?: string }).response).toBe(
      '451 4.7.0 Sending rate limit reached (at most 3 messages a minute for these credentials); try again later',
    )
    // other credentials of the tenant still send
    const other = await client(await credential('rate-other')).sendMail({
      envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
      raw: message({ to: 'bob@alpha.example', subject: 'other' }),
    })
    expect(other.response).toMatch(/^250 /)
  })

  it('holds spam above the tenant’s outbound threshold, and suspends a credential after a burst of it until an admin re-enables it', async () => {
    expect((await api('PUT', '/v1/outbound-settings', { spamThreshold: -100 })).body).toEqual({
      spamThreshold: -100,
      senderPool: null,
    })
    try {
      const auth = await credential('compromised')
      for (const subject of ['spam 1', 'spam 2']) {
        const info = await client(auth).sendMail({
          envelope: { from: 'alice@acme.test', to: ['bob@alpha.example'] },
          raw: message({ to: 'bob@alpha.example', subject }),
        })
        const trace = await h.traceWhen(queueIdOf(info.response), (t) => t.message.status === 'held')
        expect(trace.events.find((e) => e.kind === 'held')?.detail.reason).toMatch(
          /^spam: score -?[\d.]+ at or above the outbound threshold -100$/,
        )
      }
      const suspended = await api('GET', `/v1/smtp-credentials/${auth.id}`)
      expect(suspended.body).toMatchObject({
        status: 'suspended',
        suspendedReason: '2 messages held as spam or virus within an hour',
      })
      const refused = await client(auth)
        .verify()
        .catch((e: { response?: string }) => e)
      expect((refused as { response?: string }).response).toBe(
        '535 5.7.8 These credentials are suspended (2 messages held as spam or virus within an hour); an admin must re-enable them',
      )
      const kinds = (await api('GET', '/v1/events')).body.items.map((e: { kind: string }) => e.kind)
      expect(kinds.slice(0, 3)).toEqual(['credential.suspended', 'outbound.held', 'outbound.held'])
      expect((await api('POST', `/v1/smtp-credentials/${auth.id}/enable`)).body.status).toBe('active')
      expect(await client(auth).verify()).toBe(true)
    } finally {
      await api('PUT', '/v1/outbound-settings', { spamThreshold: null })
    }
  })

  it('retries an unreachable MX and delivers once it is back', async () => {
    h.dns.zones.set('charlie.example', { mx: [{ exchange: 'mx.charlie.example', priority: 10 }] })
    h.dns.zones.set('mx.charlie.example', { a: ['127.0.0.5'] })
    const info = await client(await credential('retry')).sendMail({
      envelope: { from: 'alice@acme.test', to: ['dave@charlie.example'] },
      raw: message({ to: 'dave@charlie.example', subject: 'patience' }),
    })
    const queueId = queueIdOf(info.response)
    const deferred = await h.traceWhen(queueId, (t) => t.message.status === 'deferred')
    expect(deferred.attempts[0]?.reply).toMatch(/ECONNECTION|ECONNREFUSED/)
    const charlieMx = await startSmtpSink({ host: '127.0.0.5', port })
    try {
      await charlieMx.waitFor(1)
      await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    } finally {
      await charlieMx.stop()
    }
  })

  it('sends a DSN back to the sender when the MX refuses a recipient with 5xx', async () => {
    alphaMx.rcptReply = (a) =>
      a === 'nobody@alpha.example' ? { code: 550, message: '5.1.1 No such user here' } : undefined
    const before = homeMx.messages.length
    const info = await client(await credential('dsn')).sendMail({
      envelope: { from: 'alice@acme.test', to: ['nobody@alpha.example'] },
      raw: message({ to: 'nobody@alpha.example', subject: 'to a ghost' }),
    })
    const trace = await h.traceWhen(queueIdOf(info.response), (t) => t.message.status === 'failed')
    expect(trace.recipients[0]?.lastReply).toMatch(/^550 5\.1\.1 No such user here/)
    const [dsn] = (await homeMx.waitFor(before + 1)).slice(before)
    expect(dsn).toMatchObject({ from: '', to: ['alice@acme.test'] })
    const raw = dsn?.raw.toString() ?? ''
    expect(raw).toMatch(/Content-Type: multipart\/report; report-type=delivery-status;/)
    expect(raw).toContain('Final-Recipient: rfc822; nobody@alpha.example')
    expect(raw).toContain('Action: failed')
    expect(raw).toContain('Status: 5.1.1')
    expect(raw).toContain('Remote-MTA: dns; mx.alpha.example')
    expect(raw).toContain('Subject: to a ghost')
    expect(trace.events.map((e) => e.kind)).toContain('bounced')
  })

  it('lets a null-sender message fail without a bounce', async () => {
    alphaMx.rcptReply = (a) =>
      a === 'nobody@alpha.example' ? { code: 550, message: '5.1.1 No such user here' } : undefined
    const before = homeMx.messages.length
    const info = await client(await credential('null-sender')).sendMail({
      envelope: { from: '', to: ['nobody@alpha.example'] },
      raw: message({ to: 'nobody@alpha.example', subject: 'an auto-reply' }),
    })
    const trace = await h.traceWhen(queueIdOf(info.response), (t) => t.message.status === 'failed')
    expect(trace.events.map((e) => e.kind)).not.toContain('bounced')
    await new Promise((r) => setTimeout(r, 1500))
    expect(homeMx.messages.length).toBe(before)
  })

  it('relays without AUTH from a network the tenant registered, and refuses a suspended tenant with 451 4.7.1', async () => {
    const added = await api('POST', '/v1/relay-networks', { cidr: '127.0.0.7/32', note: 'office server' })
    expect(added.status).toBe(201)
    const relay = nodemailer.createTransport({
      host: '127.0.0.1',
      port: h.submissionPort,
      localAddress: '127.0.0.7',
      tls: { rejectUnauthorized: false },
    })
    // the relay table is cached for up to 5 seconds
    await new Promise((r) => setTimeout(r, 5200))
    const before = bravoMx.messages.length
    const info = await relay.sendMail({
      envelope: { from: 'server@acme.test', to: ['carol@bravo.example'] },
      raw: message({ from: 'server@acme.test', to: 'carol@bravo.example', subject: 'nightly report' }),
    })
    expect(info.response).toMatch(/^250 /)
    await bravoMx.waitFor(before + 1)

    const db = h.stack.database.db
    await suspendTenant(db, { tenantId, reason: 'billing', note: 'invoice overdue', actor: 'test' })
    try {
      const refused = await relay
        .sendMail({
          envelope: { from: 'server@acme.test', to: ['carol@bravo.example'] },
          raw: message({ from: 'server@acme.test', to: 'carol@bravo.example', subject: 'again' }),
        })
        .catch((e: { response?: string }) => e)
      expect((refused as { response?: string }).response).toBe(
        '451 4.7.1 Sending is suspended for this account (suspended for billing: invoice overdue); try again once it is resumed',
      )
    } finally {
      await resumeTenant(db, { tenantId, reason: 'billing', actor: 'test' })
    }
  })
})
