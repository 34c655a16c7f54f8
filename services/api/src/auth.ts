import { getConnInfo } from '@hono/node-server/conninfo'
import { authenticateApiKey, authenticateSession, hasRole, type Principal, type Role } from '@moat/core'
import type { Executor } from '@moat/db'
import type { Context, MiddlewareHandler } from 'hono'
import { getCookie } from 'hono/cookie'
import { ApiProblem } from './problems'
import type { RateLimiter } from './rate-limit'

export const SESSION_COOKIE = 'moat_session'

export type ApiEnv = { Variables: { principal: Principal; requestId: string } }

/** Routes reachable without credentials; everything else under /v1 needs a session or a key. */
export const PUBLIC_OPERATIONS = new Set(['POST /v1/signup', 'POST /v1/login', 'POST /v1/invitations/accept'])

/**
 * Puts the caller (`{ tenantId, userId | keyId, role }`) on the context, from
 * `Authorization: Bearer <key>` or the session cookie; 401 otherwise. Each API key has its own
 * budget of requests per minute (429 with `Retry-After` beyond it).
 */
export function authenticate(db: Executor, perKey?: RateLimiter): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    if (PUBLIC_OPERATIONS.has(`${c.req.method} ${c.req.path}`)) return next()
    // the operator's routes have their own token (see operatorOnly)
    if (c.req.path.startsWith('/v1/admin/')) return next()
    const bearer = /^Bearer (\S+)$/i.exec(c.req.header('authorization') ?? '')?.[1]
    const session = getCookie(c, SESSION_COOKIE)
    const principal = bearer
      ? await authenticateApiKey(db, bearer)
      : session
        ? await authenticateSession(db, session)
        : undefined
    if (!principal) {
      throw new ApiProblem(
        401,
        bearer || session
          ? 'the API key or session is not valid (revoked, expired or mistyped)'
          : 'send an API key (Authorization: Bearer moat_live_…) or sign in first',
      )
    }
    if (principal.keyId) perKey?.hit(principal.keyId, 'this API key has sent too many requests')
    c.set('principal', principal)
    await next()
  }
}

/** The caller, who must have at least `role`: a viewer may read, not change (403). */
export function caller(c: Context<ApiEnv>, role: Role = 'viewer'): Principal {
  const principal = c.get('principal')
  if (!hasRole(principal.role, role)) {
    throw new ApiProblem(403, `this needs the ${role} role; you are ${principal.role}`)
  }
  return principal
}

/** The peer's address; behind a proxy that is the proxy's, so put the limit there too. */
export function clientIp(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown'
  } catch {
    return 'unknown' // not on @hono/node-server (app.request in a test)
  }
}
