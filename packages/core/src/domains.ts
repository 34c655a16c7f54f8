import { randomBytes } from 'node:crypto'
import { domains, type Executor, newId, tenants } from '@moat/db'
import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, ne, or, sql } from 'drizzle-orm'
import { recordAudit } from './audit'
import type { DnsResolver } from './dns'
import { MoatError } from './errors'
import { findTenant } from './tenants'

export type Domain = typeof domains.$inferSelect

/** Domain states in which Moat accepts mail for the domain. */
export const ACCEPTING_STATUSES = ['verified', 'active'] as const

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/

export function normalizeDomain(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '')
}

export const VERIFICATION_PREFIX = 'moat-verification='

/** The DNS records a customer publishes for a domain, as zone-file lines. */
export function requiredRecords(domain: Domain, mxHosts: string[]): { txt: string; mx: string[] } {
  return {
    txt: `${domain.name}. 3600 IN TXT "${VERIFICATION_PREFIX}${domain.verificationToken}"`,
    mx: mxHosts.map((host, i) => `${domain.name}. 3600 IN MX ${(i + 1) * 10} ${host}.`),
  }
}

/** Adds a domain to a tenant, pending verification. */
export async function addDomain(
  db: Executor,
  input: { tenant: string; name: string; actor: string },
): Promise<Domain> {
  const name = normalizeDomain(input.name)
  if (!DOMAIN.test(name)) {
    throw new MoatError(
      'invalid',
      `invalid domain name ${JSON.stringify(input.name)}`,
      'give a name like example.com',
    )
  }
  return db.transaction(async (tx) => {
    const tenant = await findTenant(tx, input.tenant)
    const mine = await tx
      .select()
      .from(domains)
      .where(and(eq(domains.tenantId, tenant.id), eq(domains.name, name)))
    if (mine.length) throw new MoatError('conflict', `${name} is already added to ${tenant.name}`)
    const taken = await tx
      .select({ id: domains.id })
      .from(domains)
      .where(and(eq(domains.name, name), isNotNull(domains.verifiedAt)))
    if (taken.length) {
      throw new MoatError(
        'conflict',
        `${name} is already verified by another customer`,
        'contact support if it is yours',
      )
    }
    const [domain] = await tx
      .insert(domains)
      .values({
        id: newId('dom'),
        tenantId: tenant.id,
        name,
        verificationToken: randomBytes(16).toString('hex'),
      })
      .returning()
    if (!domain) throw new Error('insert returned no domain')
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor: input.actor,
      action: 'domain.add',
      target: domain.id,
      detail: { name },
    })
    return domain
  })
}

/** Verifies one domain by id, whatever its tenant (the operator's force-verify). */
export async function verifyDomainById(
  db: Executor,
  resolver: DnsResolver,
  input: { id: string; mxHosts: string[]; actor: string; force?: boolean },
): Promise<VerificationResult> {
  const [domain] = await db.select().from(domains).where(eq(domains.id, input.id))
  if (!domain) throw new MoatError('not_found', `no domain ${input.id}`)
  return verifyDomain(db, resolver, { ...input, name: domain.name, tenantId: domain.tenantId })
}

/**
 * The background check: every domain whose last check is older than `intervalSeconds` is checked
 * again, `batch` at a time, oldest first. Pending domains become verified when their TXT record
 * appears; active domains whose MX records stop naming Moat are reported (`domain.mx_drift` in
 * the audit log, `mxDriftAt` on the domain) and become `verified` again. Returns how many were checked.
 */
export async function recheckDomains(
  db: Executor,
  resolver: DnsResolver,
  input: { mxHosts: string[]; intervalSeconds: number; batch?: number },
): Promise<{ checked: number; failed: number }> {
  const due = await db
    .select({ id: domains.id, name: domains.name, tenantId: domains.tenantId })
    .from(domains)
    .where(
      or(
        isNull(domains.lastCheckAt),
        lt(domains.lastCheckAt, new Date(Date.now() - input.intervalSeconds * 1000)),
      ),
    )
    .orderBy(sql`${domains.lastCheckAt} asc nulls first`, asc(domains.id))
    .limit(input.batch ?? 100)
  let failed = 0
  for (const d of due) {
    try {
      await verifyDomain(db, resolver, {
        name: d.name,
        tenantId: d.tenantId,
        mxHosts: input.mxHosts,
        actor: 'system:recheck',
      })
    } catch {
      // a clash with another tenant's claim is not this domain's news; it is retried next round
      failed++
      await db.update(domains).set({ lastCheckAt: new Date() }).where(eq(domains.id, d.id))
    }
  }
  return { checked: due.length, failed }
}

export interface VerificationResult {
  domain: Domain
  tenantName: string
  verified: boolean
  /** why verification failed, in words */
  reason?: string
  mx: { hosts: string[]; pointsAtMoat: boolean; error?: string }
}

/**
 * Checks a domain's DNS: the TXT verification token (verifies it) and whether its MX records name
 * Moat's hosts (activates it). `force` lets an operator verify without DNS; the override goes into
 * the audit log. When several tenants have added the name, the one whose token is published wins.
 */
