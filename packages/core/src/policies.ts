import { domains, type Executor, listEntries, newId, policies } from '@moat/db'
import {
  DEFAULT_POLICY,
  type ListEntry,
  ListEntryError,
  normalizeListValue,
  type Policy,
  resolvePolicy,
} from '@moat/detect/policy'
import { and, asc, eq, gt, isNull } from 'drizzle-orm'
import { recordAudit } from './audit'
import { MoatError } from './errors'

/** What a caller may set; `null` turns an action off, an absent key inherits. */
export type PolicySettings = Partial<Policy>

const THRESHOLDS = ['tagThreshold', 'quarantineThreshold', 'discardThreshold'] as const

async function domainOfTenant(db: Executor, tenantId: string, name: string) {
  const [d] = await db
    .select()
    .from(domains)
    .where(
      and(eq(domains.tenantId, tenantId), eq(domains.name, name.trim().toLowerCase().replace(/\.$/, ''))),
    )
  if (!d)
    throw new MoatError(
      'not_found',
      `the tenant has no domain ${name}`,
      'add it first: moat domain add TENANT DOMAIN',
    )
  return d
}

function check(settings: PolicySettings): void {
  for (const key of Object.keys(settings)) {
    if (!(key in DEFAULT_POLICY)) throw new MoatError('invalid', `unknown policy setting ${key}`)
  }
  for (const key of THRESHOLDS) {
    const v = settings[key]
    if (v !== undefined && v !== null && (!Number.isFinite(v) || v < -100 || v > 1000))
      throw new MoatError('invalid', `${key} must be a number between -100 and 1000, or off`)
  }
  const p = settings.subjectPrefix
  if (p !== undefined && p !== null && (p.length === 0 || p.length > 40 || /[\r\n]/.test(p)))
    throw new MoatError('invalid', 'subjectPrefix must be 1 to 40 characters on one line, or off')
}

/**
 * Changes a tenant's spam policy, or one domain's override of it, and records who did. Only the
 * keys given change; the effective policy is returned with its layers.
 */
export async function setPolicy(
  db: Executor,
  input: { tenantId: string; domain?: string; settings: PolicySettings; actor: string },
): Promise<EffectivePolicy> {
  check(input.settings)
  await db.transaction(async (tx) => {
    const domainId = input.domain ? (await domainOfTenant(tx, input.tenantId, input.domain)).id : null
    const where = and(
      eq(policies.tenantId, input.tenantId),
      domainId ? eq(policies.domainId, domainId) : isNull(policies.domainId),
    )
    const [existing] = await tx.select().from(policies).where(where)
    const settings = { ...(existing?.settings ?? {}), ...input.settings }
    if (existing)
      await tx.update(policies).set({ settings, updatedAt: new Date(), updatedBy: input.actor }).where(where)
    else
      await tx
        .insert(policies)
        .values({ id: newId('pol'), tenantId: input.tenantId, domainId, settings, updatedBy: input.actor })
    const merged = resolvePolicy(undefined, settings as PolicySettings)
    const { tagThreshold: tag, quarantineThreshold: quarantine } = merged
    if (tag !== null && quarantine !== null && input.settings.tagThreshold !== undefined && tag > quarantine)
      throw new MoatError(
        'invalid',
        `tagThreshold ${tag} is above quarantineThreshold ${quarantine}`,
        'tagging must start at or below quarantining',
      )
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'policy.set',
      target: domainId ?? input.tenantId,
      detail: { domain: input.domain ?? null, changed: input.settings },
    })
  })
  return getPolicy(db, { tenantId: input.tenantId, domain: input.domain })
}

export interface EffectivePolicy {
  effective: Policy
  defaults: Policy
  tenant: PolicySettings
  domain: PolicySettings | null
}

