import type { Executor } from '@moat/db'
import { describe, expect, it } from 'vitest'
import { createApi, PROBLEM_BASE } from '../src/index'

describe('unexpected errors', () => {
  it('are a bare 500 problem that does not echo the error', async () => {
    const broken = new Proxy(
      {},
      {
        get() {
          throw new Error('connect ECONNREFUSED postgres://moat:secret@db.internal')
        },
      },
    ) as Executor
    const fail = () => Promise.reject(new Error('unused'))
    const app = createApi({
      db: broken,
      config: { mxHosts: [], hostname: 'moat.invalid' },
      resolver: { resolveTxt: fail, resolveMx: fail },
    })
    const res = await app.request('/v1/domains', { headers: { authorization: 'Bearer moat_live_x' } })
    expect(res.status).toBe(500)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(res.headers.get('x-request-id')).toBeTruthy()
    expect(await res.json()).toEqual({
      type: `${PROBLEM_BASE}internal`,
      title: 'Internal error',
      status: 500,
      detail: 'something went wrong on our side; it has been logged',
    })
  })
})
