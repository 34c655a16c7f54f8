import { describe, expect, it } from 'vitest'
import {
  DEFAULT_POLICY,
  decide,
  type ListEntry,
  ListEntryError,
  matchLists,
  normalizeListValue,
  type Policy,
  resolvePolicy,
} from '../src/policy'

describe('resolvePolicy', () => {
  it('with no layers is the default', () => {
    expect(resolvePolicy()).toEqual(DEFAULT_POLICY)
    expect(resolvePolicy(undefined, undefined)).toEqual(DEFAULT_POLICY)
  })

  it('takes each field from the last layer that sets it; undefined inherits, null turns off', () => {
    const tenant: Partial<Policy> = { tagThreshold: 4, discardThreshold: 15, subjectPrefix: '[SPAM]' }
    const domain: Partial<Policy> = {
      tagThreshold: 3,
      quarantineThreshold: undefined,
      discardThreshold: null,
    }
    expect(resolvePolicy(tenant, domain)).toEqual({
      tagThreshold: 3, // domain over tenant
      quarantineThreshold: 7, // neither sets it: default
      discardThreshold: null, // domain turns the tenant's off
      subjectPrefix: '[SPAM]', // tenant's, domain inherits
    })
    // a missing domain layer leaves the tenant's
    expect(resolvePolicy(tenant, undefined)).toEqual({ ...DEFAULT_POLICY, ...tenant })
  })

  it('ignores keys that are not policy fields and does not mutate the default', () => {
    const before = { ...DEFAULT_POLICY }
    const p = resolvePolicy({ tagThreshold: 1, bogus: 1 } as Partial<Policy>)
    expect(p).toEqual({ ...DEFAULT_POLICY, tagThreshold: 1 })
    expect(DEFAULT_POLICY).toEqual(before)
  })
})

describe('decide', () => {
  const policy: Policy = {
    tagThreshold: 5,
    quarantineThreshold: 7,
    discardThreshold: 12,
    subjectPrefix: null,
  }

  it('a score exactly at a threshold takes that action', () => {
    expect(decide(5, policy).action).toBe('tag')
    expect(decide(7, policy).action).toBe('quarantine')
    expect(decide(12, policy).action).toBe('discard')
  })

  it('just below a threshold takes the weaker action', () => {
    expect(decide(4.999, policy).action).toBe('deliver')
    expect(decide(6.999, policy).action).toBe('tag')
    expect(decide(11.999, policy).action).toBe('quarantine')
    expect(decide(-20, policy).action).toBe('deliver')
  })

  it('says why, with the score to two places', () => {
    expect(decide(7, policy).reason).toBe('spam: score 7.00 ≥ quarantine threshold 7')
    expect(decide(5.004, policy).reason).toBe('probable spam: score 5.00 ≥ tag threshold 5')
    expect(decide(1.5, policy).reason).toBe('clean: score 1.50')
  })

  it('null thresholds are off', () => {
    const off: Policy = {
      tagThreshold: null,
      quarantineThreshold: null,
      discardThreshold: null,
      subjectPrefix: null,
    }
    expect(decide(1000, off).action).toBe('deliver')
    expect(decide(7, { ...policy, quarantineThreshold: null }).action).toBe('tag')
  })

  it('the strongest applicable action wins even with unordered thresholds', () => {
    const odd: Policy = {
      tagThreshold: 10,
      quarantineThreshold: 3,
      discardThreshold: null,
      subjectPrefix: null,
    }
    expect(decide(11, odd).action).toBe('quarantine')
  })

  it('an allow entry delivers whatever the score; a block entry quarantines whatever the score', () => {
    const allow = {
      id: 'a',
      action: 'allow',
      kind: 'domain',
      value: 'example.org',
      domainId: null,
      matched: 'x',
    } as const
    const block = { ...allow, id: 'b', action: 'block' } as const
    expect(decide(50, policy, allow)).toEqual({
      action: 'deliver',
      reason: 'allowed by domain example.org (score 50.00 ignored)',
      listed: { id: 'a', action: 'allow', kind: 'domain', value: 'example.org' },
    })
    expect(decide(-50, policy, block)).toEqual({
      action: 'quarantine',
      reason: 'blocked by domain example.org',
      listed: { id: 'b', action: 'block', kind: 'domain', value: 'example.org' },
    })
  })
})

