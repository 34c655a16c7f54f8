import { generateKeyPairSync } from 'node:crypto'
import { auditLog, dkimKeys, domains, type Executor, newId } from '@moat/db'
import { and, desc, eq, getTableColumns, isNotNull, or } from 'drizzle-orm'
import type { DnsResolver } from './dns'
import { getDomain, normalizeDomain } from './domains'
import { MoatError } from './errors'

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256'
export type DkimKey = Omit<typeof dkimKeys.$inferSelect, 'privateKey'>

const SELECTOR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** The TXT record a customer publishes for a key: its name and its value. */
export function dkimRecord(
  key: Pick<DkimKey, 'selector' | 'algorithm' | 'publicKey'>,
  domainName: string,
): { name: string; value: string; zone: string } {
  const name = `${key.selector}._domainkey.${domainName}`
  const value = `v=DKIM1; k=${key.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa'}; p=${key.publicKey}`
  // a zone file takes long TXT values as several quoted strings of at most 255 characters
  const quoted = (value.match(/.{1,255}/g) ?? []).map((s) => `"${s}"`).join(' ')
  return { name, value, zone: `${name}. 3600 IN TXT ${quoted}` }
}

function newKeyPair(algorithm: DkimAlgorithm): { privateKey: string; publicKey: string } {
  if (algorithm === 'ed25519-sha256') {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    // RFC 8463: p= is the raw 32-byte public key, the last 32 bytes of its SPKI DER
    const der = publicKey.export({ format: 'der', type: 'spki' })
    return {
      privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      publicKey: der.subarray(der.length - 32).toString('base64'),
    }
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
  }
}

const { privateKey: _private, ...PUBLIC_COLUMNS } = getTableColumns(dkimKeys)

/** Generates a DKIM key for one of the tenant's domains (RSA 2048 by default, or Ed25519). */
export async function generateDkimKey(
  db: Executor,
  input: { tenantId: string; domainId: string; algorithm?: DkimAlgorithm; selector?: string; actor: string },
): Promise<DkimKey> {
  const algorithm = input.algorithm ?? 'rsa-sha256'
  const domain = await getDomain(db, input.tenantId, input.domainId)
  const selector =
    input.selector?.toLowerCase() ??
    `moat${new Date().toISOString().slice(0, 7).replace('-', '')}${algorithm === 'ed25519-sha256' ? 'e' : 'r'}`
  if (!SELECTOR.test(selector)) {
    throw new MoatError(
      'invalid',
      `invalid selector ${JSON.stringify(input.selector)}`,
      'use letters, digits and dashes',
    )
  }
  const pair = newKeyPair(algorithm)
  return db.transaction(async (tx) => {
    const [taken] = await tx
      .select({ id: dkimKeys.id })
      .from(dkimKeys)
      .where(and(eq(dkimKeys.domainId, domain.id), eq(dkimKeys.selector, selector)))
    if (taken)
      throw new MoatError(
        'conflict',
        `${domain.name} already has a key with selector ${selector}`,
        'pick another selector',
      )
    const [row] = await tx
      .insert(dkimKeys)
      .values({
        id: newId('dkim'),
        tenantId: input.tenantId,
        domainId: domain.id,
        selector,
        algorithm,
        privateKey: pair.privateKey,
        publicKey: pair.publicKey,
        createdBy: input.actor,
      })
      .returning(PUBLIC_COLUMNS)
    if (!row) throw new Error('insert returned no key')
    await tx.insert(auditLog).values({
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'dkim.generate',
      target: row.id,
      detail: { domain: domain.name, selector, algorithm },
    })
    return row
  })
}

/** A domain's DKIM keys, newest first. */
export async function listDkimKeys(db: Executor, tenantId: string, domainId: string): Promise<DkimKey[]> {
  const domain = await getDomain(db, tenantId, domainId)
  return db
    .select(PUBLIC_COLUMNS)
    .from(dkimKeys)
    .where(and(eq(dkimKeys.tenantId, tenantId), eq(dkimKeys.domainId, domain.id)))
    .orderBy(desc(dkimKeys.id))
}

