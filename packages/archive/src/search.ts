import { MoatError } from '@moat/core'
import { archivedMessages, type Executor } from '@moat/db'
import { and, eq, type SQL, sql } from 'drizzle-orm'
import { type ArchiveVerdict, SEARCH_CONFIGS } from './index-message'

/** What an archive search may ask for; every field is optional and they all must hold. */
export interface ArchiveFilter {
  /** free text, web-search syntax: words, "a phrase", -excluded, or */
  q?: string | undefined
  /** part of the sender's address or name (envelope or From header) */
  from?: string | undefined
  /** part of a recipient's address or name (envelope, To or Cc) */
  to?: string | undefined
  subject?: string | undefined
  /** received at or after */
  after?: Date | undefined
  /** received before */
  before?: Date | undefined
  direction?: 'inbound' | 'outbound' | undefined
  verdict?: ArchiveVerdict | undefined
  hasAttachment?: boolean | undefined
  /** part of an attachment's file name */
  attachment?: string | undefined
  minSize?: number | undefined
  maxSize?: number | undefined
}

export type ArchiveSort = 'date' | 'relevance'

export type ArchivedMessage = typeof archivedMessages.$inferSelect

export interface ArchiveHit {
  message: Omit<ArchivedMessage, 'search' | 'textExtract' | 'addresses'>
  /** a piece of the body around the matches, HTML-escaped, matches in `<mark>`; or its start */
  snippet: string
  /** the full-text rank, when there was free text */
  rank: number | null
}

