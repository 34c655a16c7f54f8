import { createHash } from 'node:crypto'
import type { ObjectStore } from '@moat/blobstore'
import type { ArchiveJob } from '@moat/core'
import { archivedMessages, type Db, type Executor, messages, newId, tenants } from '@moat/db'
import { readMessage } from '@moat/detect'
import type { Logger } from '@moat/log'
import { type Consumer, consume, type Queue } from '@moat/queue'
import { eq, type SQL, sql } from 'drizzle-orm'

/** The body text kept for search and snippets, in bytes of UTF-8. */
export const TEXT_EXTRACT_BYTES = 64 * 1024

/** `Content-Language` primary tags → PostgreSQL text-search configurations; anything else is `simple`. */
export const LANGUAGES: Record<string, string> = {
  en: 'english',
  de: 'german',
  fr: 'french',
  es: 'spanish',
  it: 'italian',
  pt: 'portuguese',
  nl: 'dutch',
  sv: 'swedish',
  da: 'danish',
  no: 'norwegian',
  nb: 'norwegian',
  fi: 'finnish',
  ru: 'russian',
}

/** Every configuration a document may be indexed with; a free-text query is matched in each. */
export const SEARCH_CONFIGS = ['simple', ...new Set(Object.values(LANGUAGES))]

/** What the archive decided the message was: from the scan's action and virus result. */
export type ArchiveVerdict = 'clean' | 'tagged' | 'quarantined' | 'discarded' | 'virus' | 'unscanned'

export interface ArchiveDeps {
  db: Db
  store: ObjectStore
  log?: Logger | undefined
}

/**
 * Queues a message for the archive, in the caller's transaction when given one. The scan worker
 * calls it for every inbound message once its verdict is recorded; the outbound path calls it the
 * same way once an outbound message has its verdict. The archive worker then copies the raw message
 * to `archive/<tenant>/<yyyy>/<mm>/<dd>/<message id>.eml` and indexes it, unless the tenant turned
 * archiving off. Queuing the same message twice archives it once.
 *
 * @example
 * await db.transaction(async (tx) => {
 *   await tx.update(messages).set({ status: 'queued', action: 'deliver' }).where(eq(messages.id, id))
 *   await archiveMessage(archiveQueue, id, { tx })
 * })
 */
export async function archiveMessage(
  queue: Queue<ArchiveJob>,
  messageId: string,
  options: { tx?: Executor } = {},
): Promise<void> {
  await queue.send({ messageId }, options.tx ? { tx: options.tx } : {})
}

function verdictOf(m: typeof messages.$inferSelect): ArchiveVerdict {
  if (m.virusScan === 'infected') return 'virus'
  switch (m.action) {
    case 'deliver':
      return 'clean'
    case 'tag':
      return 'tagged'
    case 'quarantine':
    case 'hold': // outbound mail held as spam: the outbound quarantine
      return 'quarantined'
    case 'discard':
      return 'discarded'
    default:
      return 'unscanned'
  }
}

/** The configuration for a `Content-Language` value such as `de-CH, en`: its first tag's language. */
export function languageOf(contentLanguage: string | undefined): string {
  const tag = contentLanguage?.split(',')[0]?.trim().toLowerCase().split('-')[0] ?? ''
  return LANGUAGES[tag] ?? 'simple'
}

