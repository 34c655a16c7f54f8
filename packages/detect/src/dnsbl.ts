import ipaddr from 'ipaddr.js'
import { getDomain } from 'tldts'
import type { DnsLookup } from './dns'
import type { Hit } from './rules'

/**
 * A DNS blocklist zone. `ip` zones are asked about the connecting IP (reversed, as RFC 5782 says);
 * `domain` zones about the registrable domains of the links in the body. Each answer code maps to a
 * symbol and weight; an answer not listed in `codes` gets the zone's own `symbol` and `score`.
 */
export interface DnsblZone {
  zone: string
  type: 'ip' | 'domain'
  symbol: string
  score: number
  codes?: Record<string, { symbol: string; score: number }>
}

/** At most this many link domains are looked up per message. */
const MAX_DOMAINS = 10

/** RFC 5782 query name for an IP in a zone: reversed octets, or reversed nibbles for IPv6. */
export function dnsblName(ip: string, zone: string): string | undefined {
  if (!ipaddr.isValid(ip)) return undefined
  let addr = ipaddr.parse(ip)
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress())
    addr = (addr as ipaddr.IPv6).toIPv4Address()
  if (addr.kind() === 'ipv4') return `${addr.toByteArray().reverse().join('.')}.${zone}`
  const hex = (addr as ipaddr.IPv6)
    .toByteArray()
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('')
  return `${hex.split('').reverse().join('.')}.${zone}`
}

/** Looks the connecting IP and the link domains up in every configured zone, in parallel. */
export async function checkBlocklists(
  zones: readonly DnsblZone[],
  input: { clientIp: string | null; linkHosts: readonly string[] },
  lookup: DnsLookup,
): Promise<{ hits: Hit[]; errors: string[] }> {
  if (!zones.length) return { hits: [], errors: [] }
  const domains = [
    ...new Set(
      input.linkHosts
        .map((h) => (ipaddr.isValid(h) ? undefined : getDomain(h)))
        .filter((d): d is string => Boolean(d)),
    ),
  ].slice(0, MAX_DOMAINS)
  const queries: { zone: DnsblZone; name: string; listed: string }[] = []
  for (const zone of zones) {
    if (zone.type === 'ip' && input.clientIp) {
      const name = dnsblName(input.clientIp, zone.zone)
      if (name) queries.push({ zone, name, listed: input.clientIp })
    }
    if (zone.type === 'domain')
      for (const d of domains) queries.push({ zone, name: `${d}.${zone.zone}`, listed: d })
  }
  const hits: Hit[] = []
  const errors: string[] = []
  const seen = new Set<string>()
  await Promise.all(
    queries.map(async (q) => {
      let answers: string[]
      try {
        answers = (await lookup(q.name, 'A')) as string[]
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code !== 'ENOTFOUND' && code !== 'ENODATA') errors.push(`${q.zone.zone}: ${code ?? String(err)}`)
        return
      }
      for (const a of answers) {
        // RFC 5782: answers are 127.0.0.0/8; anything else is a broken or hijacked zone
        if (!a.startsWith('127.')) continue
        const mapped = q.zone.codes?.[a] ?? { symbol: q.zone.symbol, score: q.zone.score }
        const key = `${mapped.symbol} ${q.listed}`
        if (seen.has(key)) continue
        seen.add(key)
        hits.push({
          name: mapped.symbol,
          score: mapped.score,
          detail: `${q.listed} in ${q.zone.zone} (${a})`,
        })
      }
    }),
  )
  return { hits, errors }
}