export async function verifyDomain(
  db: Executor,
  resolver: DnsResolver,
  input: {
    name: string
    mxHosts: string[]
    actor: string
    force?: boolean
    /** the operator's choice: a tenant id or name */
    tenant?: string
    /** the caller's tenant, for customers: only its own domain is considered */
    tenantId?: string
  },
): Promise<VerificationResult> {
  const name = normalizeDomain(input.name)
  const candidates = await db
    .select({ domain: domains, tenantName: tenants.name })
    .from(domains)
    .innerJoin(tenants, eq(tenants.id, domains.tenantId))
    .where(eq(domains.name, name))
  const scoped = candidates.filter(
    (c) =>
      (!input.tenant || c.tenantName === input.tenant.toLowerCase() || c.domain.tenantId === input.tenant) &&
      (!input.tenantId || c.domain.tenantId === input.tenantId),
  )
  if (!scoped.length) {
    throw new MoatError(
      'not_found',
      `${name} has not been added`,
      'add it first with: moat domain add TENANT DOMAIN',
    )
  }
  const owner = scoped.find((c) => c.domain.verifiedAt)
  if (input.force && scoped.length > 1 && !owner) {
    throw new MoatError('conflict', `${name} is pending for several tenants`, 'name one with --tenant')
  }

  const txt = await lookupTxt(resolver, name)
  const mx = await lookupMx(resolver, name, input.mxHosts)
  const winner =
    owner ??
    scoped.find((c) => txt.values.includes(`${VERIFICATION_PREFIX}${c.domain.verificationToken}`)) ??
    (input.force ? scoped[0] : undefined)
  const target = winner ?? scoped[0]
  if (!target) throw new Error('unreachable: no candidate domain')

  let reason: string | undefined
  if (!winner) {
    const expected = `${VERIFICATION_PREFIX}${target.domain.verificationToken}`
    reason = txt.error
      ? `no TXT record at ${name} (${txt.error}); publish: ${name}. TXT "${expected}"`
      : `the TXT records at ${name} do not include "${expected}" (found: ${txt.values.map((v) => JSON.stringify(v)).join(', ')})`
  }

  const verified = Boolean(winner)
  const before = target.domain
  // a DNS server that did not answer says nothing about the MX records: keep what was known
  const pointsAtMoat = mx.transient ? Boolean(before.mxPointsAtMoat) : mx.pointsAtMoat
  const drifting = verified && !pointsAtMoat && (before.status === 'active' || before.mxDriftAt !== null)
  const mxDriftAt = drifting ? (before.mxDriftAt ?? new Date()) : null
  const byOperator =
    !owner && verified && !txt.values.includes(`${VERIFICATION_PREFIX}${target.domain.verificationToken}`)
  const now = new Date()
  const updated = await db.transaction(async (tx) => {
    if (verified && !target.domain.verifiedAt) {
      const clash = await tx
        .select({ id: domains.id })
        .from(domains)
        .where(and(eq(domains.name, name), isNotNull(domains.verifiedAt), ne(domains.id, target.domain.id)))
      if (clash.length) throw new MoatError('conflict', `${name} is already verified by another customer`)
    }
    const [row] = await tx
      .update(domains)
      .set({
        status: verified ? (pointsAtMoat ? 'active' : 'verified') : 'pending',
        verifiedAt: verified ? (target.domain.verifiedAt ?? now) : null,
        verifiedBy: verified ? (target.domain.verifiedBy ?? (byOperator ? 'operator' : 'dns')) : null,
        mxPointsAtMoat: pointsAtMoat,
        mxDriftAt,
        lastCheckAt: now,
        lastCheckResult:
          reason ??
          (mxDriftAt
            ? `MX drift since ${mxDriftAt.toISOString()}: the MX records name ${mx.hosts.join(', ') || 'nothing'} (${mx.error ?? 'not Moat'}); mail that still reaches Moat is accepted`
            : pointsAtMoat
              ? `verified; MX points at Moat${mx.transient ? ` (kept: ${mx.error})` : ''}`
              : 'verified; MX does not point at Moat yet'),
      })
      .where(eq(domains.id, target.domain.id))
      .returning()
    if (!row) throw new Error('domain disappeared during verification')
    if (byOperator) {
      await recordAudit(tx, {
        tenantId: row.tenantId,
        actor: input.actor,
        action: 'domain.force_verify',
        target: row.id,
        detail: { name, txtFound: txt.values, reason: 'operator override' },
      })
    } else if (verified && !target.domain.verifiedAt) {
      await recordAudit(tx, {
        tenantId: row.tenantId,
        actor: input.actor,
        action: 'domain.verify',
        target: row.id,
        detail: { name },
      })
    }
    if (mxDriftAt && !before.mxDriftAt) {
      await recordAudit(tx, {
        tenantId: row.tenantId,
        actor: input.actor,
        action: 'domain.mx_drift',
        target: row.id,
        detail: { name, mx: mx.hosts, expected: input.mxHosts, ...(mx.error ? { error: mx.error } : {}) },
      })
    } else if (!mxDriftAt && before.mxDriftAt && pointsAtMoat) {
      await recordAudit(tx, {
        tenantId: row.tenantId,
        actor: input.actor,
        action: 'domain.mx_restored',
        target: row.id,
        detail: { name, mx: mx.hosts, driftSince: before.mxDriftAt.toISOString() },
      })
    }
    // a name verified here can no longer be claimed by the other tenants that added it
    const others = candidates.filter((c) => c.domain.id !== row.id).map((c) => c.domain.id)
    if (verified && others.length) {
      await tx
        .update(domains)
        .set({ lastCheckResult: `verified by another customer on ${now.toISOString()}` })
        .where(inArray(domains.id, others))
    }
    return row
  })
  return { domain: updated, tenantName: target.tenantName, verified, reason, mx }
}

