import { AsyncLocalStorage } from 'node:async_hooks'
import { auditLog, type Executor } from '@moat/db'
import { and, desc, eq, lt } from 'drizzle-orm'

export type AuditEntry = typeof auditLog.$inferSelect

/** Where the changes made inside the current async context come from (see `withAuditSource`). */
const sources = new AsyncLocalStorage<string>()

/**
 * Runs `fn` with `source` (the API client's IP address, `cli`, `system`) recorded on every audit
 * entry it writes, so that call sites need not pass it down.
 */
export function withAuditSource<T>(source: string, fn: () => T): T {
  return sources.run(source, fn)
}

/** Records who changed what; `source` comes from the surrounding `withAuditSource`. */
export async function recordAudit(
  db: Executor,
  entry: {
    tenantId: string | null
    actor: string
    action: string
    target: string
    detail?: Record<string, unknown>
  },
): Promise<void> {
  await db.insert(auditLog).values({ ...entry, source: sources.getStore() ?? null })
}

/** A tenant's audit log, newest first, `limit` at a time after `cursor` (an entry id). */
export async function pageAudit(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: number | undefined },
): Promise<AuditEntry[]> {
  return db
    .select()
    .from(auditLog)
    .where(
      and(
        eq(auditLog.tenantId, input.tenantId),
        input.cursor !== undefined ? lt(auditLog.id, input.cursor) : undefined,
      ),
    )
    .orderBy(desc(auditLog.id))
    .limit(input.limit)
}
