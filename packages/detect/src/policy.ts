import ipaddr from 'ipaddr.js'

/** What happens to a message. */
export type Action = 'deliver' | 'tag' | 'quarantine' | 'discard'

/**
 * A tenant's spam policy, optionally overridden per domain. `null` thresholds are off; a score at
 * or above a threshold takes that action, the strongest one that applies winning.
 */
export interface Policy {
  tagThreshold: number | null
  quarantineThreshold: number | null
  discardThreshold: number | null
  /** prefixed to the Subject of tagged mail, e.g. `[SPAM]`; null leaves the subject alone */
  subjectPrefix: string | null
}

export const DEFAULT_POLICY: Policy = {
  tagThreshold: 5,
  quarantineThreshold: 7,
  discardThreshold: null,
  subjectPrefix: null,
}

/** Field by field: the domain's setting, else the tenant's, else the default. `undefined` inherits. */
export function resolvePolicy(...layers: (Partial<Policy> | undefined)[]): Policy {
  const out: Policy = { ...DEFAULT_POLICY }
  for (const layer of layers) {
    if (!layer) continue
    for (const key of Object.keys(out) as (keyof Policy)[]) {
      const v = layer[key]
      if (v !== undefined) (out as unknown as Record<string, unknown>)[key] = v
    }
  }
  return out
}

/** An allow or block entry: a sender address, a sender domain (and its subdomains), or an IP/CIDR. */
export interface ListEntry {
  id: string
  action: 'allow' | 'block'
  kind: 'address' | 'domain' | 'ip'
  value: string
  /** set when the entry belongs to one domain rather than the whole tenant */
  domainId: string | null
  note?: string | null
}

export interface Sender {
  /** envelope sender and header From address, lower-cased; either may be empty */
  addresses: string[]
  clientIp: string | null
}

export class ListEntryError extends Error {
  override name = 'ListEntryError'
}

/** Normalises and checks an entry's value; throws a {@link ListEntryError} that says what is wrong. */
export function normalizeListValue(kind: ListEntry['kind'], value: string): string {
  const v = value.trim().toLowerCase()
  if (kind === 'address') {
    if (!/^[^\s@]+@[a-z0-9.-]+\.[a-z0-9-]{2,}$/.test(v))
      throw new ListEntryError(`not an email address: ${JSON.stringify(value)}`)
    return v
  }
  if (kind === 'domain') {
    const d = v.replace(/^@/, '').replace(/\.$/, '')
    if (!/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(d))
      throw new ListEntryError(`not a domain name: ${JSON.stringify(value)}`)
    return d
  }
  const invalid = new ListEntryError(`not an IP address or CIDR range: ${JSON.stringify(value)}`)
  const [text = '', bitsText] = v.split('/', 2)
  // IPv4 only as four decimal parts: inet_aton forms ("10.1", "010.0.0.1" as octal) would silently
  // list another address than the operator meant
  if (!ipaddr.IPv6.isValid(text) && !ipaddr.IPv4.isValidFourPartDecimal(text)) throw invalid
  try {
    let addr = ipaddr.parse(text)
    let bits = bitsText === undefined ? undefined : ipaddr.parseCIDR(v)[1]
    // IPv4-mapped IPv6 is stored as IPv4: senders' mapped addresses are matched as IPv4
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && (bits ?? 128) >= 96) {
      addr = (addr as ipaddr.IPv6).toIPv4Address()
      if (bits !== undefined) bits -= 96
    }
    return bits === undefined ? addr.toString() : `${addr.toString()}/${bits}`
  } catch {
    throw invalid
  }
}

function matches(entry: ListEntry, sender: Sender): string | undefined {
  if (entry.kind === 'address') return sender.addresses.find((a) => a === entry.value)
  if (entry.kind === 'domain')
    return sender.addresses.find((a) => {
      const d = a.slice(a.lastIndexOf('@') + 1)
      return d === entry.value || d.endsWith(`.${entry.value}`)
    })
  if (!sender.clientIp || !ipaddr.isValid(sender.clientIp)) return undefined
  let ip = ipaddr.parse(sender.clientIp)
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress())
    ip = (ip as ipaddr.IPv6).toIPv4Address()
  try {
    if (entry.value.includes('/')) {
      const range = ipaddr.parseCIDR(entry.value)
      return ip.kind() === range[0].kind() && ip.match(range) ? sender.clientIp : undefined
    }
    return ipaddr.parse(entry.value).toString() === ip.toString() ? sender.clientIp : undefined
  } catch {
    return undefined
  }
}

const SPECIFICITY = { address: 3, domain: 2, ip: 1 }

/**
 * The list entry that decides for this sender, if any. The most specific match wins (address over
 * domain over IP; a domain's own entry over a tenant-wide one); between equals, block wins.
 */
export function matchLists(
  entries: readonly ListEntry[],
  sender: Sender,
): (ListEntry & { matched: string }) | undefined {
  let best: (ListEntry & { matched: string }) | undefined
  let bestRank = -1
  for (const e of entries) {
    const matched = matches(e, sender)
    if (!matched) continue
    const rank = SPECIFICITY[e.kind] * 4 + (e.domainId ? 2 : 0) + (e.action === 'block' ? 1 : 0)
    if (rank > bestRank) {
      best = { ...e, matched }
      bestRank = rank
    }
  }
  return best
}

export interface Decision {
  action: Action
  reason: string
  /** the list entry that overrode the score, if one did */
  listed?: { id: string; action: 'allow' | 'block'; kind: string; value: string }
}

/** Score and lists → action. Virus handling is not here: an infected message always quarantines. */
export function decide(score: number, policy: Policy, listed?: ListEntry & { matched: string }): Decision {
  if (listed) {
    const info = { id: listed.id, action: listed.action, kind: listed.kind, value: listed.value }
    return listed.action === 'allow'
      ? {
          action: 'deliver',
          reason: `allowed by ${listed.kind} ${listed.value} (score ${fmt(score)} ignored)`,
          listed: info,
        }
      : { action: 'quarantine', reason: `blocked by ${listed.kind} ${listed.value}`, listed: info }
  }
  const s = fmt(score)
  if (policy.discardThreshold !== null && score >= policy.discardThreshold)
    return { action: 'discard', reason: `spam: score ${s} ≥ discard threshold ${policy.discardThreshold}` }
  if (policy.quarantineThreshold !== null && score >= policy.quarantineThreshold)
    return {
      action: 'quarantine',
      reason: `spam: score ${s} ≥ quarantine threshold ${policy.quarantineThreshold}`,
    }
  if (policy.tagThreshold !== null && score >= policy.tagThreshold)
    return { action: 'tag', reason: `probable spam: score ${s} ≥ tag threshold ${policy.tagThreshold}` }
  return { action: 'deliver', reason: `clean: score ${s}` }
}

export function fmt(score: number): string {
  return (Math.round(score * 100) / 100).toFixed(2)
}
