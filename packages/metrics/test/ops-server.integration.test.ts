import net from 'node:net'
import { createLogger } from '@moat/log'
import { afterAll, describe, expect, it } from 'vitest'
import { type OpsServer, startOpsServer } from '../src/index'

const log = createLogger({ level: 'silent' })
const servers: OpsServer[] = []
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()))
})

describe('the ops listener (real HTTP on loopback)', () => {
  it('/readyz is 503 with each failing check in words, and a check that hangs fails after 2 s', async () => {
    const ops = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      checks: {
        database: async () => {},
        queue: async () => {
          throw new Error('connect ECONNREFUSED 127.0.0.1:4566')
        },
        clamd: () => new Promise(() => {}),
      },
      log,
    })
    servers.push(ops)
    const started = Date.now()
    const res = await fetch(`${ops.url}/readyz`)
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({
      status: 'not ready',
      checks: {
        database: 'ok',
        queue: 'connect ECONNREFUSED 127.0.0.1:4566',
        clamd: 'no answer within 2000 ms',
      },
    })
    expect(Date.now() - started).toBeLessThan(3_000)
    expect((await fetch(`${ops.url}/metrics`)).status).toBe(200)
    expect(await (await fetch(`${ops.url}/metrics`)).text()).toMatch(/^moat_ready 0$/m)
    expect((await fetch(`${ops.url}/healthz`, { method: 'POST' })).status).toBe(405)
  })

  it('a port already taken is an error that says what to do', async () => {
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()))
    const port = (taken.address() as net.AddressInfo).port
    await expect(startOpsServer({ host: '127.0.0.1', port, checks: {}, log })).rejects.toThrow(
      `MOAT_METRICS_PORT ${port} on 127.0.0.1 is in use: give each Moat process on a host its own port, or 0 for any free one`,
    )
    taken.close()
  })
})
