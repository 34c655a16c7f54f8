import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import net from 'node:net'
import {
  auditLog,
  domains,
  type Executor,
  messages,
  newId,
  relayNetworks,
  smtpCredentials,
  tenantEvents,
  tenants,
} from '@moat/db'
import { and, desc, eq, getTableColumns, gte, inArray, isNotNull, isNull, lt, sql } from 'drizzle-orm'
import { ACCEPTING_STATUSES, normalizeDomain } from './domains'
import { MoatError } from './errors'

export type SmtpCredential = Omit<typeof smtpCredentials.$inferSelect, 'secretHash'>
export type RelayNetwork = typeof relayNetworks.$inferSelect

export const SMTP_PASSWORD_PREFIX = 'moat_smtp_'

/** The same scheme as API keys: 256 random bits, so a plain SHA-256 is enough to store them. */
function sha256(secret: string): string {
  return createHash('sha256').update(secret).digest('hex')
}

const { secretHash: _secretHash, ...PUBLIC_CREDENTIAL_COLUMNS } = getTableColumns(smtpCredentials)

function checkAllowedDomains(list: string[] | null | undefined): string[] | null {
  if (!list?.length) return null
  const out = list.map(normalizeDomain)
  const bad = out.find((d) => !/^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(d))
  if (bad !== undefined) throw new MoatError('invalid', `invalid domain name ${JSON.stringify(bad)}`)
  return [...new Set(out)]
}

/**
 * Creates SMTP AUTH credentials for outbound submission. The username is the credential's id and
 * the password is in the answer and nowhere else.
 */
export async function createSmtpCredential(
  db: Executor,
  input: { tenantId: string; name: string; allowedDomains?: string[] | null; actor: string },
): Promise<{ username: string; password: string; credential: SmtpCredential }> {
  const allowedDomains = checkAllowedDomains(input.allowedDomains)
  const password = `${SMTP_PASSWORD_PREFIX}${randomBytes(32).toString('base64url')}`
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(smtpCredentials)
      .values({
        id: newId('smtp'),
        tenantId: input.tenantId,
        name: input.name,
        secretHash: sha256(password),
        allowedDomains,
        createdBy: input.actor,
      })
      .returning(PUBLIC_CREDENTIAL_COLUMNS)
    if (!row) throw new Error('insert returned no credential')
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'smtp_credential.create',
      target: row.id,
      detail: { name: input.name, allowedDomains },
    })
    return { username: row.id, password, credential: row }
  })
}

/** The tenant's credentials that are not revoked, newest first. */
export async function listSmtpCredentials(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: string | undefined },
): Promise<SmtpCredential[]> {
  return db
    .select(PUBLIC_CREDENTIAL_COLUMNS)
    .from(smtpCredentials)
    .where(
      and(
        eq(smtpCredentials.tenantId, input.tenantId),
        isNull(smtpCredentials.revokedAt),
        input.cursor ? lt(smtpCredentials.id, input.cursor) : undefined,
      ),
    )
    .orderBy(desc(smtpCredentials.id))
    .limit(input.limit)
}

/** One of the tenant's credentials; another tenant's is `not_found`, like a missing one. */
export async function getSmtpCredential(db: Executor, tenantId: string, id: string): Promise<SmtpCredential> {
  const [row] = await db
    .select(PUBLIC_CREDENTIAL_COLUMNS)
    .from(smtpCredentials)
    .where(
      and(
        eq(smtpCredentials.id, id),
        eq(smtpCredentials.tenantId, tenantId),
        isNull(smtpCredentials.revokedAt),
      ),
    )
  if (!row) throw new MoatError('not_found', `no SMTP credential ${id}`)
  return row
}

export async function revokeSmtpCredential(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx
      .update(smtpCredentials)
      .set({ revokedAt: new Date() })
      .where(
        and(
          eq(smtpCredentials.id, input.id),
          eq(smtpCredentials.tenantId, input.tenantId),
          isNull(smtpCredentials.revokedAt),
        ),
      )
      .returning({ id: smtpCredentials.id })
    if (!row) throw new MoatError('not_found', `no SMTP credential ${input.id}`)
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'smtp_credential.revoke',
      target: row.id,
    })
  })
}

/**
 * Suspends a credential (Moat's own protection, or an admin): AUTH with it fails until an admin
 * re-enables it. Records the audit entry and a webhook-ready `credential.suspended` event.
 * Returns false when it was already suspended.
 */
