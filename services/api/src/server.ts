import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { billingDeps } from '@moat/billing'
import type { Config } from '@moat/config'
import { createResolver, type DnsResolver, recheckDomains, withAuditSource } from '@moat/core'
import type { Executor } from '@moat/db'
import type { Logger } from '@moat/log'
import { createApi } from './app'
import type { MailDeps } from './feedback'
import type { RateLimits } from './rate-limit'

export interface ApiServer {
  port: number
  url: string
  close(): Promise<void>
}

/** Serves the API on `MOAT_API_HOST:MOAT_API_PORT` (port 0: any free port). */
export async function startApi(options: {
  config: Pick<Config, 'api' | 'mxHosts' | 'dnsServers' | 'hostname'> & Partial<Pick<Config, 'billing'>>
  db: Executor
  log?: Logger
  mail?: MailDeps
  /** overrides the sign-in budgets (tests); the per-key one comes from MOAT_API_RATE_PER_MINUTE */
  limits?: Omit<RateLimits, 'apiPerMinute'>
}): Promise<ApiServer> {
  const { config, db, log, mail } = options
  const resolver = createResolver(config.dnsServers)
  const app = createApi({
    db,
    config,
    resolver,
    log,
    mail,
    limits: { ...options.limits, apiPerMinute: config.api.ratePerMinute },
    portalOrigin: config.api.portalOrigin,
    billing: config.billing ? billingDeps({ billing: config.billing }, db, log) : undefined,
    adminToken: config.api.adminToken,
  })
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: config.api.host, port: config.api.port }, () => resolve(s))
    s.once('error', reject)
  })
  const { port } = server.address() as AddressInfo
  const host = config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host
  log?.info({ port }, 'API listening')
  const rechecks = startDomainRechecks({
    db,
    resolver,
    log,
    mxHosts: config.mxHosts,
    intervalSeconds: config.api.domainRecheckSeconds,
  })
  return {
    port,
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        rechecks.stop()
        server.close((err) => (err ? reject(err) : resolve()))
        if ('closeIdleConnections' in server) server.closeIdleConnections()
      }),
  }
}

/**
 * Re-checks domains in the background: each domain's DNS about every `intervalSeconds` (pending
 * ones get verified when their TXT record appears, MX drift is reported). Several API processes
 * may each run it; a check is idempotent.
 */
export function startDomainRechecks(options: {
  db: Executor
  resolver: DnsResolver
  log?: Logger | undefined
  mxHosts: string[]
  intervalSeconds: number
}): { stop(): void } {
  const tickMs = Math.min(60, options.intervalSeconds) * 1000
  let busy = false
  const tick = async () => {
    if (busy) return // the previous round is still going
    busy = true
    try {
      await withAuditSource('system', async () => {
        // batches until nothing is due, so a large backlog is not spread over many ticks
        for (;;) {
          const { checked, failed } = await recheckDomains(options.db, options.resolver, {
            mxHosts: options.mxHosts,
            intervalSeconds: options.intervalSeconds,
          })
          if (checked) options.log?.info({ checked, failed }, 'domains re-checked')
          if (checked < 100) break
        }
      })
    } catch (err) {
      options.log?.warn({ err }, 'domain re-check failed; trying again later')
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => void tick(), tickMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