/** The policy that applies to a tenant's mail (or one domain's), and where each value comes from. */
export async function getPolicy(
  db: Executor,
  input: { tenantId: string; domain?: string },
): Promise<EffectivePolicy> {
  const domainId = input.domain ? (await domainOfTenant(db, input.tenantId, input.domain)).id : null
  const rows = await db.select().from(policies).where(eq(policies.tenantId, input.tenantId))
  const tenant = (rows.find((r) => r.domainId === null)?.settings ?? {}) as PolicySettings
  const domain = domainId
    ? ((rows.find((r) => r.domainId === domainId)?.settings ?? {}) as PolicySettings)
    : null
  return { effective: resolvePolicy(tenant, domain ?? undefined), defaults: DEFAULT_POLICY, tenant, domain }
}

export type ListEntryRow = typeof listEntries.$inferSelect

/** Adds an allow or block entry for a tenant (or one of its domains). */
export async function addListEntry(
  db: Executor,
  input: {
    tenantId: string
    domain?: string
    action: string
    kind: string
    value: string
    note?: string
    actor: string
  },
): Promise<ListEntryRow> {
  if (input.action !== 'allow' && input.action !== 'block')
    throw new MoatError('invalid', `list action must be allow or block, not ${JSON.stringify(input.action)}`)
  if (input.kind !== 'address' && input.kind !== 'domain' && input.kind !== 'ip')
    throw new MoatError(
      'invalid',
      `list entry kind must be address, domain or ip, not ${JSON.stringify(input.kind)}`,
    )
  let value: string
  try {
    value = normalizeListValue(input.kind, input.value)
  } catch (err) {
    if (err instanceof ListEntryError) throw new MoatError('invalid', err.message)
    throw err
  }
  return db.transaction(async (tx) => {
    const domainId = input.domain ? (await domainOfTenant(tx, input.tenantId, input.domain)).id : null
    const [dupe] = await tx
      .select()
      .from(listEntries)
      .where(
        and(
          eq(listEntries.tenantId, input.tenantId),
          domainId ? eq(listEntries.domainId, domainId) : isNull(listEntries.domainId),
          eq(listEntries.kind, input.kind),
          eq(listEntries.value, value),
        ),
      )
    if (dupe)
      throw new MoatError(
        'conflict',
        `${input.kind} ${value} is already on the ${dupe.action} list (${dupe.id})`,
        'remove that entry first to change it',
      )
    const [row] = await tx
      .insert(listEntries)
      .values({
        id: newId('lst'),
        tenantId: input.tenantId,
        domainId,
        action: input.action,
        kind: input.kind,
        value,
        note: input.note ?? null,
        createdBy: input.actor,
      })
      .returning()
    if (!row) throw new Error('insert returned no list entry')
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: `list.${input.action}`,
      target: row.id,
      detail: { kind: input.kind, value, domain: input.domain ?? null, note: input.note ?? null },
    })
    return row
  })
}

/** A tenant's allow and block entries, oldest first; with `page`, `limit` of them after `cursor` (an entry id). */
export async function listListEntries(
  db: Executor,
  tenantId: string,
  page?: { limit: number; cursor?: string | undefined },
): Promise<(ListEntryRow & { domain: string | null })[]> {
  const query = db
    .select({ entry: listEntries, domain: domains.name })
    .from(listEntries)
    .leftJoin(domains, eq(domains.id, listEntries.domainId))
    .where(
      and(eq(listEntries.tenantId, tenantId), page?.cursor ? gt(listEntries.id, page.cursor) : undefined),
    )
    // ids are time-sortable, so this is creation order too
    .orderBy(asc(listEntries.id))
  const rows = page ? await query.limit(page.limit) : await query
  return rows.map((r) => ({ ...r.entry, domain: r.domain }))
}

/** Removes one of the tenant's entries; another tenant's id is "not found", never removed. */
export async function removeListEntry(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx
      .delete(listEntries)
      .where(and(eq(listEntries.id, input.id), eq(listEntries.tenantId, input.tenantId)))
      .returning()
    if (!row) throw new MoatError('not_found', `no list entry ${input.id} for this tenant`)
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'list.remove',
      target: row.id,
      detail: { action: row.action, kind: row.kind, value: row.value },
    })
  })
}

export type { ListEntry }
