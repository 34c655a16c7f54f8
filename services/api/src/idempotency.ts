import { createHash } from 'node:crypto'
import { apiIdempotency, type Executor } from '@moat/db'
import { and, eq, lt } from 'drizzle-orm'
import type { MiddlewareHandler } from 'hono'
import type { ApiEnv } from './auth'
import { ApiProblem } from './problems'

export const IDEMPOTENCY_HEADER = 'Idempotency-Key'
const TTL_MS = 24 * 3600_000

/**
 * `Idempotency-Key` on a POST that creates something: the first request runs and its answer is
 * kept (in `api_idempotency`, per tenant, so every API process sees it); a retry with the same key
 * within 24 hours gets that answer again, status and body, without running the handler. The same
 * key with another method, path or body is 422 `idempotency-key-reused`; while the first request
 * is still running, a retry is 409. Answers of 500 and above are not kept, so a retry runs again.
 * Must run after `authenticate`.
 */
export function idempotent(db: Executor): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const key = c.req.header(IDEMPOTENCY_HEADER)
    if (c.req.method !== 'POST' || key === undefined) return next()
    if (key.length < 1 || key.length > 255) {
      throw new ApiProblem(400, `${IDEMPOTENCY_HEADER} must be 1 to 255 characters`)
    }
    const { tenantId } = c.get('principal')
    const body = await c.req.text()
    const fingerprint = createHash('sha256').update(`${c.req.method} ${c.req.path}\n${body}`).digest('hex')
    const mine = and(eq(apiIdempotency.tenantId, tenantId), eq(apiIdempotency.key, key))

    await db
      .delete(apiIdempotency)
      .where(
        and(
          eq(apiIdempotency.tenantId, tenantId),
          lt(apiIdempotency.createdAt, new Date(Date.now() - TTL_MS)),
        ),
      )
    const claimed = await db
      .insert(apiIdempotency)
      .values({ tenantId, key, fingerprint })
      .onConflictDoNothing()
      .returning({ key: apiIdempotency.key })

    if (claimed.length === 0) {
      const [seen] = await db.select().from(apiIdempotency).where(mine)
      if (!seen) throw new ApiProblem(409, `the request with this ${IDEMPOTENCY_HEADER} just failed; retry`)
      if (seen.fingerprint !== fingerprint) {
        throw new ApiProblem(
          422,
          `this ${IDEMPOTENCY_HEADER} was used for a different request; use a new key for a new request`,
          'idempotency-key-reused',
        )
      }
      if (seen.status === null) {
        throw new ApiProblem(
          409,
          `the first request with this ${IDEMPOTENCY_HEADER} is still running; retry later`,
        )
      }
      const headers: Record<string, string> = { 'idempotent-replayed': 'true' }
      if (seen.contentType) headers['content-type'] = seen.contentType
      return new Response(seen.body || null, { status: seen.status, headers })
    }

    try {
      await next()
    } catch (err) {
      await db.delete(apiIdempotency).where(mine)
      throw err
    }
    if (c.res.status >= 500) {
      await db.delete(apiIdempotency).where(mine)
      return
    }
    await db
      .update(apiIdempotency)
      .set({
        status: c.res.status,
        contentType: c.res.headers.get('content-type'),
        body: await c.res.clone().text(),
      })
      .where(mine)
  }
}
