import { Readable } from 'node:stream'
import type { ObjectStore } from '@moat/blobstore'
import { MoatError, recordAudit } from '@moat/core'
import { archiveExports, type Executor, newId } from '@moat/db'
import type { Logger } from '@moat/log'
import { and, eq, sql } from 'drizzle-orm'
import { mboxChunks } from './mbox'
import { type ArchiveFilter, countArchive } from './search'

export type ArchiveExport = typeof archiveExports.$inferSelect

/** An export still `running` whose progress has not moved for this long died with its process. */
export const EXPORT_STALE_MS = 5 * 60_000

/** Filters as stored with an export: dates as ISO strings. */
export function filterToJson(f: ArchiveFilter): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(f)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
  )
}

export function filterFromJson(j: Record<string, unknown>): ArchiveFilter {
  const f = { ...j } as Record<string, unknown>
  for (const k of ['after', 'before']) if (typeof f[k] === 'string') f[k] = new Date(f[k] as string)
  return f as ArchiveFilter
}

/**
 * Starts an `.mbox` export of a search in the background of this process and returns its record at
 * once; poll {@link getExport} for `written` of `total`. The file is written to the object store as
 * it is produced (multipart on S3), never held whole in memory.
 */
export async function startExport(
  deps: { db: Executor; store: ObjectStore; log?: Logger | undefined },
  input: { tenantId: string; filter: ArchiveFilter; actor: string },
): Promise<{ record: ArchiveExport; done: Promise<void> }> {
  const { db } = deps
  const id = newId('exp')
  const total = await countArchive(db, input.tenantId, input.filter)
  const record = await db.transaction(async (tx) => {
    const [row] = await tx
      .insert(archiveExports)
      .values({
        id,
        tenantId: input.tenantId,
        status: 'running',
        query: filterToJson(input.filter),
        total,
        objectKey: `exports/${input.tenantId}/${id}.mbox`,
        createdBy: input.actor,
      })
      .returning()
    await recordAudit(tx, {
      tenantId: input.tenantId,
      actor: input.actor,
      action: 'archive.export',
      target: id,
      detail: { query: filterToJson(input.filter), total },
    })
    if (!row) throw new Error('insert returned no export')
    return row
  })
  const done = runExport(deps, record).catch((err: unknown) => {
    deps.log?.error({ err, exportId: id }, 'archive export failed')
  })
  return { record, done }
}

async function runExport(
  deps: { db: Executor; store: ObjectStore; log?: Logger | undefined },
  record: ArchiveExport,
): Promise<void> {
  const { db, store } = deps
  let written = 0
  let bytes = 0
  let reported = Date.now()
  const progress = async (final?: { status: string; error?: string }) => {
    await db
      .update(archiveExports)
      .set({
        written,
        bytes,
        updatedAt: new Date(),
        ...(final ? { status: final.status, error: final.error ?? null, finishedAt: new Date() } : {}),
      })
      .where(eq(archiveExports.id, record.id))
  }
  try {
    const chunks = mboxChunks(db, store, record.tenantId, filterFromJson(record.query), async () => {
      written++
      if (Date.now() - reported > 1000) {
        reported = Date.now()
        await progress()
      }
    })
    const counted = (async function* () {
      for await (const chunk of chunks) {
        bytes += chunk.length
        yield chunk
      }
    })()
    await store.put(record.objectKey, Readable.from(counted))
    await progress({ status: 'done' })
  } catch (err) {
    await progress({ status: 'failed', error: 'the export could not be written; start it again' })
    throw err
  }
}

/** An export of the tenant's; `running` exports whose progress stopped long ago read as `failed`. */
export async function getExport(db: Executor, tenantId: string, id: string): Promise<ArchiveExport> {
  const [row] = await db
    .select()
    .from(archiveExports)
    .where(and(eq(archiveExports.id, id), eq(archiveExports.tenantId, tenantId)))
  if (!row) throw new MoatError('not_found', `no archive export ${id}`)
  if (row.status === 'running' && Date.now() - row.updatedAt.getTime() > EXPORT_STALE_MS) {
    const [failed] = await db
      .update(archiveExports)
      .set({
        status: 'failed',
        error: 'the export stopped (its process ended); start it again',
        finishedAt: new Date(),
      })
      .where(
        and(
          eq(archiveExports.id, id),
          eq(archiveExports.status, 'running'),
          sql`updated_at = ${row.updatedAt}`,
        ),
      )
      .returning()
    return failed ?? row
  }
  return row
}
