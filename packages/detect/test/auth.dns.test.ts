import crypto from 'node:crypto'
import { createResolver } from '@moat/core'
import { startDnsServer, type TestDnsServer } from '@moat/testkit'
import { dkimSign } from 'mailauth'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { authenticateMessage } from '../src/auth'
import { cachedLookup, type DnsLookup } from '../src/dns'
import { checkBlocklists, type DnsblZone, dnsblName } from '../src/dnsbl'
import { Detector, type Envelope } from '../src/engine'
import { SYMBOLS } from '../src/rules'
import { message, normalHeaders, smallModel } from './helpers'

const AUTHSERV = 'mx.moat.test'
const SENDER_IP = '192.0.2.10'
const OTHER_IP = '198.51.100.66'

let dns: TestDnsServer
let lookup: DnsLookup

beforeAll(async () => {
  dns = await startDnsServer()
  // a fresh cache per test file; the server is the only one asked
  lookup = cachedLookup(createResolver([dns.address]), 0)
})
afterAll(async () => {
  await dns?.stop()
})

function fromDomain(
  domain: string,
  extra: string[] = [],
  body = 'Hello Bob,\n\nthe report is ready.\n',
): Buffer {
  return message(
    normalHeaders([`From: Alice <alice@${domain}>`, `Message-ID: <m1.${Date.now()}@${domain}>`, ...extra]),
    body,
  )
}

function names(hits: { name: string }[]): string[] {
  return hits.map((h) => h.name)
}

describe('SPF', () => {
  beforeAll(() => {
    dns.zones.set('spf-sender.org', { txt: [`v=spf1 ip4:${SENDER_IP}/32 -all`] })
  })

  it('passes for an IP the domain lists', async () => {
    const out = await authenticateMessage(
      fromDomain('spf-sender.org'),
      { mailFrom: 'alice@spf-sender.org', clientIp: SENDER_IP, helo: 'mail.spf-sender.org' },
      { lookup, authservId: AUTHSERV },
    )
    expect(out.summary.spf).toBe('pass')
    expect(names(out.hits)).toContain('SPF_PASS')
    expect(out.header).toMatch(/^Authentication-Results: mx\.moat\.test;/)
    expect(out.header).toMatch(/spf=pass/)
  })

  it('fails for an IP outside the record with -all', async () => {
    const out = await authenticateMessage(
      fromDomain('spf-sender.org'),
      { mailFrom: 'alice@spf-sender.org', clientIp: OTHER_IP, helo: 'mail.evil.test' },
      { lookup, authservId: AUTHSERV },
    )
    expect(out.summary.spf).toBe('fail')
    const fail = out.hits.find((h) => h.name === 'SPF_FAIL')
    expect(fail?.detail).toBe('spf-sender.org')
    expect(names(out.hits)).not.toContain('SPF_PASS')
    expect(out.header).toMatch(/spf=fail/)
  })

  it('softfails with ~all', async () => {
    dns.zones.set('soft-sender.org', { txt: [`v=spf1 ip4:${SENDER_IP} ~all`] })
    const out = await authenticateMessage(
      fromDomain('soft-sender.org'),
      { mailFrom: 'alice@soft-sender.org', clientIp: OTHER_IP, helo: null },
      { lookup, authservId: AUTHSERV },
    )
    expect(names(out.hits)).toContain('SPF_SOFTFAIL')
  })
})

