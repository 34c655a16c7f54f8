import type { Resolver } from 'node:dns/promises'

/** A DNS lookup in the shape mailauth expects: `(name, rrtype) → records`. */
export type DnsLookup = (name: string, rrtype: string) => Promise<unknown>

interface Entry {
  at: number
  result: Promise<unknown>
}

/**
 * Wraps a resolver with a small in-process cache, answers and NXDOMAIN alike, so that a burst of
 * mail from one sender asks DNS once. Entries live `ttlMs` (DNS TTLs are not exposed by Node's
 * resolver, so one short lifetime stands in for them); at most `max` names are kept.
 */
export function cachedLookup(resolver: Pick<Resolver, 'resolve'>, ttlMs = 60_000, max = 20_000): DnsLookup {
  const cache = new Map<string, Entry>()
  return (name, rrtype) => {
    const key = `${rrtype} ${name.toLowerCase()}`
    const now = Date.now()
    const found = cache.get(key)
    if (found && now - found.at < ttlMs) return found.result
    const result = (resolver.resolve as (n: string, t: string) => Promise<unknown>)(name, rrtype)
    // temporary failures are not cached: the next message asks again
    result.catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTFOUND' && err.code !== 'ENODATA') cache.delete(key)
    })
    if (cache.size >= max) cache.delete(cache.keys().next().value as string)
    cache.set(key, { at: now, result })
    return result
  }
}
