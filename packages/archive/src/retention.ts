import type { ObjectStore } from '@moat/blobstore'
import { MoatError, recordAudit, withAuditSource } from '@moat/core'
import { archiveHolds, type Db, type Executor, newId, tenants } from '@moat/db'
import type { Logger } from '@moat/log'
import { and, desc, eq, isNull, sql } from 'drizzle-orm'
import { filterToJson } from './exports'
import { type ArchiveFilter, filterConditions, parseQuery } from './search'

/** The retention periods customers choose from, in days; null keeps everything. */
export const RETENTION_PRESETS = { '30d': 30, '1y': 365, '7y': 2557, unlimited: null } as const
export type RetentionPreset = keyof typeof RETENTION_PRESETS

export function presetOf(days: number | null): RetentionPreset | 'custom' {
  const found = Object.entries(RETENTION_PRESETS).find(([, d]) => d === days)
  return (found?.[0] as RetentionPreset | undefined) ?? 'custom'
}

export interface ArchiveSettings {
  enabled: boolean
  /** null: kept for ever */
  retentionDays: number | null
}

export async function getArchiveSettings(db: Executor, tenantId: string): Promise<ArchiveSettings> {
  const [t] = await db
    .select({ enabled: tenants.archiveEnabled, retentionDays: tenants.archiveRetentionDays })
    .from(tenants)
    .where(eq(tenants.id, tenantId))
  if (!t) throw new MoatError('not_found', `no tenant ${tenantId}`)
  return t
}

/**
 * Turns archiving on or off and sets how long the archive keeps messages, recorded in the audit log.
 * Billing sets `retentionDays` from a plan with this too. A shorter period takes effect at the next
 * purge (legal holds still win).
 */
export async function setArchiveSettings(
  db: Executor,
  input: {
    tenantId: string
    actor: string
    enabled?: boolean | undefined
    retentionDays?: number | null | undefined
  },
): Promise<ArchiveSettings> {
  if (input.retentionDays !== undefined && input.retentionDays !== null) {
    if (!Number.isInteger(input.retentionDays) || input.retentionDays < 1)
      throw new MoatError(
        'invalid',
        `retention must be a whole number of days above 0, not ${input.retentionDays}`,
      )
  }
  return db.transaction(async (tx) => {
    const before = await getArchiveSettings(tx, input.tenantId)
    const change = {
      ...(input.enabled !== undefined ? { archiveEnabled: input.enabled } : {}),
      ...(input.retentionDays !== undefined ? { archiveRetentionDays: input.retentionDays } : {}),
    }
    if (Object.keys(change).length) await tx.update(tenants).set(change).where(eq(tenants.id, input.tenantId))
    const after = await getArchiveSettings(tx, input.tenantId)
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'archive.settings',
      target: input.tenantId,
      detail: { before: { ...before }, after: { ...after } },
    })
    return after
  })
}

export type ArchiveHold = typeof archiveHolds.$inferSelect

/**
 * Places a legal hold: on all of the tenant's archive (`tenant`: also what is archived while the hold
 * lasts), or on the messages a search matches now (`messages`). Held messages are never purged.
 */
export async function placeHold(
  db: Executor,
  input: { tenantId: string; actor: string; reason: string } & (
    | { scope: 'tenant' }
    | { scope: 'messages'; filter: ArchiveFilter }
  ),
): Promise<ArchiveHold> {
  const reason = input.reason.trim()
  if (!reason) throw new MoatError('invalid', 'a legal hold needs a reason', 'name the matter or case')
  return db.transaction(async (tx) => {
    const id = newId('hold')
    await tx.insert(archiveHolds).values({
      id,
      tenantId: input.tenantId,
      scope: input.scope,
      reason,
      query: input.scope === 'messages' ? filterToJson(input.filter) : null,
      createdBy: input.actor,
    })
    let count = 0
    if (input.scope === 'messages') {
      const parsed = input.filter.q?.trim() ? await parseQuery(tx, input.filter.q) : undefined
      // FOR SHARE: a purge batch holding some of these rows finishes first (they are then gone)
      const rows = (await tx.execute(sql`
        insert into archive_hold_items (hold_id, tenant_id, archived_id)
        select ${id}, tenant_id, id from archived_messages
        where ${filterConditions(input.tenantId, input.filter, parsed)}
        for share
        returning archived_id
      `)) as unknown as unknown[]
      count = rows.length
    }
    const [hold] = await tx
      .update(archiveHolds)
      .set({ messageCount: count })
      .where(eq(archiveHolds.id, id))
      .returning()
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'archive.hold',
      target: id,
      detail: { scope: input.scope, reason, messages: count, ...(hold?.query ? { query: hold.query } : {}) },
    })
    if (!hold) throw new Error('hold vanished')
    return hold
  })
}

export async function listHolds(db: Executor, tenantId: string): Promise<ArchiveHold[]> {
  return db
    .select()
    .from(archiveHolds)
    .where(eq(archiveHolds.tenantId, tenantId))
    .orderBy(desc(archiveHolds.id))
}

