import { describe, expect, it } from 'vitest'
import { cachedLookup, type DnsLookup } from '../src/dns'
import { checkBlocklists, type DnsblZone, dnsblName } from '../src/dnsbl'

function dnsError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`queryA ${code}`), { code })
}

/** A lookup answering from a table; names not in it are NXDOMAIN. Records every question. */
function fakeLookup(table: Record<string, string[] | NodeJS.ErrnoException>) {
  const asked: string[] = []
  const lookup: DnsLookup = async (name, rrtype) => {
    asked.push(`${rrtype} ${name}`)
    const a = table[name]
    if (a === undefined) throw dnsError('ENOTFOUND')
    if (a instanceof Error) throw a
    return a
  }
  return { lookup, asked }
}

describe('dnsblName', () => {
  it('reverses IPv4 octets', () => {
    expect(dnsblName('192.0.2.99', 'zen.example')).toBe('99.2.0.192.zen.example')
  })

  it('treats IPv4-mapped IPv6 as IPv4', () => {
    expect(dnsblName('::ffff:192.0.2.99', 'zen.example')).toBe('99.2.0.192.zen.example')
  })

  it('reverses the 32 nibbles of IPv6 (RFC 5782 §2.4)', () => {
    expect(dnsblName('2001:db8::1', 'zen.example')).toBe(
      '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example',
    )
  })

  it('is undefined for something that is not an IP', () => {
    expect(dnsblName('mail.example.org', 'zen.example')).toBeUndefined()
    expect(dnsblName('', 'zen.example')).toBeUndefined()
  })
})

describe('checkBlocklists', () => {
  const ip: DnsblZone = { zone: 'ip.bl', type: 'ip', symbol: 'IP_LISTED', score: 3 }
  const dom: DnsblZone = { zone: 'dom.bl', type: 'domain', symbol: 'DOM_LISTED', score: 4 }

  it('asks about registrable domains of link hosts, once each, skipping IP literals', async () => {
    const { lookup, asked } = fakeLookup({})
    await checkBlocklists(
      [dom],
      {
        clientIp: '192.0.2.1',
        linkHosts: ['a.shop.example.co.uk', 'b.shop.example.co.uk', '192.0.2.5', '', 'x.org'],
      },
      lookup,
    )
    expect(asked.sort()).toEqual(['A example.co.uk.dom.bl', 'A x.org.dom.bl'])
  })

  it('asks about at most 10 link domains', async () => {
    const { lookup, asked } = fakeLookup({})
    const hosts = Array.from({ length: 50 }, (_, i) => `www.site${i}.com`)
    await checkBlocklists([dom], { clientIp: null, linkHosts: hosts }, lookup)
    expect(asked).toHaveLength(10)
  })

  it('ignores answers outside 127.0.0.0/8 and gives each symbol once per listed thing', async () => {
    const { lookup } = fakeLookup({
      '1.2.0.192.ip.bl': ['10.0.0.1', '127.0.0.2', '127.0.0.2'],
      '2.2.0.192.ip.bl': ['93.184.216.34'],
    })
    const listed = await checkBlocklists([ip], { clientIp: '192.0.2.1', linkHosts: [] }, lookup)
    expect(listed.hits).toEqual([{ name: 'IP_LISTED', score: 3, detail: '192.0.2.1 in ip.bl (127.0.0.2)' }])
    const hijacked = await checkBlocklists([ip], { clientIp: '192.0.2.2', linkHosts: [] }, lookup)
    expect(hijacked).toEqual({ hits: [], errors: [] })
  })

  it('a zone that fails (not NXDOMAIN) is an error, not a listing; the other zones still count', async () => {
    const { lookup } = fakeLookup({
      '1.2.0.192.ip.bl': dnsError('ETIMEOUT'),
      'x.org.dom.bl': ['127.0.1.2'],
      'y.org.dom.bl': dnsError('ENODATA'),
    })
    const out = await checkBlocklists(
      [ip, dom],
      { clientIp: '192.0.2.1', linkHosts: ['x.org', 'y.org'] },
      lookup,
    )
    expect(out.errors).toEqual(['ip.bl: ETIMEOUT'])
    expect(out.hits.map((h) => h.name)).toEqual(['DOM_LISTED'])
  })

  it('no client IP: ip zones are not asked', async () => {
    const { lookup, asked } = fakeLookup({})
    await checkBlocklists([ip], { clientIp: null, linkHosts: ['x.org'] }, lookup)
    expect(asked).toEqual([])
  })
})

describe('cachedLookup', () => {
  function resolver(answers: (() => Promise<unknown>)[]) {
    let calls = 0
    return {
      get calls() {
        return calls
      },
      resolve: (() => {
        const next = answers[Math.min(calls, answers.length - 1)] as () => Promise<unknown>
        calls++
        return next()
      }) as never,
    }
  }

  it('caches answers and NXDOMAIN, case-insensitively per name and type', async () => {
    const r = resolver([async () => ['127.0.0.2']])
    const lookup = cachedLookup(r)
    expect(await lookup('A.Example', 'A')).toEqual(['127.0.0.2'])
    expect(await lookup('a.example', 'A')).toEqual(['127.0.0.2'])
    expect(r.calls).toBe(1)
    await lookup('a.example', 'TXT')
    expect(r.calls).toBe(2)

    const nx = resolver([() => Promise.reject(dnsError('ENOTFOUND'))])
    const l2 = cachedLookup(nx)
    await expect(l2('gone.example', 'A')).rejects.toMatchObject({ code: 'ENOTFOUND' })
    await expect(l2('gone.example', 'A')).rejects.toMatchObject({ code: 'ENOTFOUND' })
    expect(nx.calls).toBe(1)
  })

  it('does not cache temporary failures', async () => {
    const r = resolver([() => Promise.reject(dnsError('ETIMEOUT')), async () => ['127.0.0.2']])
    const lookup = cachedLookup(r)
    await expect(lookup('a.example', 'A')).rejects.toMatchObject({ code: 'ETIMEOUT' })
    await new Promise((resolve) => setImmediate(resolve))
    expect(await lookup('a.example', 'A')).toEqual(['127.0.0.2'])
    expect(r.calls).toBe(2)
  })

  it('entries expire after the TTL and the cache holds at most max names', async () => {
    const r = resolver([async () => ['x']])
    const noCache = cachedLookup(r, 0)
    await noCache('a.example', 'A')
    await noCache('a.example', 'A')
    expect(r.calls).toBe(2)

    const small = resolver([async () => ['x']])
    const lookup = cachedLookup(small, 60_000, 2)
    await lookup('a.example', 'A')
    await lookup('b.example', 'A')
    await lookup('c.example', 'A') // evicts a
    await lookup('c.example', 'A')
    await lookup('a.example', 'A')
    expect(small.calls).toBe(4)
  })
})
