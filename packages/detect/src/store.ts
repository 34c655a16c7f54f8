import { type Executor, listEntries, policies, tenantModelWeights, tenants } from '@moat/db'
import { and, eq, inArray, isNull, or, sql } from 'drizzle-orm'
import type { Overlay } from './model'
import type { ListEntry, Policy } from './policy'

/** The tenant's overlay weights for these features only (one indexed query). */
export async function loadOverlay(db: Executor, tenantId: string, features: Uint32Array): Promise<Overlay> {
  if (!features.length) return new Map()
  const unique = [...new Set(features)]
  const rows = await db
    .select({ feature: tenantModelWeights.feature, weight: tenantModelWeights.weight })
    .from(tenantModelWeights)
    .where(and(eq(tenantModelWeights.tenantId, tenantId), inArray(tenantModelWeights.feature, unique)))
  return new Map(rows.map((r) => [r.feature, r.weight]))
}

/** Adds deltas to the tenant's overlay weights and bumps the tenant's model version. */
export async function addToOverlay(
  db: Executor,
  tenantId: string,
  delta: ReadonlyMap<number, number>,
): Promise<void> {
  if (!delta.size) return
  await db
    .update(tenants)
    .set({ spamModelVersion: sql`${tenants.spamModelVersion} + 1` })
    .where(eq(tenants.id, tenantId))
  const rows = [...delta].map(([feature, weight]) => ({ tenantId, feature, weight }))
  for (let i = 0; i < rows.length; i += 1000) {
    await db
      .insert(tenantModelWeights)
      .values(rows.slice(i, i + 1000))
      .onConflictDoUpdate({
        target: [tenantModelWeights.tenantId, tenantModelWeights.feature],
        set: { weight: sql`${tenantModelWeights.weight} + excluded.weight` },
      })
  }
}

const EMPTY: Overlay = new Map()

/**
 * Each tenant's whole overlay, kept in memory and reloaded when the tenant's model version moves
 * (a release or report in any process bumps it). Per message this costs one primary-key lookup;
 * tenants that never gave feedback (version 0) cost nothing more.
 */
export class TenantOverlays {
  private readonly cache = new Map<string, { version: number; overlay: Overlay }>()

  constructor(private readonly maxTenants = 1000) {}

  async get(db: Executor, tenantId: string): Promise<Overlay> {
    const [row] = await db
      .select({ version: tenants.spamModelVersion })
      .from(tenants)
      .where(eq(tenants.id, tenantId))
    const version = row?.version ?? 0
    if (version === 0) return EMPTY
    const cached = this.cache.get(tenantId)
    if (cached?.version === version) return cached.overlay
    const rows = await db
      .select({ feature: tenantModelWeights.feature, weight: tenantModelWeights.weight })
      .from(tenantModelWeights)
      .where(eq(tenantModelWeights.tenantId, tenantId))
    const overlay = new Map(rows.map((r) => [r.feature, r.weight]))
    this.cache.delete(tenantId)
    if (this.cache.size >= this.maxTenants) this.cache.delete(this.cache.keys().next().value as string)
    this.cache.set(tenantId, { version, overlay })
    return overlay
  }
}

/** The policy layers for a tenant and (optionally) one of its domains: [tenant, domain]. */
export async function loadPolicyLayers(
  db: Executor,
  tenantId: string,
  domainId: string | null,
): Promise<[Partial<Policy> | undefined, Partial<Policy> | undefined]> {
  const rows = await db
    .select()
    .from(policies)
    .where(
      and(
        eq(policies.tenantId, tenantId),
        domainId ? or(isNull(policies.domainId), eq(policies.domainId, domainId)) : isNull(policies.domainId),
      ),
    )
  const tenant = rows.find((r) => r.domainId === null)?.settings as Partial<Policy> | undefined
  const domain = rows.find((r) => r.domainId !== null)?.settings as Partial<Policy> | undefined
  return [tenant, domain]
}

/** Allow and block entries that apply to mail for these domains of the tenant (tenant-wide ones too). */
export async function loadListEntries(
  db: Executor,
  tenantId: string,
  domainIds: readonly string[],
): Promise<ListEntry[]> {
  const rows = await db
    .select()
    .from(listEntries)
    .where(
      and(
        eq(listEntries.tenantId, tenantId),
        domainIds.length
          ? or(isNull(listEntries.domainId), inArray(listEntries.domainId, [...domainIds]))
          : isNull(listEntries.domainId),
      ),
    )
  return rows.map((r) => ({
    id: r.id,
    action: r.action as ListEntry['action'],
    kind: r.kind as ListEntry['kind'],
    value: r.value,
    domainId: r.domainId,
    note: r.note,
  }))
}
