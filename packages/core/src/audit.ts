import { auditLog, type Executor } from '@moat/db'
import { and, desc, eq, lt } from 'drizzle-orm'

export type AuditEntry = typeof auditLog.$inferSelect

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