export async function suspendSmtpCredential(
  db: Executor,
  input: { tenantId: string; id: string; reason: string; actor: string },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(smtpCredentials)
      .set({ suspendedAt: new Date(), suspendedReason: input.reason })
      .where(
        and(
          eq(smtpCredentials.id, input.id),
          eq(smtpCredentials.tenantId, input.tenantId),
          isNull(smtpCredentials.suspendedAt),
        ),
      )
      .returning({ id: smtpCredentials.id, name: smtpCredentials.name })
    if (!row) return false
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'smtp_credential.suspend',
      target: row.id,
      detail: { reason: input.reason },
    })
    await recordTenantEvent(tx, input.tenantId, 'credential.suspended', {
      credentialId: row.id,
      name: row.name,
      reason: input.reason,
    })
    return true
  })
}

/** Re-enables a suspended credential (an admin's decision). */
export async function enableSmtpCredential(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<SmtpCredential> {
  return db.transaction(async (tx) => {
    const before = await getSmtpCredential(tx, input.tenantId, input.id)
    const [row] = await tx
      .update(smtpCredentials)
      .set({ suspendedAt: null, suspendedReason: null })
      .where(eq(smtpCredentials.id, before.id))
      .returning(PUBLIC_CREDENTIAL_COLUMNS)
    if (!row) throw new MoatError('not_found', `no SMTP credential ${input.id}`)
    if (before.suspendedAt) {
      await tx.insert(auditLog).values({
        tenantId: input.tenantId,
        actor: input.actor,
        action: 'smtp_credential.enable',
        target: row.id,
        detail: { wasSuspendedFor: before.suspendedReason },
      })
    }
    return row
  })
}

/** Who is submitting: a tenant, through a credential or a registered relay network. */
export interface Submitter {
  tenantId: string
  tenantName: string
  credentialId: string | null
  /** sender domains this submitter may use; null: any verified domain of the tenant */
  allowedDomains: string[] | null
  via: 'auth' | 'relay'
}

export type AuthOutcome =
  | { ok: true; submitter: Submitter }
  | { ok: false; reason: 'invalid' }
  | { ok: false; reason: 'suspended'; detail: string }

/** Checks SMTP AUTH credentials; a wrong username and a wrong password look the same to the caller. */
export async function authenticateSmtp(
  db: Executor,
  username: string,
  password: string,
): Promise<AuthOutcome> {
  const [row] = await db
    .select({ credential: smtpCredentials, tenantName: tenants.name })
    .from(smtpCredentials)
    .innerJoin(tenants, eq(tenants.id, smtpCredentials.tenantId))
    .where(and(eq(smtpCredentials.id, username.trim()), isNull(smtpCredentials.revokedAt)))
  const expected = Buffer.from(row?.credential.secretHash ?? sha256('no such credential'), 'hex')
  const actual = Buffer.from(sha256(password), 'hex')
  if (!row || !timingSafeEqual(expected, actual)) return { ok: false, reason: 'invalid' }
  const c = row.credential
  if (c.suspendedAt) {
    return { ok: false, reason: 'suspended', detail: c.suspendedReason ?? 'suspended by an admin' }
  }
  await db.update(smtpCredentials).set({ lastUsedAt: new Date() }).where(eq(smtpCredentials.id, c.id))
  return {
    ok: true,
    submitter: {
      tenantId: c.tenantId,
      tenantName: row.tenantName,
      credentialId: c.id,
      allowedDomains: c.allowedDomains,
      via: 'auth',
    },
  }
}

/** Parses `IP` or `IP/PREFIX` into a normalized CIDR, or throws `invalid`. */
export function parseCidr(value: string): {
  cidr: string
  address: string
  prefix: number
  family: 'ipv4' | 'ipv6'
} {
  const [address = '', prefixText] = value.trim().split('/')
  const version = net.isIP(address)
  const max = version === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : Number(prefixText)
  if (!version || !Number.isInteger(prefix) || prefix < 0 || prefix > max || prefixText === '') {
    throw new MoatError(
      'invalid',
      `invalid IP or CIDR ${JSON.stringify(value)}`,
      'give an address like 192.0.2.10 or a network like 192.0.2.0/24 or 2001:db8::/48',
    )
  }
  if (prefix < (version === 4 ? 16 : 32)) {
    throw new MoatError(
      'invalid',
      `${value} is too wide a network to relay from`,
      `use a prefix of at least /${version === 4 ? 16 : 32}`,
    )
  }
  const family = version === 4 ? 'ipv4' : 'ipv6'
  return { cidr: `${address.toLowerCase()}/${prefix}`, address, prefix, family }
}

/** Registers a network of the tenant's own mail servers that may relay without AUTH. */
export async function addRelayNetwork(
  db: Executor,
  input: { tenantId: string; cidr: string; note?: string | null; actor: string },
): Promise<RelayNetwork> {
  const { cidr } = parseCidr(input.cidr)
  return db.transaction(async (tx) => {
    const [taken] = await tx.select().from(relayNetworks).where(eq(relayNetworks.cidr, cidr))
    if (taken) {
      throw new MoatError(
        'conflict',
        taken.tenantId === input.tenantId
          ? `${cidr} is already registered`
          : `${cidr} is registered by another customer`,
      )
    }
    const [row] = await tx
      .insert(relayNetworks)
      .values({
        id: newId('rly'),
        tenantId: input.tenantId,
        cidr,
        note: input.note ?? null,
        createdBy: input.actor,
      })
      .returning()
    if (!row) throw new Error('insert returned no relay network')
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'relay_network.add',
      target: row.id,
      detail: { cidr },
    })
    return row
  })
}

