import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { apiKeys, type Executor, newId, sessions, users } from '@moat/db'
import { and, desc, eq, getTableColumns, gt, isNull, lt } from 'drizzle-orm'
import { recordAudit } from './audit'
import { MoatError } from './errors'
import { createTenant, type Tenant } from './tenants'

export const ROLES = ['owner', 'admin', 'viewer'] as const
export type Role = (typeof ROLES)[number]

/** Who is calling: a signed-in user or an API key, always inside one tenant. */
export interface Principal {
  tenantId: string
  role: Role
  userId?: string
  keyId?: string
  /** for the audit log: `user:usr_…` or `key:key_…` */
  actor: string
}

export type User = Omit<typeof users.$inferSelect, 'passwordHash'>
export type ApiKey = Omit<typeof apiKeys.$inferSelect, 'keyHash'>

/** True when `role` may do what `needed` may. */
export function hasRole(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) <= ROLES.indexOf(needed)
}

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 64 }
const SESSION_DAYS = 14
export const API_KEY_PREFIX = 'moat_live_'

function scryptAsync(password: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT.keylen, { N, r, p }, (err, key) => (err ? reject(err) : resolve(key))),
  )
}

/** `scrypt$N$r$p$salt$hash` with a fresh random salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await scryptAsync(password, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p)
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$')
}

/** Compares in constant time; a malformed stored hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, N, r, p, salt, hash] = stored.split('$')
  if (scheme !== 'scrypt' || !salt || !hash) return false
  const expected = Buffer.from(hash, 'base64')
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64'), Number(N), Number(r), Number(p))
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

/** Tokens and keys are 256 random bits, so a plain SHA-256 is enough to store them. */
export function sha256(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

const { keyHash: _keyHash, ...PUBLIC_KEY_COLUMNS } = getTableColumns(apiKeys)

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

function publicUser(row: typeof users.$inferSelect): User {
  const { passwordHash: _, ...user } = row
  return user
}

/** Creates a tenant and its owner in one transaction. */
export async function signup(
  db: Executor,
  input: { tenant: string; email: string; password: string },
): Promise<{ tenant: Tenant; user: User }> {
  const email = input.email.trim().toLowerCase()
  if (!EMAIL.test(email))
    throw new MoatError('invalid', `invalid e-mail address ${JSON.stringify(input.email)}`)
  if (input.password.length < 10) {
    throw new MoatError('invalid', 'the password is too short', 'use at least 10 characters')
  }
  const passwordHash = await hashPassword(input.password)
  return db.transaction(async (tx) => {
    const taken = await tx.select({ id: users.id }).from(users).where(eq(users.email, email))
    if (taken.length) throw new MoatError('conflict', `${email} already has an account`, 'sign in instead')
    const tenant = await createTenant(tx, { name: input.tenant, actor: `signup:${email}` })
    const [user] = await tx
      .insert(users)
      .values({ id: newId('usr'), tenantId: tenant.id, email, passwordHash, role: 'owner' })
      .returning()
    if (!user) throw new Error('insert returned no user')
    await recordAudit(tx, {
      tenantId: tenant.id,
      actor: `user:${user.id}`,
      action: 'user.signup',
      target: user.id,
      detail: { email },
    })
    return { tenant, user: publicUser(user) }
  })
}

// compared against when the e-mail is unknown, so that both cases take as long
const DUMMY_HASH = hashPassword(randomBytes(16).toString('hex'))

/** Checks e-mail and password and opens a session; undefined when either is wrong. */
export async function login(
  db: Executor,
  input: { email: string; password: string },
): Promise<{ token: string; expiresAt: Date; user: User } | undefined> {
  const [user] = await db.select().from(users).where(eq(users.email, input.email.trim().toLowerCase()))
  const ok = await verifyPassword(input.password, user?.passwordHash ?? (await DUMMY_HASH))
  if (!user || !ok) return undefined
  const token = randomBytes(32).toString('base64url')
  const expiresAt = new Date(Date.now() + SESSION_DAYS * 86_400_000)
  await db.delete(sessions).where(and(eq(sessions.userId, user.id), lt(sessions.expiresAt, new Date())))
  await db.insert(sessions).values({
    id: newId('ses'),
    tokenHash: sha256(token),
    tenantId: user.tenantId,
    userId: user.id,
    expiresAt,
  })
  return { token, expiresAt, user: publicUser(user) }
}

export async function logout(db: Executor, token: string): Promise<void> {
  await db.delete(sessions).where(eq(sessions.tokenHash, sha256(token)))
}

/** The user behind a session token, while the session lasts. */
export async function authenticateSession(db: Executor, token: string): Promise<Principal | undefined> {
  const [row] = await db
    .select({ userId: users.id, tenantId: users.tenantId, role: users.role })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(and(eq(sessions.tokenHash, sha256(token)), gt(sessions.expiresAt, new Date())))
  if (!row) return undefined
  return { tenantId: row.tenantId, userId: row.userId, role: row.role as Role, actor: `user:${row.userId}` }
}

/** Creates an API key; the key itself is in the answer and nowhere else. */
export async function createApiKey(
  db: Executor,
  input: { tenantId: string; name: string; role: Exclude<Role, 'owner'>; actor: string },
): Promise<{ key: string; apiKey: ApiKey }> {
  const secret = randomBytes(32).toString('base64url')
  const key = `${API_KEY_PREFIX}${secret}`
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(apiKeys)
      .values({
        id: newId('key'),
        tenantId: input.tenantId,
        name: input.name,
        prefix: key.slice(0, API_KEY_PREFIX.length + 8),
        keyHash: sha256(key),
        role: input.role,
        createdBy: input.actor,
      })
      .returning()
    if (!row) throw new Error('insert returned no key')
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'api_key.create',
      target: row.id,
      detail: { name: input.name, prefix: row.prefix, role: input.role },
    })
    const { keyHash: _, ...apiKey } = row
    return { key, apiKey }
  })
}

/** The tenant's keys that are not revoked, newest first, `limit` at a time after `cursor` (a key id). */
export async function listApiKeys(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: string | undefined },
): Promise<ApiKey[]> {
  return db
    .select(PUBLIC_KEY_COLUMNS)
    .from(apiKeys)
    .where(
      and(
        eq(apiKeys.tenantId, input.tenantId),
        isNull(apiKeys.revokedAt),
        input.cursor ? lt(apiKeys.id, input.cursor) : undefined,
      ),
    )
    .orderBy(desc(apiKeys.id))
    .limit(input.limit)
}

/** Revokes one of the tenant's keys; another tenant's key is `not_found`. */
export async function revokeApiKey(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.id, input.id), eq(apiKeys.tenantId, input.tenantId), isNull(apiKeys.revokedAt)))
      .returning({ id: apiKeys.id, prefix: apiKeys.prefix })
    if (!row) throw new MoatError('not_found', `no API key ${input.id}`)
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'api_key.revoke',
      target: row.id,
      detail: { prefix: row.prefix },
    })
  })
}

/** The tenant and role behind an API key, recording when it was used; undefined when unknown or revoked. */
export async function authenticateApiKey(db: Executor, key: string): Promise<Principal | undefined> {
  if (!key.startsWith(API_KEY_PREFIX)) return undefined
  const [row] = await db
    .update(apiKeys)
    .set({ lastUsedAt: new Date() })
    .where(and(eq(apiKeys.keyHash, sha256(key)), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id, tenantId: apiKeys.tenantId, role: apiKeys.role })
  if (!row) return undefined
  return { tenantId: row.tenantId, keyId: row.id, role: row.role as Role, actor: `key:${row.id}` }
}
