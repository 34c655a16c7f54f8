import { auditLog, type Executor, newId, tenants } from '@moat/db'
import { eq, or } from 'drizzle-orm'
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
    await tx.insert(auditLog).values({
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
