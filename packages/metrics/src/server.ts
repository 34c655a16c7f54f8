import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from '@moat/log'
import { metrics, registry } from './metrics'

/** A readiness check: resolves when the dependency answers, rejects (with a reason) when not. */
export type Check = () => Promise<unknown>

export interface OpsServer {
  port: number
  url: string
  /** From now on `/readyz` answers 503 "shutting down", so a load balancer stops sending work. */
  draining(): void
  close(): Promise<void>
}

const CHECK_TIMEOUT_MS = 2_000

/**
 * The small HTTP listener every Moat process has, whatever services it runs:
 *
 * - `GET /healthz`: 200 while the process runs (liveness: restart it when this fails);
 * - `GET /readyz`: 200 when every check passes (the database, the queue, clamd for scan), 503
 *   with the failing checks, or 503 once the process is shutting down (readiness: send it work);
 * - `GET /metrics`: Prometheus text format.
 *
 * `collect` runs before each scrape to fill gauges that need a query; its failure is logged and
 * the scrape answered with what is there.
 */
export async function startOpsServer(options: {
  host: string
  port: number
  checks: Record<string, Check>
  collect?: () => Promise<void>
  log: Logger
}): Promise<OpsServer> {
  let shuttingDown = false
  const server = http.createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
      res.end(body)
    }
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n')
    if (path === '/healthz') return send(200, 'application/json', '{"status":"ok"}\n')
    if (path === '/readyz') {
      if (shuttingDown) {
        metrics.ready.set(0)
        return send(503, 'application/json', `${JSON.stringify({ status: 'shutting down' })}\n`)
      }
      runChecks(options.checks).then((results) => {
        const ok = Object.values(results).every((r) => r === 'ok')
        metrics.ready.set(ok ? 1 : 0)
        send(
          ok ? 200 : 503,
          'application/json',
          `${JSON.stringify({ status: ok ? 'ready' : 'not ready', checks: results })}\n`,
        )
      })
      return
    }
    if (path === '/metrics') {
      ;(options.collect ?? (async () => {}))()
        .catch((err: unknown) => options.log.warn({ err }, 'collecting metrics failed'))
        .then(() => registry.metrics())
        .then(
          (text) => send(200, registry.contentType, text),
          () => send(500, 'text/plain', 'metrics unavailable\n'),
        )
      return
    }
    send(404, 'text/plain', 'not found: try /healthz, /readyz or /metrics\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(
              `MOAT_METRICS_PORT ${options.port} on ${options.host} is in use: give each Moat process on a host its own port, or 0 for any free one`,
            )
          : err,
      ),
    )
    server.listen(options.port, options.host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  options.log.info({ port, host: options.host }, 'health and metrics listening (/healthz, /readyz, /metrics)')
  return {
    port,
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    draining() {
      shuttingDown = true
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/** Runs every check at once, each within 2 seconds; `ok` or the reason it failed. */
async function runChecks(checks: Record<string, Check>): Promise<Record<string, string>> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([
          check(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)),
              CHECK_TIMEOUT_MS,
            )
          }),
        ])
        return [name, 'ok'] as const
      } catch (err) {
        return [name, err instanceof Error ? err.message : String(err)] as const
      } finally {
        clearTimeout(timer)
      }
    }),
  )
  return Object.fromEntries(entries)
}