const like = (s: string) => `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** The free-text query, matched in every text-search configuration documents may be indexed with. */
export function tsQueryExpression(q: string): SQL {
  return sql.join(
    SEARCH_CONFIGS.map((config) => sql`websearch_to_tsquery(${sql.raw(`'${config}'`)}::regconfig, ${q})`),
    sql` || `,
  )
}

/**
 * The free-text query as a tsquery value, parsed once (in its own statement) rather than once per
 * row, and passed as a constant, so that the planner estimates its selectivity and uses the GIN
 * index. The configurations that parse the query alike (most do for most words) give one branch.
 */
export async function parseQuery(db: Executor, q: string): Promise<string> {
  const rows = (await db.execute(
    sql`select unnest(array[${sql.join(
      SEARCH_CONFIGS.map(
        (config) => sql`websearch_to_tsquery(${sql.raw(`'${config}'`)}::regconfig, ${q})::text`,
      ),
      sql`, `,
    )}]) as branch`,
  )) as unknown as { branch: string }[]
  const branches = [...new Set(rows.map((r) => r.branch).filter(Boolean))]
  return branches.map((b) => (branches.length > 1 ? `(${b})` : b)).join(' | ')
}

const tsQuery = (parsed: string) => sql`${parsed}::tsquery`

/**
 * The conditions of a filter, always scoped to one tenant. `parsed` is the free text through
 * {@link parseQuery}; without it, `q` is parsed inside the statement.
 */
export function filterConditions(tenantId: string, f: ArchiveFilter, parsed?: string): SQL {
  const a = archivedMessages
  const c: (SQL | undefined)[] = [eq(a.tenantId, tenantId)]
  if (f.q?.trim())
    c.push(sql`${a.search} @@ ${parsed !== undefined ? tsQuery(parsed) : sql`(${tsQueryExpression(f.q)})`}`)
  if (f.from) {
    // the trigram index on `addresses` narrows; the sender columns decide
    c.push(sql`${a.addresses} ilike ${like(f.from.toLowerCase())}`)
    c.push(sql`(${a.mailFrom} ilike ${like(f.from)} or ${a.fromHeader} ilike ${like(f.from)})`)
  }
  if (f.to) {
    c.push(sql`${a.addresses} ilike ${like(f.to.toLowerCase())}`)
    c.push(
      sql`(array_to_string(${a.rcptTo}, ' ') ilike ${like(f.to)} or ${a.toHeader} ilike ${like(f.to)} or ${a.ccHeader} ilike ${like(f.to)})`,
    )
  }
  if (f.subject) c.push(sql`${a.subject} ilike ${like(f.subject)}`)
  if (f.after) c.push(sql`${a.receivedAt} >= ${f.after.toISOString()}`)
  if (f.before) c.push(sql`${a.receivedAt} < ${f.before.toISOString()}`)
  if (f.direction) c.push(eq(a.direction, f.direction))
  if (f.verdict) c.push(eq(a.verdict, f.verdict))
  if (f.hasAttachment !== undefined) c.push(eq(a.hasAttachments, f.hasAttachment))
  if (f.attachment)
    c.push(sql`exists (select 1 from unnest(${a.attachmentNames}) n where n ilike ${like(f.attachment)})`)
  if (f.minSize !== undefined) c.push(sql`${a.size} >= ${f.minSize}`)
  if (f.maxSize !== undefined) c.push(sql`${a.size} <= ${f.maxSize}`)
  return and(...c) as SQL
}

interface Cursor {
  /** rank (relevance sort) */
  r?: number
  /** received at, ISO */
  t: string
  id: string
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url')
}

export function decodeCursor(s: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Cursor
    if (typeof c.t !== 'string' || typeof c.id !== 'string' || Number.isNaN(Date.parse(c.t)))
      throw new Error('bad')
    if (c.r !== undefined && typeof c.r !== 'number') throw new Error('bad')
    return c
  } catch {
    throw new MoatError('invalid', 'the cursor is not one this API gave out', 'pass nextCursor as it came')
  }
}

const COLUMNS = sql.raw(
  [
    'id',
    'tenant_id',
    'message_id',
    'direction',
    'object_key',
    'sha256',
    'size',
    'mail_from',
    'rcpt_to',
    'from_header',
    'to_header',
    'cc_header',
    'subject',
    'message_id_header',
    'sent_at',
    'received_at',
    'archived_at',
    'verdict',
    'spam_score',
    'attachment_names',
    'has_attachments',
    'language',
  ].join(', '),
)

type Row = Record<string, unknown>

function toMessage(r: Row): ArchiveHit['message'] {
  const date = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string))
  return {
    id: r.id as string,
    tenantId: r.tenant_id as string,
    messageId: r.message_id as string,
    direction: r.direction as string,
    objectKey: r.object_key as string,
    sha256: r.sha256 as string,
    size: r.size as number,
    mailFrom: r.mail_from as string,
    rcptTo: r.rcpt_to as string[],
    fromHeader: r.from_header as string | null,
    toHeader: r.to_header as string | null,
    ccHeader: r.cc_header as string | null,
    subject: r.subject as string | null,
    messageIdHeader: r.message_id_header as string | null,
    sentAt: date(r.sent_at),
    receivedAt: date(r.received_at) as Date,
    archivedAt: date(r.archived_at) as Date,
    verdict: r.verdict as string,
    spamScore: r.spam_score as number | null,
    attachmentNames: r.attachment_names as string[],
    hasAttachments: r.has_attachments as boolean,
    language: r.language as string,
  }
}

/** ts_headline's highlight markers: control characters that capText removes from every text extract */
const MARK_START = String.fromCharCode(2)
const MARK_END = String.fromCharCode(3)

/** HTML-escapes a ts_headline fragment and turns its \x02…\x03 markers into `<mark>…</mark>`. */
export function snippetHtml(fragment: string): string {
  return fragment
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;')
    .replaceAll(MARK_START, '<mark>')
    .replaceAll(MARK_END, '</mark>')
    .replace(/\s+/g, ' ')
    .trim()
}

const HEADLINE_OPTIONS = `StartSel="${MARK_START}", StopSel="${MARK_END}", MaxWords=35, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "`

/**
 * Searches a tenant's archive: newest first (`date`) or best match first (`relevance`, which needs
 * `q`), `limit` at a time after `cursor`. Each hit has a snippet of the body with the matches marked.
 */
