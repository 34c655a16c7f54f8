import { type Executor, newId, tenants } from '@moat/db'
import { and, asc, eq, getTableColumns, gt, or, sql } from 'drizzle-orm'
import { recordAudit } from './audit'
import { MoatError } from './errors'

export type Tenant = typeof tenants.$inferSelect

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/i

/** Creates a tenant (a customer account). Names are unique, case-insensitively. */
export async function createTenant(db: Executor, input: { name: string; actor: string }): Promise<Tenant> {
  const name = input.name.trim()
  if (!NAME.test(name)) {
    throw new MoatError(
      'invalid',
      `invalid tenant name ${JSON.stringify(input.name)}`,
      'use 1 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit',
    )
  }
  return db.transaction(async (tx) => {
    const existing = await tx.select().from(tenants).where(eq(tenants.name, name.toLowerCase()))
    if (existing.length) throw new MoatError('conflict', `tenant ${name} already exists`, 'pick another name')
    const [tenant] = await tx
      .insert(tenants)
      .values({ id: newId('ten'), name: name.toLowerCase() })
      .returning()
    if (!tenant) throw new Error('insert returned no tenant')
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor: input.actor,
      action: 'tenant.create',
      target: tenant.id,
      detail: { name: tenant.name },
    })
    return tenant
  })
}

/** Finds a tenant by id or name. */
export async function findTenant(db: Executor, idOrName: string): Promise<Tenant> {
  const [tenant] = await db
    .select()
    .from(tenants)
    .where(or(eq(tenants.id, idOrName), eq(tenants.name, idOrName.toLowerCase())))
  if (!tenant) {
    throw new MoatError('not_found', `no tenant ${idOrName}`, 'create it with: moat tenant create NAME')
  }
  return tenant
}

export async function listTenants(db: Executor): Promise<Tenant[]> {
  return db.select().from(tenants).orderBy(tenants.name)
}

export const SUSPENSION_REASONS = ['operator', 'billing'] as const
export type SuspensionReason = (typeof SUSPENSION_REASONS)[number]

/**
 * Suspends a tenant. Its inbound mail is still accepted, scanned and kept, but not delivered;
 * its outbound submission is refused with a 4xx; nothing is lost or bounced. An operator's
 * suspension outranks billing's: billing cannot lift it, and suspending an already suspended
 * tenant only ever moves the reason up to `operator`.
 */
export async function suspendTenant(
  db: Executor,
  input: { tenantId: string; reason: SuspensionReason; note?: string | undefined; actor: string },
): Promise<Tenant> {
  return db.transaction(async (tx) => {
    const [current] = await tx.select().from(tenants).where(eq(tenants.id, input.tenantId)).for('update')
    if (!current) throw new MoatError('not_found', `no tenant ${input.tenantId}`)
    if (
      current.status === 'suspended' &&
      (current.suspendedReason === 'operator' || input.reason === 'billing')
    ) {
      return current
    }
    const [tenant] = await tx
      .update(tenants)
      .set({
        status: 'suspended',
        suspendedReason: input.reason,
        suspendedNote: input.note ?? null,
        suspendedAt: current.suspendedAt ?? new Date(),
      })
      .where(eq(tenants.id, input.tenantId))
      .returning()
    if (!tenant) throw new Error('update returned no tenant')
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor: input.actor,
      action: 'tenant.suspend',
      target: tenant.id,
      detail: { reason: input.reason, ...(input.note ? { note: input.note } : {}) },
    })
    return tenant
  })
}

/**
 * Lifts a suspension made for `reason` (an operator may lift any). Mail held meanwhile is
 * delivered within the deliver worker's recheck interval, and its give-up clock restarts now.
 */
export async function resumeTenant(
  db: Executor,
  input: { tenantId: string; reason: SuspensionReason; actor: string },
): Promise<Tenant> {
  return db.transaction(async (tx) => {
    const [current] = await tx.select().from(tenants).where(eq(tenants.id, input.tenantId)).for('update')
    if (!current) throw new MoatError('not_found', `no tenant ${input.tenantId}`)
    if (current.status !== 'suspended') return current
    if (input.reason === 'billing' && current.suspendedReason === 'operator') return current
    const [tenant] = await tx
      .update(tenants)
      .set({
        status: 'active',
        suspendedReason: null,
        suspendedNote: null,
        suspendedAt: null,
        resumedAt: new Date(),
      })
      .where(eq(tenants.id, input.tenantId))
      .returning()
    if (!tenant) throw new Error('update returned no tenant')
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor: input.actor,
      action: 'tenant.resume',
      target: tenant.id,
      detail: { reason: current.suspendedReason, suspendedAt: current.suspendedAt?.toISOString() },
    })
    return tenant
  })
}

/** Why a tenant's mail is held, for the API, the portal and outbound submission to explain. */
export interface TenantSuspension {
  reason: SuspensionReason
  note: string | null
  since: Date | null
}

/**
 * The tenant's suspension, or null when it is active. Outbound submission calls this and refuses
 * a suspended tenant's mail with a 4xx that gives the reason (the mail is not lost: the client
 * keeps it and retries), e.g.
 *
 * @example
 * const held = await tenantSuspension(db, tenantId)
 * if (held) return reject(451, `4.7.1 account suspended (${held.reason}): ${held.note ?? 'contact support'}`)
 */
export async function tenantSuspension(db: Executor, tenantId: string): Promise<TenantSuspension | null> {
  const [row] = await db
    .select({
      status: tenants.status,
      reason: tenants.suspendedReason,
      note: tenants.suspendedNote,
      since: tenants.suspendedAt,
    })
    .from(tenants)
    .where(eq(tenants.id, tenantId))
  if (row?.status !== 'suspended') return null
  const reason = (SUSPENSION_REASONS as readonly string[]).includes(row.reason ?? '')
    ? (row.reason as SuspensionReason)
    : 'operator'
  return { reason, note: row.note, since: row.since }
}

export type TenantSummary = Tenant & { domains: number; users: number }

/** Tenants for the operator, oldest first (ids sort by creation), with domain and user counts. */
export async function pageTenants(
  db: Executor,
  input: { limit: number; cursor?: string | undefined; status?: string | undefined; id?: string },
): Promise<TenantSummary[]> {
  return db
    .select({
      ...getTableColumns(tenants),
      // spelt out: inside a subquery drizzle would leave the columns unqualified
      domains: sql<number>`(select count(*)::int from domains d where d.tenant_id = tenants.id)`,
      users: sql<number>`(select count(*)::int from users u where u.tenant_id = tenants.id)`,
    })
    .from(tenants)
    .where(
      and(
        input.id ? eq(tenants.id, input.id) : undefined,
        input.status ? eq(tenants.status, input.status) : undefined,
        input.cursor ? gt(tenants.id, input.cursor) : undefined,
      ),
    )
    .orderBy(asc(tenants.id))
    .limit(input.limit)
}
