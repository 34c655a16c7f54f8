import { randomBytes } from 'node:crypto'
import { type Executor, invitations, newId, sessions, users } from '@moat/db'
import { and, asc, count, desc, eq, gt, isNull, lt } from 'drizzle-orm'
import { hashPassword, type Role, sha256, type User } from './accounts'
import { recordAudit } from './audit'
import { MoatError } from './errors'

export type Invitation = Omit<typeof invitations.$inferSelect, 'tokenHash'>

const INVITATION_DAYS = 7
export const INVITATION_PREFIX = 'moat_inv_'
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

const PUBLIC_USER = {
  id: users.id,
  tenantId: users.tenantId,
  email: users.email,
  role: users.role,
  createdAt: users.createdAt,
}
const PUBLIC_INVITATION = {
  id: invitations.id,
  tenantId: invitations.tenantId,
  email: invitations.email,
  role: invitations.role,
  invitedBy: invitations.invitedBy,
  expiresAt: invitations.expiresAt,
  acceptedAt: invitations.acceptedAt,
  revokedAt: invitations.revokedAt,
  createdAt: invitations.createdAt,
}

/** The tenant's users, oldest first, `limit` at a time after `cursor` (a user id). */
export async function pageUsers(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: string | undefined },
): Promise<User[]> {
  return db
    .select(PUBLIC_USER)
    .from(users)
    .where(and(eq(users.tenantId, input.tenantId), input.cursor ? gt(users.id, input.cursor) : undefined))
    .orderBy(asc(users.id))
    .limit(input.limit)
}

/**
 * Invites someone to the tenant. Only an owner may invite an owner. The token is in the answer
 * and nowhere else; it works once, for seven days.
 */
export async function inviteUser(
  db: Executor,
  input: { tenantId: string; email: string; role: Role; inviterRole: Role; actor: string },
): Promise<{ token: string; invitation: Invitation }> {
  const email = input.email.trim().toLowerCase()
  if (!EMAIL.test(email))
    throw new MoatError('invalid', `invalid e-mail address ${JSON.stringify(input.email)}`)
  if (input.role === 'owner' && input.inviterRole !== 'owner') {
    throw new MoatError('forbidden', 'only an owner may invite another owner')
  }
  const token = `${INVITATION_PREFIX}${randomBytes(32).toString('base64url')}`
  return db.transaction(async (tx) => {
    const [taken] = await tx.select({ tenantId: users.tenantId }).from(users).where(eq(users.email, email))
    if (taken) {
      // the same answer whichever tenant has them, so that nobody learns of another tenant's users
      throw new MoatError(
        'conflict',
        `${email} already has a Moat account`,
        'each address can belong to one account',
      )
    }
    const [row] = await tx
      .insert(invitations)
      .values({
        id: newId('inv'),
        tenantId: input.tenantId,
        email,
        role: input.role,
        tokenHash: sha256(token),
        invitedBy: input.actor,
        expiresAt: new Date(Date.now() + INVITATION_DAYS * 86_400_000),
      })
      .returning(PUBLIC_INVITATION)
    if (!row) throw new Error('insert returned no invitation')
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'user.invite',
      target: row.id,
      detail: { email, role: input.role },
    })
    return { token, invitation: row }
  })
}

/** The tenant's open invitations (not accepted, revoked or expired), newest first. */
export async function pageInvitations(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: string | undefined },
): Promise<Invitation[]> {
  return db
    .select(PUBLIC_INVITATION)
    .from(invitations)
    .where(
      and(
        eq(invitations.tenantId, input.tenantId),
        isNull(invitations.acceptedAt),
        isNull(invitations.revokedAt),
        gt(invitations.expiresAt, new Date()),
        input.cursor ? lt(invitations.id, input.cursor) : undefined,
      ),
    )
    .orderBy(desc(invitations.id))
    .limit(input.limit)
}

export async function revokeInvitation(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx
      .update(invitations)
      .set({ revokedAt: new Date() })
      .where(
        and(
          eq(invitations.id, input.id),
          eq(invitations.tenantId, input.tenantId),
          isNull(invitations.acceptedAt),
          isNull(invitations.revokedAt),
        ),
      )
      .returning({ id: invitations.id, email: invitations.email })
    if (!row) throw new MoatError('not_found', `no open invitation ${input.id}`)
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'user.invite_revoke',
      target: row.id,
      detail: { email: row.email },
    })
  })
}