/** Releases a hold: what it alone covered becomes subject to retention again. */
export async function releaseHold(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<ArchiveHold> {
  return db.transaction(async (tx) => {
    const [hold] = await tx
      .select()
      .from(archiveHolds)
      .where(and(eq(archiveHolds.id, input.id), eq(archiveHolds.tenantId, input.tenantId)))
    if (!hold) throw new MoatError('not_found', `no legal hold ${input.id}`)
    if (hold.releasedAt) throw new MoatError('conflict', `legal hold ${input.id} was already released`)
    const [released] = await tx
      .update(archiveHolds)
      .set({ releasedAt: new Date(), releasedBy: input.actor })
      .where(and(eq(archiveHolds.id, input.id), isNull(archiveHolds.releasedAt)))
      .returning()
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'archive.hold.release',
      target: input.id,
      detail: { scope: hold.scope, reason: hold.reason },
    })
    if (!released) throw new MoatError('conflict', `legal hold ${input.id} was already released`)
    return released
  })
}

export interface PurgeResult {
  purged: number
  batches: number
  /** per tenant */
  tenants: Record<string, number>
}

/**
 * Deletes archived messages older than their tenant's retention, in batches of `batch`: each batch
 * is one transaction that locks its rows (`FOR UPDATE SKIP LOCKED`, so purgers in other processes
 * take other rows), deletes the objects, then the rows, and writes one `archive.purge` audit entry
 * per tenant. A purge that dies mid-batch leaves the rows, and the next run finishes them (deleting
 * an object twice is harmless). Messages under a legal hold, of the tenant or on them, are skipped.
 */
export async function purgeArchive(
  deps: { db: Db; store: ObjectStore; log?: Logger | undefined },
  options: { batch: number; now?: Date; actor?: string },
): Promise<PurgeResult> {
  const now = options.now ?? new Date()
  const actor = options.actor ?? 'system:retention'
  const result: PurgeResult = { purged: 0, batches: 0, tenants: {} }
  for (;;) {
    const n = await deps.db.transaction(async (tx) => {
      const rows = (await tx.execute(sql`
        select a.id, a.tenant_id, a.object_key, a.received_at, t.archive_retention_days as days
        from archived_messages a join tenants t on t.id = a.tenant_id
        where t.archive_retention_days is not null
          and a.received_at < ${now.toISOString()}::timestamptz - make_interval(days => t.archive_retention_days)
          and not exists (select 1 from archive_holds h
                          where h.tenant_id = a.tenant_id and h.scope = 'tenant' and h.released_at is null)
          and not exists (select 1 from archive_hold_items i join archive_holds h on h.id = i.hold_id
                          where i.archived_id = a.id and h.released_at is null)
        order by a.received_at
        limit ${options.batch}
        for update of a skip locked
      `)) as unknown as {
        id: string
        tenant_id: string
        object_key: string
        received_at: Date
        days: number
      }[]
      if (!rows.length) return 0
      for (let i = 0; i < rows.length; i += 16)
        await Promise.all(rows.slice(i, i + 16).map((r) => deps.store.delete(r.object_key)))
      await tx.execute(
        sql`delete from archived_messages where id in ${sql`(${sql.join(
          rows.map((r) => sql`${r.id}`),
          sql`, `,
        )})`}`,
      )
      const byTenant = new Map<string, typeof rows>()
      for (const r of rows) byTenant.set(r.tenant_id, [...(byTenant.get(r.tenant_id) ?? []), r])
      for (const [tenantId, list] of byTenant) {
        const first = list[0]
        await recordAudit(tx, {
          tenantId,
          actor,
          action: 'archive.purge',
          target: tenantId,
          detail: {
            messages: list.length,
            retentionDays: first?.days,
            oldest: new Date(first?.received_at ?? now).toISOString(),
            newest: new Date(list.at(-1)?.received_at ?? now).toISOString(),
          },
        })
        result.tenants[tenantId] = (result.tenants[tenantId] ?? 0) + list.length
      }
      return rows.length
    })
    if (!n) break
    result.purged += n
    result.batches++
    deps.log?.info({ purged: n, batch: result.batches }, 'archive purge batch')
    if (n < options.batch) break
  }
  return result
}

/**
 * Runs {@link purgeArchive} five seconds after start and then every `intervalSeconds` (the scan
 * service runs it under `moat start`), with `system` as the audit source. A run that is still going
 * when the next is due does not start a second one in this process. `stop()` waits for a running
 * purge to finish.
 */
export function startPurgeScheduler(deps: {
  db: Db
  store: ObjectStore
  log: Logger
  intervalSeconds: number
  batch: number
}): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve()
  let stopped = false
  let busy = false
  const tick = () => {
    if (stopped || busy) return
    busy = true
    running = withAuditSource('system', () => purgeArchive(deps, { batch: deps.batch }))
      .then((r) => {
        if (r.purged) deps.log.info({ purged: r.purged, tenants: r.tenants }, 'archive retention purge done')
      })
      .catch((err: unknown) =>
        deps.log.error({ err }, 'archive retention purge failed; retried next interval'),
      )
  }
  const first = setTimeout(tick, 5_000)
  const timer = setInterval(tick, deps.intervalSeconds * 1000)
  first.unref()
  timer.unref()
  return {
    async stop() {
      stopped = true
      clearTimeout(first)
      clearInterval(timer)
      await running
    },
  }
}

/** Records who read or exported archived mail, in the tenant's audit log. */
export async function recordArchiveAccess(
  db: Executor,
  input: {
    tenantId: string
    actor: string
    action: string
    target: string
    detail?: Record<string, unknown>
  },
): Promise<void> {
  await recordAudit(db, {
    tenantId: input.tenantId,
    actor: input.actor,
    action: input.action,
    target: input.target,
    detail: input.detail ?? {},
  })
}