describe('DKIM', () => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  const domain = 'dkim-sender.org'
  const selector = 'moat2024'

  beforeAll(() => {
    const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
    dns.zones.set(`${selector}._domainkey.${domain}`, { txt: [`v=DKIM1; k=rsa; p=${p}`] })
    dns.zones.set(domain, { txt: [`v=spf1 ip4:${SENDER_IP} -all`] })
  })

  async function signed(body: string): Promise<Buffer> {
    const raw = fromDomain(domain, [], body)
    const key = {
      signingDomain: domain,
      selector,
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    }
    // mailauth 4.13 signs only what is in signatureData (its typings show the keys at the top level,
    // where they are ignored: the result is an empty signature)
    const { signatures, errors } = await dkimSign(raw, { ...key, signatureData: [key] })
    expect(errors).toEqual([])
    expect(signatures).toMatch(/^DKIM-Signature:/)
    return Buffer.concat([Buffer.from(signatures), raw])
  }

  it('a valid signature by the From domain is DKIM_VALID_ALIGNED', async () => {
    const raw = await signed('Hello Bob,\n\nthe signed report is ready.\n')
    const out = await authenticateMessage(
      raw,
      { mailFrom: `alice@${domain}`, clientIp: OTHER_IP, helo: null },
      { lookup, authservId: AUTHSERV },
    )
    expect(out.summary.dkim).toBe('pass')
    expect(out.hits.find((h) => h.name === 'DKIM_VALID_ALIGNED')?.detail).toBe(domain)
    expect(names(out.hits)).not.toContain('DKIM_INVALID')
    expect(out.header).toMatch(/dkim=pass/)
    // DKIM alone aligns DMARC even with SPF failing (no DMARC record: none)
    expect(names(out.hits)).toContain('SPF_FAIL')
  })

  it('a tampered body is DKIM_INVALID', async () => {
    const raw = await signed('Hello Bob,\n\nplease pay invoice 1001.\n')
    const tampered = Buffer.from(raw.toString('utf8').replace('invoice 1001', 'invoice 6666'))
    const out = await authenticateMessage(
      tampered,
      { mailFrom: `alice@${domain}`, clientIp: SENDER_IP, helo: null },
      { lookup, authservId: AUTHSERV },
    )
    expect(names(out.hits)).toContain('DKIM_INVALID')
    expect(names(out.hits)).not.toContain('DKIM_VALID_ALIGNED')
    expect(names(out.hits)).not.toContain('DKIM_VALID')
    expect(out.summary.dkim).not.toBe('pass')
  })

  it('a signature whose key is not published does not verify', async () => {
    const raw = Buffer.from(
      (await signed('Hello Bob\n')).toString('utf8').replace(`s=${selector}`, 's=missing'),
    )
    const out = await authenticateMessage(
      raw,
      { mailFrom: `alice@${domain}`, clientIp: SENDER_IP, helo: null },
      { lookup, authservId: AUTHSERV },
    )
    expect(out.summary.dkim).not.toBe('pass')
    expect(names(out.hits)).not.toContain('DKIM_VALID_ALIGNED')
  })
})

describe('DMARC', () => {
  const envelope = (domain: string, clientIp: string): Envelope => ({
    mailFrom: `alice@${domain}`,
    rcptTo: ['bob@example.net'],
    clientIp,
    helo: 'mail.evil.test',
  })

  beforeAll(() => {
    dns.zones.set('strict-sender.org', { txt: [`v=spf1 ip4:${SENDER_IP} -all`] })
    dns.zones.set('_dmarc.strict-sender.org', { txt: ['v=DMARC1; p=reject; rua=mailto:d@strict-sender.org'] })
    dns.zones.set('lenient-sender.org', { txt: [`v=spf1 ip4:${SENDER_IP} -all`] })
    dns.zones.set('_dmarc.lenient-sender.org', { txt: ['v=DMARC1; p=quarantine'] })
  })

  it('p=reject with SPF failing and no DKIM: DMARC_REJECT, and the header says dmarc=fail (Detector end to end)', async () => {
    const detector = new Detector({ model: smallModel(), lookup, authservId: AUTHSERV })
    const a = await detector.analyze(fromDomain('strict-sender.org'), envelope('strict-sender.org', OTHER_IP))
    const reject = a.hits.find((h) => h.name === 'DMARC_REJECT')
    expect(reject).toMatchObject({ score: SYMBOLS.DMARC_REJECT.score, detail: 'strict-sender.org p=reject' })
    expect(a.hits.map((h) => h.name)).toContain('SPF_FAIL')
    expect(a.auth).toMatchObject({ spf: 'fail', dmarc: 'fail' })
    expect(a.authResults).toMatch(/^Authentication-Results: mx\.moat\.test;/)
    expect(a.authResults).toMatch(/dmarc=fail/)
    expect(a.authResults).not.toMatch(/\r\n$/)
    expect(a.score).toBeCloseTo(
      a.hits.reduce((sum, h) => sum + h.score, 0),
      2,
    )
    expect(a.score).toBeGreaterThanOrEqual(7) // quarantined under the default policy, whatever the content
  })

  it('the same domain from its own IP passes DMARC', async () => {
    const detector = new Detector({ model: null, lookup, authservId: AUTHSERV })
    const a = await detector.analyze(
      fromDomain('strict-sender.org'),
      envelope('strict-sender.org', SENDER_IP),
    )
    expect(a.hits.map((h) => h.name)).toEqual(expect.arrayContaining(['SPF_PASS', 'DMARC_PASS']))
    expect(a.hits.map((h) => h.name)).not.toContain('DMARC_REJECT')
    expect(a.authResults).toMatch(/dmarc=pass/)
  })

  it('p=quarantine failing is DMARC_QUARANTINE', async () => {
    const out = await authenticateMessage(
      fromDomain('lenient-sender.org'),
      { mailFrom: 'alice@lenient-sender.org', clientIp: OTHER_IP, helo: null },
      { lookup, authservId: AUTHSERV },
    )
    expect(names(out.hits)).toContain('DMARC_QUARANTINE')
  })

  it('without a client IP (offline) the detector does not authenticate', async () => {
    const detector = new Detector({ model: null, lookup, authservId: AUTHSERV })
    const a = await detector.analyze(fromDomain('strict-sender.org'), {
      ...envelope('strict-sender.org', OTHER_IP),
      clientIp: null,
    })
    expect(a.auth).toBeNull()
    expect(a.authResults).toBeNull()
  })
})