/** Plain text of an HTML body: tags, scripts and styles out, entities for spaces and the markup five. */
export function htmlToText(html: string): string {
  return html
    .replace(/<(script|style|head)[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<br\s*\/?>|<\/(p|div|tr|li|h\d)>/gi, '\n')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&lt;/gi, '<')
    .replace(/&gt;/gi, '>')
    .replace(/&quot;/gi, '"')
    .replace(/&#39;|&apos;/gi, "'")
    .replace(/&amp;/gi, '&')
    .replace(/[ \t]+/g, ' ')
    .replace(/\n\s*\n+/g, '\n\n')
    .trim()
}

/** At most `bytes` of UTF-8, cut on a character boundary, without NULs or the snippet markers. */
export function capText(text: string, bytes = TEXT_EXTRACT_BYTES): string {
  // NUL cannot be stored in text; \x02 and \x03 mark snippet highlights (search.ts)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing exactly these control characters
  const clean = text.replace(/[\x00\x02\x03]/g, '')
  const buf = Buffer.from(clean, 'utf8')
  if (buf.length <= bytes) return clean
  let end = bytes
  while (end > 0 && ((buf[end] ?? 0) & 0xc0) === 0x80) end-- // not inside a multi-byte character
  return buf.subarray(0, end).toString('utf8')
}

export function archiveKey(tenantId: string, receivedAt: Date, messageId: string): string {
  const d = receivedAt.toISOString()
  return `archive/${tenantId}/${d.slice(0, 4)}/${d.slice(5, 7)}/${d.slice(8, 10)}/${messageId}.eml`
}

/** The index fields of a raw message, as the archive stores them. */
export interface MessageDescription {
  fromHeader: string | null
  toHeader: string | null
  ccHeader: string | null
  subject: string | null
  sentAt: Date | null
  attachmentNames: string[]
  hasAttachments: boolean
  /** a text-search configuration name from LANGUAGES, or simple */
  language: string
  textExtract: string
  addresses: string
}

/** Parses a raw message (mailparser, bounded) into what the archive indexes. */
export async function describeMessage(
  raw: Buffer,
  envelope: { mailFrom: string; rcptTo: string[]; subject?: string | null },
): Promise<MessageDescription> {
  const view = await readMessage(raw)
  const fromHeader = view.from
    ? view.from.name
      ? `${view.from.name} <${view.from.address}>`
      : view.from.address
    : (view.headers.get('from')?.[0] ?? null)
  const toHeader = view.to.length ? view.to.join(', ') : (view.headers.get('to')?.[0] ?? null)
  const ccHeader = view.headers.get('cc')?.[0] ?? null
  const addresses = [envelope.mailFrom, ...envelope.rcptTo, fromHeader ?? '', toHeader ?? '', ccHeader ?? '']
    .join(' ')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim()
  const dateHeader = view.headers.get('date')?.[0]
  const subject = view.subject || envelope.subject || null
  return {
    fromHeader: capText(fromHeader ?? '', 2048) || null,
    toHeader: capText(toHeader ?? '', 8192) || null,
    ccHeader: capText(ccHeader ?? '', 8192) || null,
    subject: subject ? capText(subject, 2048) : null,
    sentAt: dateHeader && !Number.isNaN(Date.parse(dateHeader)) ? new Date(dateHeader) : null,
    attachmentNames: view.attachments.map((a) => capText(a.filename, 512)).filter(Boolean),
    hasAttachments: view.attachments.length > 0,
    language: languageOf(view.headers.get('content-language')?.[0]),
    textExtract: capText(view.text.trim() ? view.text : htmlToText(view.html)),
    addresses: capText(addresses, 16384),
  }
}

/**
 * The full-text document: subject (weight A), addresses and attachment names (B), body (D). The
 * message's language stems everything but the addresses, which are also split into words
 * (`alice example com`) so that a query for a name or a domain finds them.
 */
export function searchVector(d: MessageDescription): SQL {
  const lang = sql.raw(`'${LANGUAGES_SET.has(d.language) ? d.language : 'simple'}'::regconfig`)
  const addressWords = d.addresses.replace(/[@.<>,"]/g, ' ')
  return sql`setweight(to_tsvector(${lang}, ${d.subject ?? ''}), 'A')
    || setweight(to_tsvector('simple', ${`${d.addresses} ${addressWords}`}), 'B')
    || setweight(to_tsvector(${lang}, ${d.attachmentNames.join(' ')}), 'B')
    || setweight(to_tsvector(${lang}, ${d.textExtract}), 'D')`
}

const LANGUAGES_SET = new Set(SEARCH_CONFIGS)

/**
 * Archives one message: copies its raw bytes to the archive's immutable object and writes the index
 * row. Idempotent: a message already archived is left alone. Returns what it did.
 */
export async function indexMessage(
  deps: ArchiveDeps,
  messageId: string,
): Promise<'archived' | 'already' | 'disabled' | 'missing'> {
  const { db, store } = deps
  const [row] = await db
    .select({ message: messages, archiveEnabled: tenants.archiveEnabled })
    .from(messages)
    .innerJoin(tenants, eq(tenants.id, messages.tenantId))
    .where(eq(messages.id, messageId))
  if (!row) return 'missing'
  const m = row.message
  if (!row.archiveEnabled) return 'disabled'
  const [existing] = await db
    .select({ id: archivedMessages.id })
    .from(archivedMessages)
    .where(sql`${archivedMessages.tenantId} = ${m.tenantId} and ${archivedMessages.messageId} = ${m.id}`)
  if (existing) return 'already'

  const raw = await store.get(m.objectKey)
  const d = await describeMessage(raw, { mailFrom: m.mailFrom, rcptTo: m.rcptTo, subject: m.subject })
  const objectKey = archiveKey(m.tenantId, m.receivedAt, m.id)
  const sha256 = createHash('sha256').update(raw).digest('hex')

  // the same bytes under a key of its own: immutable, and purged on the tenant's schedule whatever
  // happens to the inbound copy
  await store.put(objectKey, raw)
  const inserted = await db
    .insert(archivedMessages)
    .values({
      id: newId('arc'),
      tenantId: m.tenantId,
      messageId: m.id,
      direction: m.direction,
      objectKey,
      sha256,
      size: raw.length,
      mailFrom: m.mailFrom,
      rcptTo: m.rcptTo,
      fromHeader: d.fromHeader,
      toHeader: d.toHeader,
      ccHeader: d.ccHeader,
      subject: d.subject,
      messageIdHeader: m.messageIdHeader,
      sentAt: d.sentAt,
      receivedAt: m.receivedAt,
      verdict: verdictOf(m),
      spamScore: m.spamScore,
      attachmentNames: d.attachmentNames,
      hasAttachments: d.hasAttachments,
      language: d.language,
      textExtract: d.textExtract,
      addresses: d.addresses,
      search: searchVector(d),
    })
    .onConflictDoNothing()
    .returning({ id: archivedMessages.id })
  deps.log?.debug({ messageId, archived: inserted[0]?.id, objectKey }, 'archived')
  return inserted.length ? 'archived' : 'already'
}

/** Consumes the `archive` queue: one message archived per job. */
export function startArchiveWorker(
  deps: ArchiveDeps & { queue: Queue<ArchiveJob>; log: Logger; concurrency?: number },
): Consumer {
  return consume(deps.queue, {
    concurrency: deps.concurrency ?? 2,
    visibilityTimeout: 300,
    log: deps.log,
    handle: async (job) => {
      const outcome = await indexMessage(deps, job.body.messageId)
      deps.log.debug({ messageId: job.body.messageId, outcome }, 'archive job done')
      await deps.queue.delete(job.receipt)
    },
  })
}
