import type { Resolver } from 'node:dns/promises'
import net from 'node:net'

export type MxResolver = Pick<Resolver, 'resolveMx' | 'resolve4' | 'resolve6'>

/** One MX host with its addresses, in preference order. */
export interface MxHost {
  name: string
  priority: number
  addresses: string[]
}

export type MxAnswer = { ok: true; hosts: MxHost[] } | { ok: false; permanent: boolean; reason: string }

const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA'])

/**
 * Where mail for `domain` goes: its MX hosts by preference (random among equals), each with its
 * IPv4 and IPv6 addresses; without MX records, the domain's own A/AAAA (RFC 5321 §5.1). A null MX
 * (RFC 7505) or a domain that does not exist is a permanent failure; a DNS server that does not
 * answer is temporary.
 */
export async function resolveMx(
  resolver: MxResolver,
  domain: string,
  random = Math.random,
): Promise<MxAnswer> {
  if (net.isIP(domain.replace(/^\[|\]$/g, ''))) {
    return { ok: true, hosts: [{ name: domain, priority: 0, addresses: [domain.replace(/^\[|\]$/g, '')] }] }
  }
  let records: { exchange: string; priority: number }[]
  try {
    records = await resolver.resolveMx(domain)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (code === 'ENOTFOUND')
      return { ok: false, permanent: true, reason: `${domain} does not exist (NXDOMAIN)` }
    if (code !== 'ENODATA')
      return {
        ok: false,
        permanent: false,
        reason: `MX lookup for ${domain} failed (${code || String(err)})`,
      }
    records = []
  }
  const cleaned = records.map((r) => ({
    exchange: r.exchange.replace(/\.$/, '').toLowerCase(),
    priority: r.priority,
  }))
  if (cleaned.length === 1 && cleaned[0]?.exchange === '') {
    return { ok: false, permanent: true, reason: `${domain} accepts no mail (null MX, RFC 7505)` }
  }
  const mx = cleaned.filter((r) => r.exchange !== '')
  const targets = mx.length
    ? mx
        .map((r) => ({ ...r, key: random() }))
        .sort((a, b) => a.priority - b.priority || a.key - b.key)
        .map(({ exchange, priority }) => ({ exchange, priority }))
    : [{ exchange: domain, priority: 0 }]
  const hosts: MxHost[] = []
  let lastError = ''
  let temporary = false
  for (const t of targets) {
    const [v4, v6] = await Promise.all([
      resolver.resolve4(t.exchange).catch((err: NodeJS.ErrnoException) => {
        if (!NOT_FOUND.has(err.code ?? '')) temporary = true
        lastError = err.code ?? String(err)
        return [] as string[]
      }),
      resolver.resolve6(t.exchange).catch((err: NodeJS.ErrnoException) => {
        if (!NOT_FOUND.has(err.code ?? '') && err.code !== 'ENOTIMP') temporary = true
        return [] as string[]
      }),
    ])
    if (v4.length || v6.length)
      hosts.push({ name: t.exchange, priority: t.priority, addresses: [...v4, ...v6] })
  }
  if (hosts.length) return { ok: true, hosts }
  const what = mx.length
    ? `its MX hosts (${mx.map((r) => r.exchange).join(', ')}) have no address`
    : `${domain} has no MX and no address`
  return { ok: false, permanent: !temporary, reason: `${what}${lastError ? ` (${lastError})` : ''}` }
}