describe('matchLists', () => {
  let n = 0
  const entry = (
    action: ListEntry['action'],
    kind: ListEntry['kind'],
    value: string,
    domainId: string | null = null,
  ): ListEntry => ({ id: `e${++n}`, action, kind, value, domainId })
  const sender = (addresses: string[], clientIp: string | null = null) => ({ addresses, clientIp })

  it('an address entry matches that address only', () => {
    const e = entry('allow', 'address', 'alice@example.org')
    expect(matchLists([e], sender(['alice@example.org']))?.id).toBe(e.id)
    expect(matchLists([e], sender(['', 'alice@example.org']))?.matched).toBe('alice@example.org')
    expect(matchLists([e], sender(['bob@example.org']))).toBeUndefined()
    expect(matchLists([e], sender(['alice@example.org.evil.test']))).toBeUndefined()
  })

  it('a domain entry matches the domain and its subdomains, not look-alikes', () => {
    const e = entry('block', 'domain', 'example.org')
    expect(matchLists([e], sender(['x@example.org']))?.matched).toBe('x@example.org')
    expect(matchLists([e], sender(['x@mail.eu.example.org']))?.matched).toBe('x@mail.eu.example.org')
    expect(matchLists([e], sender(['x@badexample.org']))).toBeUndefined()
    expect(matchLists([e], sender(['x@example.org.evil.test']))).toBeUndefined()
    // envelope sender or header From: either matches
    expect(matchLists([e], sender(['bounce@other.test', 'x@example.org']))?.matched).toBe('x@example.org')
  })

  it('an IPv4 CIDR entry matches addresses inside the range, also IPv4-mapped IPv6', () => {
    const e = entry('block', 'ip', '192.0.2.0/24')
    expect(matchLists([e], sender([], '192.0.2.200'))?.matched).toBe('192.0.2.200')
    expect(matchLists([e], sender([], '::ffff:192.0.2.7'))?.id).toBe(e.id)
    expect(matchLists([e], sender([], '192.0.3.1'))).toBeUndefined()
    expect(matchLists([e], sender([], '2001:db8::1'))).toBeUndefined()
    expect(matchLists([e], sender([], null))).toBeUndefined()
    expect(matchLists([e], sender([], 'not-an-ip'))).toBeUndefined()
  })

  it('a single IP entry matches that IP only', () => {
    const e = entry('allow', 'ip', '198.51.100.9')
    expect(matchLists([e], sender([], '198.51.100.9'))?.id).toBe(e.id)
    expect(matchLists([e], sender([], '198.51.100.10'))).toBeUndefined()
  })

  it('IPv6 entries match however the address is written', () => {
    const single = entry('block', 'ip', normalizeListValue('ip', '2001:DB8:0:0::1'))
    expect(matchLists([single], sender([], '2001:db8::1'))?.id).toBe(single.id)
    expect(matchLists([single], sender([], '2001:0db8:0000::0001'))?.id).toBe(single.id)
    expect(matchLists([single], sender([], '2001:db8::2'))).toBeUndefined()
    const range = entry('block', 'ip', '2001:db8:abcd::/48')
    expect(matchLists([range], sender([], '2001:db8:abcd:12::5'))?.id).toBe(range.id)
    expect(matchLists([range], sender([], '2001:db8:abce::5'))).toBeUndefined()
    expect(matchLists([range], sender([], '192.0.2.1'))).toBeUndefined()
  })

  it('the most specific entry wins: address over domain over IP', () => {
    const ip = entry('block', 'ip', '192.0.2.0/24')
    const domain = entry('allow', 'domain', 'example.org')
    const address = entry('block', 'address', 'alice@example.org')
    const s = sender(['alice@example.org'], '192.0.2.1')
    expect(matchLists([ip, domain, address], s)?.id).toBe(address.id)
    expect(matchLists([address, domain, ip], s)?.id).toBe(address.id)
    expect(matchLists([ip, domain], s)?.id).toBe(domain.id)
    expect(matchLists([domain, ip], sender(['bob@other.test'], '192.0.2.1'))?.id).toBe(ip.id)
  })

  it("a domain's own entry beats a tenant-wide entry of the same kind", () => {
    const tenantBlock = entry('block', 'domain', 'example.org')
    const domainAllow = entry('allow', 'domain', 'example.org', 'dom-1')
    expect(matchLists([tenantBlock, domainAllow], sender(['x@example.org']))?.id).toBe(domainAllow.id)
    // but a tenant-wide address still beats a domain's domain entry
    const tenantAddress = entry('block', 'address', 'x@example.org')
    expect(matchLists([domainAllow, tenantAddress], sender(['x@example.org']))?.id).toBe(tenantAddress.id)
  })

  it('between equally specific entries, block wins whatever the order', () => {
    const allow = entry('allow', 'domain', 'example.org')
    const block = entry('block', 'domain', 'example.org')
    expect(matchLists([allow, block], sender(['x@example.org']))?.action).toBe('block')
    expect(matchLists([block, allow], sender(['x@example.org']))?.action).toBe('block')
    // a subdomain entry and the parent's entry are both "domain": block still wins
    const allowSub = entry('allow', 'domain', 'mail.example.org')
    expect(matchLists([allowSub, block], sender(['x@mail.example.org']))?.action).toBe('block')
  })

  it('no entries or no match is undefined', () => {
    expect(matchLists([], sender(['x@example.org'], '192.0.2.1'))).toBeUndefined()
    expect(matchLists([entry('allow', 'address', 'y@example.org')], sender([], null))).toBeUndefined()
  })
})

