import { type Executor, newId, routes } from '@moat/db'
import { asc, eq } from 'drizzle-orm'
import { recordAudit } from './audit'
import { type Domain, findDomain, getDomain } from './domains'
import { MoatError } from './errors'

export type Route = typeof routes.$inferSelect

export const TLS_MODES = ['opportunistic', 'required'] as const
export type TlsMode = (typeof TLS_MODES)[number]

export interface Destination {
  host: string
  port: number
  priority: number
  /** `opportunistic` (the default): STARTTLS when offered; `required`: no delivery in the clear */
  tls?: TlsMode
  /** set: this destination is for this one recipient address only, instead of the domain's others */
  recipient?: string | null
}

/**
 * Parses `HOST:PORT[:PRIORITY]` (IPv6 hosts in brackets: `[::1]:25:10`). Priority defaults to 10;
 * lower numbers are tried first.
 */
export function parseDestination(spec: string): Destination {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})(?::(\d{1,5}))?$/i.exec(spec.trim())
  const port = Number(m?.[2])
  if (!m?.[1] || port < 1 || port > 65535) {
    throw new MoatError(
      'invalid',
      `invalid destination ${JSON.stringify(spec)}`,
      'write HOST:PORT or HOST:PORT:PRIORITY, e.g. mail.example.com:25:10',
    )
  }
  return { host: m[1].replace(/^\[|\]$/g, ''), port, priority: m[3] === undefined ? 10 : Number(m[3]) }
}

/** Replaces a domain's destination servers; the domain is found by name (the operator's view). */
export async function setRoutes(
  db: Executor,
  input: { domain: string; destinations: Destination[]; actor: string },
): Promise<Route[]> {
  checkDestinations(input.destinations)
  return db.transaction(async (tx) => {
    const domain = await findDomain(tx, input.domain)
    checkRecipients(domain, input.destinations)
    return replaceRoutes(tx, domain, input)
  })
}

/** Replaces the destination servers of one of the tenant's domains (the customer's view). */
export async function setDomainRoutes(
  db: Executor,
  input: { tenantId: string; domainId: string; destinations: Destination[]; actor: string },
): Promise<Route[]> {
  checkDestinations(input.destinations)
  return db.transaction(async (tx) => {
    const domain = await getDomain(tx, input.tenantId, input.domainId)
    checkRecipients(domain, input.destinations)
    return replaceRoutes(tx, domain, input)
  })
}

function checkDestinations(destinations: Destination[]): void {
  if (!destinations.length) {
    throw new MoatError('invalid', 'no destination given', 'give at least one HOST:PORT[:PRIORITY]')
  }
}

/**
 * A per-recipient destination must name an address of the domain itself, and the domain must keep
 * at least one destination for everybody else.
 */
function checkRecipients(domain: Domain, destinations: Destination[]): void {
  for (const d of destinations) {
    if (!d.recipient) continue
    const address = d.recipient.trim().toLowerCase()
    if (!address.endsWith(`@${domain.name}`) || !/^[^\s@]+@[^\s@]+$/.test(address)) {
      throw new MoatError(
        'invalid',
        `${JSON.stringify(d.recipient)} is not an address at ${domain.name}`,
        `a per-recipient destination takes an address like someone@${domain.name}`,
      )
    }
  }
  if (destinations.every((d) => d.recipient)) {
    throw new MoatError(
      'invalid',
      'every destination is for one recipient only',
      'add at least one destination without a recipient, for the rest of the domain',
    )
  }
}

async function replaceRoutes(
  tx: Executor,
  domain: Domain,
  input: { destinations: Destination[]; actor: string },
): Promise<Route[]> {
  await tx.delete(routes).where(eq(routes.domainId, domain.id))
  const rows = await tx
    .insert(routes)
    .values(
      input.destinations.map((d) => ({
        id: newId('rte'),
        tenantId: domain.tenantId,
        domainId: domain.id,
        host: d.host,
        port: d.port,
        priority: d.priority,
        tls: d.tls ?? 'opportunistic',
        recipient: d.recipient ? d.recipient.trim().toLowerCase() : null,
      })),
    )
    .returning()
  await recordAudit(tx, {
    tenantId: domain.tenantId,
    actor: input.actor,
    action: 'route.set',
    target: domain.id,
    detail: { domain: domain.name, destinations: input.destinations },
  })
  return rows.sort((a, b) => a.priority - b.priority)
}

export async function listRoutes(db: Executor, domainId: string): Promise<Route[]> {
  return db.select().from(routes).where(eq(routes.domainId, domainId)).orderBy(asc(routes.priority))
}

/**
 * Splits a delivery's recipients by destination: each recipient with destinations of its own goes
 * there alone; everyone else goes to the domain's shared destinations (in priority order).
 */
export function routeRecipients<R extends { recipient: string | null; priority: number }>(
  routes: R[],
  addresses: string[],
): { routes: R[]; addresses: string[] }[] {
  const shared = { routes: orderDestinations(routes.filter((r) => !r.recipient)), addresses: [] as string[] }
  const own = new Map<string, { routes: R[]; addresses: string[] }>()
  for (const address of addresses) {
    const mine = routes.filter((r) => r.recipient === address.toLowerCase())
    if (mine.length) own.set(address, { routes: orderDestinations(mine), addresses: [address] })
    else shared.addresses.push(address)
  }
  return [...(shared.addresses.length ? [shared] : []), ...own.values()]
}

/**
 * Orders destinations for one delivery: ascending priority, and a random order among equal
 * priorities so that load spreads across them.
 */
export function orderDestinations<T extends { priority: number }>(list: T[], random = Math.random): T[] {
  return list
    .map((d) => ({ d, key: random() }))
    .sort((a, b) => a.d.priority - b.d.priority || a.key - b.key)
    .map((x) => x.d)
}