export async function listRelayNetworks(db: Executor, tenantId: string): Promise<RelayNetwork[]> {
  return db.select().from(relayNetworks).where(eq(relayNetworks.tenantId, tenantId)).orderBy(relayNetworks.id)
}

export async function removeRelayNetwork(
  db: Executor,
  input: { tenantId: string; id: string; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx
      .delete(relayNetworks)
      .where(and(eq(relayNetworks.id, input.id), eq(relayNetworks.tenantId, input.tenantId)))
      .returning()
    if (!row) throw new MoatError('not_found', `no relay network ${input.id}`)
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'relay_network.remove',
      target: row.id,
      detail: { cidr: row.cidr },
    })
  })
}

/**
 * Every registered relay network as a matcher: the tenant whose network holds an IP. The
 * submission service reloads it every few seconds.
 */
export async function loadRelayMatcher(
  db: Executor,
): Promise<(ip: string) => { tenantId: string; tenantName: string } | undefined> {
  const rows = await db
    .select({ cidr: relayNetworks.cidr, tenantId: relayNetworks.tenantId, tenantName: tenants.name })
    .from(relayNetworks)
    .innerJoin(tenants, eq(tenants.id, relayNetworks.tenantId))
  const lists = rows.map((r) => {
    const list = new net.BlockList()
    const { address, prefix, family } = parseCidr(r.cidr)
    list.addSubnet(address, prefix, family)
    return { list, tenantId: r.tenantId, tenantName: r.tenantName }
  })
  return (ip) => {
    const plain = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '')
    const family = net.isIP(plain) === 6 ? 'ipv6' : 'ipv4'
    const hit = lists.find((l) => l.list.check(plain, family))
    return hit ? { tenantId: hit.tenantId, tenantName: hit.tenantName } : undefined
  }
}

/**
 * Whether the tenant may send as `domain`: one of its verified domains (a subdomain of one
 * counts), and within the submitter's allowed domains when the credential has a list.
 * Returns the reason in words when not.
 */
export async function checkSenderDomain(
  db: Executor,
  submitter: Pick<Submitter, 'tenantId' | 'allowedDomains'>,
  domain: string,
): Promise<string | undefined> {
  const name = normalizeDomain(domain)
  if (!name) return 'the sender address has no domain'
  const candidates = name.split('.').map((_, i, parts) => parts.slice(i).join('.'))
  const rows = await db
    .select({ name: domains.name })
    .from(domains)
    .where(
      and(
        eq(domains.tenantId, submitter.tenantId),
        inArray(domains.name, candidates),
        inArray(domains.status, [...ACCEPTING_STATUSES]),
        isNotNull(domains.verifiedAt),
      ),
    )
  if (!rows.length) return `${name} is not a verified domain of this account`
  if (submitter.allowedDomains && !candidates.some((c) => submitter.allowedDomains?.includes(c))) {
    return `these credentials may send only as ${submitter.allowedDomains.join(', ')}`
  }
  return undefined
}

export interface SendingLimits {
  perMinute: number
  perHour: number
  tenantPerMinute: number
  tenantPerHour: number
  spikeFactor: number
  spikeMin: number
}

export type RateCheck = { ok: true } | { ok: false; reason: string; suspended?: boolean }

/**
 * Counts what the submitter sent in the last minute and hour (per credential and for the whole
 * tenant) against the limits. A credential whose last minute is a spike far above its usual rate
 * (the previous 24 hours' average) is suspended on the spot.
 */
