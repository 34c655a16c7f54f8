import { Resolver } from 'node:dns/promises'

/**
 * The resolver every DNS check uses: the servers in `MOAT_DNS_SERVERS` (`ip` or `ip:port`), or
 * the system's when unset.
 */
export function createResolver(servers: string[] | undefined): Resolver {
  const resolver = new Resolver({ timeout: 3000, tries: 2 })
  if (servers?.length) resolver.setServers(servers)
  return resolver
}

export type DnsResolver = Pick<Resolver, 'resolveTxt' | 'resolveMx'>