describe('DNS blocklists', () => {
  const listedIp = '203.0.113.7'
  const xblIp = '203.0.113.8'
  const ipZone: DnsblZone = {
    zone: 'zen.dnsbl.test',
    type: 'ip',
    symbol: 'RBL_ZEN',
    score: 3,
    codes: { '127.0.0.4': { symbol: 'RBL_ZEN_XBL', score: 5 } },
  }
  const domainZone: DnsblZone = { zone: 'dbl.dnsbl.test', type: 'domain', symbol: 'DBL_LISTED', score: 4 }

  beforeAll(() => {
    dns.zones.set(dnsblName(listedIp, ipZone.zone) as string, { a: ['127.0.0.2'] })
    dns.zones.set(dnsblName(xblIp, ipZone.zone) as string, { a: ['127.0.0.4'] })
    dns.zones.set('phish-links.com.dbl.dnsbl.test', { a: ['127.0.1.2'] })
  })

  it('a listed IP gets the zone symbol', async () => {
    expect(dnsblName(listedIp, ipZone.zone)).toBe('7.113.0.203.zen.dnsbl.test')
    const out = await checkBlocklists([ipZone], { clientIp: listedIp, linkHosts: [] }, lookup)
    expect(out).toEqual({
      hits: [{ name: 'RBL_ZEN', score: 3, detail: '203.0.113.7 in zen.dnsbl.test (127.0.0.2)' }],
      errors: [],
    })
  })

  it('an answer code listed in codes gets the mapped symbol', async () => {
    const out = await checkBlocklists([ipZone], { clientIp: xblIp, linkHosts: [] }, lookup)
    expect(out.hits).toEqual([
      { name: 'RBL_ZEN_XBL', score: 5, detail: '203.0.113.8 in zen.dnsbl.test (127.0.0.4)' },
    ])
  })

  it('an unlisted IP gets nothing and no error', async () => {
    expect(await checkBlocklists([ipZone], { clientIp: '203.0.113.99', linkHosts: [] }, lookup)).toEqual({
      hits: [],
      errors: [],
    })
  })

  it('a link domain listed in a domain zone, found through a subdomain link (Detector end to end)', async () => {
    const detector = new Detector({ model: null, lookup, authservId: AUTHSERV, dnsbl: [ipZone, domainZone] })
    const raw = message(
      normalHeaders([]),
      'Your parcel is waiting: https://track.phish-links.com/p?id=1 and https://www.example.org/ok\n',
    )
    const a = await detector.analyze(raw, {
      mailFrom: '',
      rcptTo: ['bob@example.net'],
      clientIp: null,
      helo: null,
    })
    expect(a.hits.filter((h) => h.name === 'DBL_LISTED')).toEqual([
      { name: 'DBL_LISTED', score: 4, detail: 'phish-links.com in dbl.dnsbl.test (127.0.1.2)' },
    ])
    expect(a.hits.map((h) => h.name)).not.toContain('RBL_ZEN')
    expect(a.hits.map((h) => h.name)).not.toContain('DNSBL_ERROR')
  })

  it('no zones: not a single query', async () => {
    const asked: string[] = []
    const counting: DnsLookup = (name, rrtype) => {
      asked.push(`${rrtype} ${name}`)
      return lookup(name, rrtype)
    }
    const out = await checkBlocklists([], { clientIp: listedIp, linkHosts: ['phish-links.com'] }, counting)
    expect(out).toEqual({ hits: [], errors: [] })
    const detector = new Detector({ model: null, lookup: counting, authservId: AUTHSERV })
    const raw = message(normalHeaders([]), 'see https://phish-links.com/x\n')
    const a = await detector.analyze(raw, {
      mailFrom: '',
      rcptTo: ['bob@example.net'],
      clientIp: null,
      helo: null,
    })
    expect(a.hits.map((h) => h.name)).not.toContain('DBL_LISTED')
    expect(asked).toEqual([])
    // with a zone configured, the same lookup is asked
    await checkBlocklists([ipZone], { clientIp: listedIp, linkHosts: [] }, counting)
    expect(asked).toEqual(['A 7.113.0.203.zen.dnsbl.test'])
  })
})