export async function checkSendingRate(
  db: Executor,
  submitter: Pick<Submitter, 'tenantId' | 'credentialId'>,
  limits: SendingLimits,
): Promise<RateCheck> {
  const minuteAgo = new Date(Date.now() - 60_000)
  const hourAgo = new Date(Date.now() - 3_600_000)
  // a Date inside a raw sql fragment is not serialized by the driver: pass it as text
  const sinceMinute = sql`${minuteAgo.toISOString()}::timestamptz`
  const cred = submitter.credentialId
  const credMatch = cred ? sql`${messages.credentialId} = ${cred}` : sql`false`
  const [counts] = await db
    .select({
      credMinute:
        sql<number>`count(*) filter (where ${credMatch} and ${messages.receivedAt} >= ${sinceMinute})`.mapWith(
          Number,
        ),
      credHour: sql<number>`count(*) filter (where ${credMatch})`.mapWith(Number),
      tenantMinute: sql<number>`count(*) filter (where ${messages.receivedAt} >= ${sinceMinute})`.mapWith(
        Number,
      ),
      tenantHour: sql<number>`count(*)`.mapWith(Number),
    })
    .from(messages)
    .where(
      and(
        eq(messages.tenantId, submitter.tenantId),
        eq(messages.direction, 'outbound'),
        gte(messages.receivedAt, hourAgo),
      ),
    )
  const c = counts ?? { credMinute: 0, credHour: 0, tenantMinute: 0, tenantHour: 0 }
  if (cred && c.credMinute + 1 >= limits.spikeMin) {
    const dayAgo = new Date(Date.now() - 86_400_000)
    const [usual] = await db
      .select({ n: sql<number>`count(*)`.mapWith(Number) })
      .from(messages)
      .where(
        and(
          eq(messages.credentialId, cred),
          gte(messages.receivedAt, dayAgo),
          lt(messages.receivedAt, hourAgo),
        ),
      )
    const usualPerMinute = (usual?.n ?? 0) / (23 * 60)
    if (c.credMinute + 1 > limits.spikeFactor * usualPerMinute) {
      const reason = `sending spike: ${c.credMinute + 1} messages in a minute against a usual ${usualPerMinute.toFixed(2)} a minute`
      await suspendSmtpCredential(db, { tenantId: submitter.tenantId, id: cred, reason, actor: 'moat:rate' })
      return {
        ok: false,
        reason: `these credentials are suspended (${reason}); an admin must re-enable them`,
        suspended: true,
      }
    }
  }
  if (cred && c.credMinute >= limits.perMinute)
    return { ok: false, reason: `at most ${limits.perMinute} messages a minute for these credentials` }
  if (cred && c.credHour >= limits.perHour)
    return { ok: false, reason: `at most ${limits.perHour} messages an hour for these credentials` }
  if (c.tenantMinute >= limits.tenantPerMinute)
    return { ok: false, reason: `at most ${limits.tenantPerMinute} messages a minute for this account` }
  if (c.tenantHour >= limits.tenantPerHour)
    return { ok: false, reason: `at most ${limits.tenantPerHour} messages an hour for this account` }
  return { ok: true }
}

/** Appends an event for the tenant's webhooks to pick up. */
export async function recordTenantEvent(
  db: Executor,
  tenantId: string,
  kind: string,
  payload: Record<string, unknown>,
): Promise<void> {
  await db.insert(tenantEvents).values({ id: newId('evt'), tenantId, kind, payload })
}

/** The tenant's events, newest first. */
export async function listTenantEvents(
  db: Executor,
  input: { tenantId: string; limit: number; cursor?: string | undefined },
) {
  return db
    .select()
    .from(tenantEvents)
    .where(
      and(
        eq(tenantEvents.tenantId, input.tenantId),
        input.cursor ? lt(tenantEvents.id, input.cursor) : undefined,
      ),
    )
    .orderBy(desc(tenantEvents.id))
    .limit(input.limit)
}

/** The tenant's outbound settings: the spam threshold (null: Moat's default) and its sender pool. */
export async function getOutboundSettings(
  db: Executor,
  tenantId: string,
): Promise<{ spamThreshold: number | null; senderPool: string | null }> {
  const [row] = await db
    .select({ spamThreshold: tenants.outboundSpamThreshold, senderPool: tenants.senderPool })
    .from(tenants)
    .where(eq(tenants.id, tenantId))
  if (!row) throw new MoatError('not_found', `no tenant ${tenantId}`)
  return row
}

/** Sets the score at or above which the tenant's outbound mail is held (null: Moat's default). */
export async function setOutboundSpamThreshold(
  db: Executor,
  input: { tenantId: string; spamThreshold: number | null; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx
      .update(tenants)
      .set({ outboundSpamThreshold: input.spamThreshold })
      .where(eq(tenants.id, input.tenantId))
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'outbound.threshold',
      target: input.tenantId,
      detail: { spamThreshold: input.spamThreshold },
    })
  })
}

/** The operator assigns a tenant to a sender pool (null: the default pool). */
export async function setSenderPool(
  db: Executor,
  input: { tenantId: string; pool: string | null; actor: string },
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.update(tenants).set({ senderPool: input.pool }).where(eq(tenants.id, input.tenantId))
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'outbound.pool',
      target: input.tenantId,
      detail: { pool: input.pool },
    })
  })
}
