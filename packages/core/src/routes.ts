import { type Executor, newId, routes } from '@moat/db'
import { asc, eq } from 'drizzle-orm'
import { recordAudit } from './audit'
import { type Domain, findDomain, getDomain } from './domains'
import { MoatError } from './errors'

export type Route = typeof routes.$inferSelect

export interface Destination {
  host: string
  port: number
  priority: number
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
  return db.transaction(async (tx) => replaceRoutes(tx, await findDomain(tx, input.domain), input))
}

/** Replaces the destination servers of one of the tenant's domains (the customer's view). */
export async function setDomainRoutes(
  db: Executor,
  input: { tenantId: string; domainId: string; destinations: Destination[]; actor: string },
): Promise<Route[]> {
  checkDestinations(input.destinations)
  return db.transaction(async (tx) =>
    replaceRoutes(tx, await getDomain(tx, input.tenantId, input.domainId), input),
  )
}

function checkDestinations(destinations: Destination[]): void {
  if (!destinations.length) {
    throw new MoatError('invalid', 'no destination given', 'give at least one HOST:PORT[:PRIORITY]')
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
 * Orders destinations for one delivery: ascending priority, and a random order among equal
 * priorities so that load spreads across them.
 */
export function orderDestinations<T extends { priority: number }>(list: T[], random = Math.random): T[] {
  return list
    .map((d) => ({ d, key: random() }))
    .sort((a, b) => a.d.priority - b.d.priority || a.key - b.key)
    .map((x) => x.d)
}