export async function searchArchive(
  db: Executor,
  input: {
    tenantId: string
    filter: ArchiveFilter
    sort?: ArchiveSort
    limit: number
    cursor?: string | undefined
  },
): Promise<{ items: ArchiveHit[]; nextCursor: string | null }> {
  const q = input.filter.q?.trim()
  const sort = input.sort ?? 'date'
  if (sort === 'relevance' && !q)
    throw new MoatError('invalid', 'sorting by relevance needs free text (q)', 'add q, or sort by date')
  const cursor = input.cursor ? decodeCursor(input.cursor) : undefined
  const parsed = q ? await parseQuery(db, q) : ''
  const where = filterConditions(input.tenantId, input.filter, parsed)
  const rank = q ? sql`ts_rank(search, ${tsQuery(parsed)})` : sql`null::real`
  let after = sql`true`
  if (cursor) {
    after =
      sort === 'relevance'
        ? sql`(ts_rank(search, ${tsQuery(parsed)}), received_at, id) < (${cursor.r ?? 0}::real, ${cursor.t}::timestamptz, ${cursor.id})`
        : sql`(received_at, id) < (${cursor.t}::timestamptz, ${cursor.id})`
  }
  const order =
    sort === 'relevance' ? sql`rank desc, received_at desc, id desc` : sql`received_at desc, id desc`
  const headline = q
    ? sql`ts_headline(language::regconfig, text_extract, ${tsQuery(parsed)}, ${HEADLINE_OPTIONS})`
    : sql`left(text_extract, 240)`
  // the page is chosen first; snippets (the costly part) are made for its rows only
  const rows = (await db.execute(sql`
    with page as (
      select ${COLUMNS}, text_extract, ${rank} as rank
      from archived_messages
      where ${where} and ${after}
      order by ${order}
      limit ${input.limit + 1}
    )
    select page.*, ${headline} as snippet from page order by ${order}
  `)) as unknown as Row[]
  const items = rows.slice(0, input.limit).map((r) => ({
    message: toMessage(r),
    snippet: snippetHtml((r.snippet as string | null) ?? ''),
    rank: r.rank === null ? null : Number(r.rank),
  }))
  const last = items.at(-1)
  const nextCursor =
    rows.length > input.limit && last
      ? encodeCursor({
          ...(sort === 'relevance' ? { r: last.rank ?? 0 } : {}),
          t: last.message.receivedAt.toISOString(),
          id: last.message.id,
        })
      : null
  return { items, nextCursor }
}

/** One archived message of the tenant's; another tenant's is as missing as one that never was. */
export async function getArchived(db: Executor, tenantId: string, id: string): Promise<ArchivedMessage> {
  const [m] = await db
    .select()
    .from(archivedMessages)
    .where(and(eq(archivedMessages.id, id), eq(archivedMessages.tenantId, tenantId)))
  if (!m) throw new MoatError('not_found', `no archived message ${id}`)
  return m
}

/** Counts what a filter matches. */
export async function countArchive(db: Executor, tenantId: string, filter: ArchiveFilter): Promise<number> {
  const parsed = filter.q?.trim() ? await parseQuery(db, filter.q) : undefined
  const [row] = (await db.execute(
    sql`select count(*)::int as n from archived_messages where ${filterConditions(tenantId, filter, parsed)}`,
  )) as unknown as { n: number }[]
  return row?.n ?? 0
}

/**
 * Walks every archived message a filter matches, oldest first, `batch` rows per query (keyset on
 * received_at, id), so memory stays bounded however many there are.
 */
export async function* walkArchive(
  db: Executor,
  tenantId: string,
  filter: ArchiveFilter,
  batch = 500,
): AsyncGenerator<ArchiveHit['message']> {
  let after: { t: string; id: string } | undefined
  const parsed = filter.q?.trim() ? await parseQuery(db, filter.q) : undefined
  for (;;) {
    const rows = (await db.execute(sql`
      select ${COLUMNS} from archived_messages
      where ${filterConditions(tenantId, filter, parsed)}
        and ${after ? sql`(received_at, id) > (${after.t}::timestamptz, ${after.id})` : sql`true`}
      order by received_at, id
      limit ${batch}
    `)) as unknown as Row[]
    for (const r of rows) yield toMessage(r)
    const last = rows.at(-1)
    if (!last || rows.length < batch) return
    after = { t: new Date(last.received_at as string).toISOString(), id: last.id as string }
  }
}
