import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { billingDeps } from '@moat/billing'
import type { Config } from '@moat/config'
import { createResolver } from '@moat/core'
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
  config: Pick<Config, 'api' | 'mxHosts' | 'dnsServers'> & Partial<Pick<Config, 'billing'>>
  db: Executor
  log?: Logger
  mail?: MailDeps
  /** overrides the sign-in budgets (tests); the per-key one comes from MOAT_API_RATE_PER_MINUTE */
  limits?: Omit<RateLimits, 'apiPerMinute'>
}): Promise<ApiServer> {
  const { config, db, log, mail } = options
  const app = createApi({
    db,
    config,
    resolver: createResolver(config.dnsServers),
    log,
    mail,
    limits: { ...options.limits, apiPerMinute: config.api.ratePerMinute },
    portalOrigin: config.api.portalOrigin,
    billing: config.billing ? billingDeps({ billing: config.billing }, db, log) : undefined,
  })
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: config.api.host, port: config.api.port }, () => resolve(s))
    s.once('error', reject)
  })
  const { port } = server.address() as AddressInfo
  const host = config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host
  log?.info({ port }, 'API listening')
  return {
    port,
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()))
        if ('closeIdleConnections' in server) server.closeIdleConnections()
      }),
  }
}