/**
 * Looks the domain's keys up in DNS: a key whose record (`selector._domainkey.domain`) carries its
 * public key becomes published, and mail is signed with it from then on.
 */
export async function checkDkimKeys(
  db: Executor,
  resolver: Pick<DnsResolver, 'resolveTxt'>,
  input: { tenantId: string; domainId: string },
): Promise<DkimKey[]> {
  const domain = await getDomain(db, input.tenantId, input.domainId)
  const keys = await listDkimKeys(db, input.tenantId, domain.id)
  const now = new Date()
  for (const key of keys) {
    const { name } = dkimRecord(key, domain.name)
    let result: string
    let published = false
    try {
      const txt = (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''))
      // tag=value pairs; a value (base64) may itself end in '='
      const tags = txt.map(
        (v) =>
          new Map(
            v.split(';').map((t) => {
              const at = t.indexOf('=')
              return [t.slice(0, at).trim(), t.slice(at + 1).trim()] as [string, string]
            }),
          ),
      )
      published = tags.some((t) => (t.get('p') ?? '').replace(/\s+/g, '') === key.publicKey)
      result = published
        ? `published at ${name}`
        : `the TXT record at ${name} does not carry this key's p= value`
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      result = `no TXT record at ${name} (${code === 'ENOTFOUND' || code === 'ENODATA' ? 'not found' : (code ?? String(err))})`
    }
    await db
      .update(dkimKeys)
      .set({
        publishedAt: published ? (key.publishedAt ?? now) : null,
        lastCheckAt: now,
        lastCheckResult: result,
      })
      .where(eq(dkimKeys.id, key.id))
  }
  return listDkimKeys(db, input.tenantId, domain.id)
}

/** The operator's override: sign with this domain's newest key although its record is not seen. */
export async function forceDkimKey(
  db: Executor,
  input: { domain: string; forced: boolean; actor: string },
): Promise<DkimKey> {
  const name = normalizeDomain(input.domain)
  const [row] = await db
    .select({ id: dkimKeys.id, tenantId: dkimKeys.tenantId })
    .from(dkimKeys)
    .innerJoin(domains, eq(domains.id, dkimKeys.domainId))
    .where(and(eq(domains.name, name), isNotNull(domains.verifiedAt)))
    .orderBy(desc(dkimKeys.id))
    .limit(1)
  if (!row) throw new MoatError('not_found', `${name} has no DKIM key`, 'generate one through the API first')
  const [updated] = await db
    .update(dkimKeys)
    .set({ forced: input.forced })
    .where(eq(dkimKeys.id, row.id))
    .returning(PUBLIC_COLUMNS)
  if (!updated) throw new Error('key disappeared')
  await db.insert(auditLog).values({
    tenantId: row.tenantId,
    actor: input.actor,
    action: input.forced ? 'dkim.force' : 'dkim.unforce',
    target: row.id,
    detail: { domain: name },
  })
  return updated
}

/**
 * The key to sign the tenant's mail from `domain` with: the newest key of that verified domain
 * whose record is published, or that the operator forced. Undefined: the mail goes unsigned.
 */
export async function signingKeyFor(
  db: Executor,
  tenantId: string,
  domain: string,
): Promise<{ domain: string; selector: string; algorithm: DkimAlgorithm; privateKey: string } | undefined> {
  const [row] = await db
    .select({
      domain: domains.name,
      selector: dkimKeys.selector,
      algorithm: dkimKeys.algorithm,
      privateKey: dkimKeys.privateKey,
    })
    .from(dkimKeys)
    .innerJoin(domains, eq(domains.id, dkimKeys.domainId))
    .where(
      and(
        eq(dkimKeys.tenantId, tenantId),
        eq(domains.name, normalizeDomain(domain)),
        isNotNull(domains.verifiedAt),
        or(isNotNull(dkimKeys.publishedAt), eq(dkimKeys.forced, true)),
      ),
    )
    .orderBy(desc(dkimKeys.id))
    .limit(1)
  return row ? { ...row, algorithm: row.algorithm as DkimAlgorithm } : undefined
}
