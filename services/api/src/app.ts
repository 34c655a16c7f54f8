import { OpenAPIHono } from '@hono/zod-openapi'
import type { BillingDeps } from '@moat/billing'
import type { Config } from '@moat/config'
import type { DnsResolver } from '@moat/core'
import { withAuditSource } from '@moat/core'
import type { Executor } from '@moat/db'
import type { Logger } from '@moat/log'
import { cors } from 'hono/cors'
import { requestId } from 'hono/request-id'
import { type ApiEnv, authenticate, clientIp, SESSION_COOKIE } from './auth'
import { docsPage } from './docs'
import type { MailDeps } from './feedback'
import { IDEMPOTENCY_HEADER, idempotent } from './idempotency'
import { ApiProblem, problem, sendProblem, toProblem, validationProblem } from './problems'
import { createLimiters, type RateLimits } from './rate-limit'
import { registerAccounts } from './routes/accounts'
import { ADMIN_PREFIX, operatorOnly, registerAdmin } from './routes/admin'
import { registerApiKeys } from './routes/api-keys'
import { registerArchive } from './routes/archive'
import { registerAudit } from './routes/audit'
import { registerBilling } from './routes/billing'
import { registerDkim } from './routes/dkim'
import { registerDomains } from './routes/domains'
import { registerMessages } from './routes/messages'
import { registerOutbound } from './routes/outbound'
import { registerPolicies } from './routes/policies'
import { registerQuarantine } from './routes/quarantine'
import { registerUsers } from './routes/users'

export interface ApiDeps {
  db: Executor
  config: Pick<Config, 'mxHosts' | 'hostname'>
  /** the resolver domain verification uses */
  resolver: DnsResolver
  log?: Logger | undefined
  /** the raw messages, the spam model and the deliver queue: quarantine and feedback need them */
  mail?: MailDeps | undefined
  /** in-memory, per-process budgets for sign-ins and API keys */
  limits?: RateLimits | undefined
  /** the portal's origin: the only one CORS lets in, with credentials; unset: no CORS headers */
  portalOrigin?: string | undefined
  /** Stripe (undefined: local metering only) and the grace period after a failed payment */
  billing?: Pick<BillingDeps, 'stripe' | 'graceDays' | 'portalReturnUrl'> | undefined
  /** the operator's token for /v1/admin; unset: those routes answer 401 */
  adminToken?: string | undefined
}

export type Api = OpenAPIHono<ApiEnv>

export const OPENAPI_INFO = {
  openapi: '3.1.0',
  info: {
    title: 'Moat API',
    version: '1',
    description:
      'Customer API of Moat, the hosted spam filter. Authenticate with `Authorization: Bearer <API key>` or the session cookie from `POST /v1/login`. Errors are RFC 9457 `application/problem+json`.',
  },
} as const

/** The API as a Hono app: every route, the OpenAPI document at /openapi.json and docs at /docs. */
export function createApi(deps: ApiDeps): Api {
  const app: Api = new OpenAPIHono({
    defaultHook: (result, c) => {
      if (!result.success) return sendProblem(c, validationProblem(result.error, result.target))
    },
  })
  if (deps.portalOrigin) {
    app.use(
      cors({
        origin: deps.portalOrigin,
        credentials: true,
        allowMethods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
        allowHeaders: ['Content-Type', 'Authorization', IDEMPOTENCY_HEADER],
        exposeHeaders: ['Retry-After', 'Idempotent-Replayed'],
        maxAge: 600,
      }),
    )
  }
  app.use(requestId())
  app.use(async (c, next) => {
    const started = performance.now()
    await next()
    deps.log?.info(
      {
        requestId: c.var.requestId,
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round(performance.now() - started),
      },
      'request',
    )
  })
  app.onError((err, c) => {
    const p = toProblem(err)
    if (p.status >= 500) deps.log?.error({ err, requestId: c.var.requestId }, 'request failed')
    if (err instanceof ApiProblem)
      for (const [name, value] of Object.entries(err.headers)) c.header(name, value)
    return sendProblem(c, p)
  })
  app.notFound((c) => sendProblem(c, problem(404, `no such endpoint: ${c.req.method} ${c.req.path}`)))

  const limiters = createLimiters(deps.limits)
  // changes made by a request are recorded in the audit log with the client's address
  app.use('/v1/*', (c, next) => withAuditSource(clientIp(c), next))
  app.use(`${ADMIN_PREFIX}*`, operatorOnly(deps.adminToken))
  app.use('/v1/*', authenticate(deps.db, limiters.apiKey))
  for (const path of [
    '/v1/domains',
    '/v1/api-keys',
    '/v1/lists',
    '/v1/invitations',
    '/v1/smtp-credentials',
    '/v1/relay-networks',
  ]) {
    app.use(path, idempotent(deps.db))
  }
  registerAccounts(app, deps, limiters)
  registerApiKeys(app, deps)
  registerDomains(app, deps)
  registerPolicies(app, deps)
  registerMessages(app, deps)
  registerQuarantine(app, deps)
  registerArchive(app, deps)
  registerAudit(app, deps)
  registerOutbound(app, deps)
  registerDkim(app, deps)
  registerBilling(app, deps)
  registerUsers(app, deps)
  registerAdmin(app, deps)

  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', { type: 'http', scheme: 'bearer' })
  app.openAPIRegistry.registerComponent('securitySchemes', 'session', {
    type: 'apiKey',
    in: 'cookie',
    name: SESSION_COOKIE,
  })
  app.get('/openapi.json', (c) => c.json(openApiDocument(app)))
  app.get('/docs', (c) => c.html(docsPage(openApiDocument(app))))
  return app
}

export function openApiDocument(app: Api) {
  return app.getOpenAPI31Document({ ...OPENAPI_INFO, security: [{ apiKey: [] }, { session: [] }] })
}

/**
 * The OpenAPI document without a running API: routes are only declared, so the database and the
 * resolver are never called while it is built.
 */
export function generateOpenApi() {
  const unused = () => {
    throw new Error('not available while generating the OpenAPI document')
  }
  const db = new Proxy({}, { get: unused }) as Executor
  return openApiDocument(
    createApi({
      db,
      config: { mxHosts: [], hostname: 'moat.invalid' },
      resolver: { resolveTxt: unused, resolveMx: unused },
    }),
  )
}
