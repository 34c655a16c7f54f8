import { resumeTenant, suspendTenant } from '@moat/core'
import { type Executor, tenants } from '@moat/db'
import { eq } from 'drizzle-orm'

/** The suspension reason billing uses; it lifts only suspensions with this reason. */
export const BILLING_SUSPENSION = 'billing' as const

/**
 * Makes the tenant's billing suspension match `hold`: a message suspends (or updates the note of
 * a billing suspension), null resumes a billing suspension. An operator's suspension is left alone
 * either way (`suspendTenant`/`resumeTenant` guarantee it).
 */
export async function applySuspension(
  db: Executor,
  tenantId: string,
  hold: string | null,
): Promise<'suspended' | 'resumed' | 'unchanged'> {
  const [tenant] = await db.select().from(tenants).where(eq(tenants.id, tenantId))
  if (!tenant) return 'unchanged'
  const suspended = tenant.status === 'suspended'
  if (hold) {
    if (!suspended) {
      await suspendTenant(db, { tenantId, reason: BILLING_SUSPENSION, note: hold, actor: 'system:billing' })
      return 'suspended'
    }
    if (tenant.suspendedReason === BILLING_SUSPENSION && tenant.suspendedNote !== hold) {
      // still held, for another reason now (a cap reached, then a payment failed): say the current one
      await db.update(tenants).set({ suspendedNote: hold }).where(eq(tenants.id, tenantId))
    }
    return 'unchanged'
  }
  if (suspended && tenant.suspendedReason === BILLING_SUSPENSION) {
    await resumeTenant(db, { tenantId, reason: BILLING_SUSPENSION, actor: 'system:billing' })
    return 'resumed'
  }
  return 'unchanged'
}