describe('normalizeListValue', () => {
  it('normalises valid values', () => {
    expect(normalizeListValue('address', '  Alice@Example.ORG ')).toBe('alice@example.org')
    expect(normalizeListValue('domain', '@Example.org.')).toBe('example.org')
    expect(normalizeListValue('domain', 'mail.xn--bcher-kva.example')).toBe('mail.xn--bcher-kva.example')
    expect(normalizeListValue('ip', ' 192.0.2.1 ')).toBe('192.0.2.1')
    expect(normalizeListValue('ip', '192.0.2.0/24')).toBe('192.0.2.0/24')
    expect(normalizeListValue('ip', '2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1')
    expect(normalizeListValue('ip', '2001:db8::/32')).toBe('2001:db8::/32')
  })

  it('stores IPv4-mapped IPv6 as IPv4, so that it matches the (mapped) sender it names', () => {
    expect(normalizeListValue('ip', '::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(normalizeListValue('ip', '::ffff:192.0.2.0/120')).toBe('192.0.2.0/24')
    const e: ListEntry = {
      id: 'm',
      action: 'block',
      kind: 'ip',
      value: normalizeListValue('ip', '::ffff:192.0.2.7'),
      domainId: null,
    }
    expect(matchLists([e], { addresses: [], clientIp: '192.0.2.7' })?.id).toBe('m')
    expect(matchLists([e], { addresses: [], clientIp: '::ffff:192.0.2.7' })?.id).toBe('m')
  })

  it('rejects invalid values with a ListEntryError that quotes the input', () => {
    const cases: [ListEntry['kind'], string, string][] = [
      ['address', 'alice', 'not an email address: "alice"'],
      ['address', 'alice@localhost', 'not an email address: "alice@localhost"'],
      ['address', 'a b@example.org', 'not an email address: "a b@example.org"'],
      ['domain', 'exa mple.org', 'not a domain name: "exa mple.org"'],
      ['domain', 'localhost', 'not a domain name: "localhost"'],
      ['domain', '-bad.example.org', 'not a domain name: "-bad.example.org"'],
      ['domain', '', 'not a domain name: ""'],
      ['ip', '300.1.1.1', 'not an IP address or CIDR range: "300.1.1.1"'],
      ['ip', '192.0.2.0/33', 'not an IP address or CIDR range: "192.0.2.0/33"'],
      ['ip', 'example.org', 'not an IP address or CIDR range: "example.org"'],
      ['ip', '2001:db8::/129', 'not an IP address or CIDR range: "2001:db8::/129"'],
      // inet_aton shorthands would list another address than the one meant
      ['ip', '192.168.1', 'not an IP address or CIDR range: "192.168.1"'],
      ['ip', '010.0.0.1', 'not an IP address or CIDR range: "010.0.0.1"'],
      ['ip', '0x7f.1', 'not an IP address or CIDR range: "0x7f.1"'],
      ['ip', '1', 'not an IP address or CIDR range: "1"'],
      ['ip', '192.0.2.0/', 'not an IP address or CIDR range: "192.0.2.0/"'],
    ]
    for (const [kind, value, messageText] of cases) {
      let caught: unknown
      try {
        normalizeListValue(kind, value)
      } catch (err) {
        caught = err
      }
      expect(caught, `${kind} ${value}`).toBeInstanceOf(ListEntryError)
      expect((caught as Error).message).toBe(messageText)
      expect((caught as Error).name).toBe('ListEntryError')
    }
  })
})