/** Accepts an invitation: creates the user with the invited role and the chosen password. */
export async function acceptInvitation(
  db: Executor,
  input: { token: string; password: string },
): Promise<User> {
  if (input.password.length < 10) {
    throw new MoatError('invalid', 'the password is too short', 'use at least 10 characters')
  }
  const passwordHash = await hashPassword(input.password)
  return db.transaction(async (tx) => {
    const [inv] = await tx
      .select()
      .from(invitations)
      .where(eq(invitations.tokenHash, sha256(input.token)))
      .for('update')
    if (!inv || inv.acceptedAt || inv.revokedAt || inv.expiresAt <= new Date()) {
      throw new MoatError(
        'not_found',
        'this invitation is not valid: it was used, revoked or has expired, or the token is mistyped',
        'ask for a new invitation',
      )
    }
    const [taken] = await tx.select({ id: users.id }).from(users).where(eq(users.email, inv.email))
    if (taken) throw new MoatError('conflict', `${inv.email} already has a Moat account`, 'sign in instead')
    const [user] = await tx
      .insert(users)
      .values({ id: newId('usr'), tenantId: inv.tenantId, email: inv.email, passwordHash, role: inv.role })
      .returning(PUBLIC_USER)
    if (!user) throw new Error('insert returned no user')
    await tx.update(invitations).set({ acceptedAt: new Date() }).where(eq(invitations.id, inv.id))
    await recordAudit(tx, {
      tenantId: inv.tenantId,
      actor: `user:${user.id}`,
      action: 'user.join',
      target: user.id,
      detail: { email: inv.email, role: inv.role, invitation: inv.id },
    })
    return user
  })
}

/** Owners left in the tenant after `change`; a tenant must always keep one. */
async function ownersExcept(tx: Executor, tenantId: string, userId: string): Promise<number> {
  const [row] = await tx
    .select({ n: count() })
    .from(users)
    .where(and(eq(users.tenantId, tenantId), eq(users.role, 'owner')))
  const [self] = await tx.select({ role: users.role }).from(users).where(eq(users.id, userId))
  return (row?.n ?? 0) - (self?.role === 'owner' ? 1 : 0)
}

async function tenantUser(tx: Executor, tenantId: string, id: string): Promise<User> {
  const [user] = await tx
    .select(PUBLIC_USER)
    .from(users)
    .where(and(eq(users.id, id), eq(users.tenantId, tenantId)))
    .for('update')
  if (!user) throw new MoatError('not_found', `no user ${id}`)
  return user
}

/**
 * Changes a user's role. Owners manage everyone; an admin manages admins and viewers only and
 * cannot make owners. The last owner cannot step down.
 */
export async function changeRole(
  db: Executor,
  input: { tenantId: string; id: string; role: Role; callerRole: Role; actor: string },
): Promise<User> {
  return db.transaction(async (tx) => {
    const user = await tenantUser(tx, input.tenantId, input.id)
    if (input.callerRole !== 'owner' && (user.role === 'owner' || input.role === 'owner')) {
      throw new MoatError('forbidden', "only an owner may change an owner's role or make an owner")
    }
    if (
      user.role === 'owner' &&
      input.role !== 'owner' &&
      (await ownersExcept(tx, input.tenantId, user.id)) < 1
    ) {
      throw new MoatError('conflict', `${user.email} is the only owner`, 'make someone else owner first')
    }
    if (user.role === input.role) return user
    const [row] = await tx
      .update(users)
      .set({ role: input.role })
      .where(eq(users.id, user.id))
      .returning(PUBLIC_USER)
    if (!row) throw new Error('update returned no user')
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'user.role',
      target: user.id,
      detail: { email: user.email, from: user.role, to: input.role },
    })
    return row
  })
}

/** Removes a user and signs them out everywhere; the same rules as `changeRole`. */
export async function removeUser(
  db: Executor,
  input: { tenantId: string; id: string; callerRole: Role; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const user = await tenantUser(tx, input.tenantId, input.id)
    if (user.role === 'owner' && input.callerRole !== 'owner') {
      throw new MoatError('forbidden', 'only an owner may remove an owner')
    }
    if (user.role === 'owner' && (await ownersExcept(tx, input.tenantId, user.id)) < 1) {
      throw new MoatError('conflict', `${user.email} is the only owner`, 'make someone else owner first')
    }
    await tx.delete(sessions).where(eq(sessions.userId, user.id))
    await tx.delete(users).where(eq(users.id, user.id))
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'user.remove',
      target: user.id,
      detail: { email: user.email, role: user.role },
    })
  })
}