async function lookupTxt(resolver: DnsResolver, name: string): Promise<{ values: string[]; error?: string }> {
  try {
    const records = await resolver.resolveTxt(name)
    return { values: records.map((chunks) => chunks.join('')) }
  } catch (err) {
    return { values: [], error: dnsError(err) }
  }
}

async function lookupMx(
  resolver: DnsResolver,
  name: string,
  mxHosts: string[],
): Promise<{ hosts: string[]; pointsAtMoat: boolean; error?: string; transient?: boolean }> {
  try {
    const records = await resolver.resolveMx(name)
    const hosts = records.sort((a, b) => a.priority - b.priority).map((r) => normalizeDomain(r.exchange))
    const ours = new Set(mxHosts.map(normalizeDomain))
    return { hosts, pointsAtMoat: hosts.some((h) => ours.has(h)) }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    const transient = !['ENODATA', 'ENOTFOUND'].includes(code)
    return { hosts: [], pointsAtMoat: false, error: dnsError(err), transient }
  }
}

function dnsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  switch (code) {
    case 'ENODATA':
      return 'no records of that type'
    case 'ENOTFOUND':
      return 'the name does not exist'
    case 'ETIMEOUT':
    case 'ECONNREFUSED':
      return 'the DNS server did not answer'
    default:
      return code ?? String(err)
  }
}

/** Finds the domain that accepts mail for `name`, with its tenant, or nothing. */
export async function findAcceptingDomain(
  db: Executor,
  name: string,
): Promise<{ domainId: string; tenantId: string } | undefined> {
  const [row] = await db
    .select({ domainId: domains.id, tenantId: domains.tenantId })
    .from(domains)
    .innerJoin(tenants, eq(tenants.id, domains.tenantId))
    .where(
      and(
        eq(domains.name, normalizeDomain(name)),
        inArray(domains.status, [...ACCEPTING_STATUSES]),
        isNotNull(domains.verifiedAt),
      ),
    )
  return row
}

export async function listDomains(
  db: Executor,
  tenant?: string,
): Promise<(Domain & { tenantName: string })[]> {
  const rows = await db
    .select({ domain: domains, tenantName: tenants.name })
    .from(domains)
    .innerJoin(tenants, eq(tenants.id, domains.tenantId))
    .where(tenant ? eq(domains.tenantId, (await findTenant(db, tenant)).id) : undefined)
    .orderBy(domains.name)
  return rows.map((r) => ({ ...r.domain, tenantName: r.tenantName }))
}

/**
 * The domain of that name that routes and mail hang off: the verified one, or the only one added.
 */
export async function findDomain(db: Executor, name: string): Promise<Domain> {
  const normalized = normalizeDomain(name)
  const rows = await db.select().from(domains).where(eq(domains.name, normalized))
  const verified = rows.find((d) => d.verifiedAt)
  if (verified) return verified
  if (rows.length === 1 && rows[0]) return rows[0]
  if (rows.length > 1) {
    throw new MoatError(
      'conflict',
      `${normalized} is pending for several tenants`,
      `verify it first: moat domain verify ${normalized}`,
    )
  }
  throw new MoatError(
    'not_found',
    `${normalized} has not been added`,
    'add it with: moat domain add TENANT DOMAIN',
  )
}

/** One of the tenant's domains by id; another tenant's domain is `not_found`, like a missing one. */
export async function getDomain(db: Executor, tenantId: string, id: string): Promise<Domain> {
  const [domain] = await db
    .select()
    .from(domains)
    .where(and(eq(domains.tenantId, tenantId), eq(domains.id, id)))
  if (!domain) throw new MoatError('not_found', `no domain ${id}`)
  return domain
}

/** The tenant's domains, oldest first, `limit` at a time after `cursor` (a domain id). */
export async function pageDomains(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: string | undefined },
): Promise<Domain[]> {
  return db
    .select()
    .from(domains)
    .where(and(eq(domains.tenantId, input.tenantId), input.cursor ? gt(domains.id, input.cursor) : undefined))
    .orderBy(asc(domains.id))
    .limit(input.limit)
}
