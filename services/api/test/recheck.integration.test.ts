import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from '../../../packages/testkit/src/wait'
import { MX_HOSTS, startTestApi, type TestApi } from './api'

let api: TestApi
let acme: Awaited<ReturnType<TestApi['tenant']>>
beforeAll(async () => {
  // every domain is due again after a second, so the background check runs while the test watches
  api = await startTestApi({ domainRecheckSeconds: 1 })
  acme = await api.tenant('acme')
})
afterAll(async () => {
  await api?.close()
})

const domainOf = async (id: string) => (await api.call('GET', `/v1/domains/${id}`, { key: acme.key })).body
// biome-ignore lint/suspicious/noExplicitAny: the API's JSON, which the assertions check
const domainWhen = (id: string, what: string, done: (d: any) => boolean) =>
  eventually(what, async () => {
    const d = await domainOf(id)
    return done(d) && d
  })

describe('background DNS re-checks', () => {
  it('verify a pending domain once its TXT record appears, then report MX drift and its end', async () => {
    const added = await api.call('POST', '/v1/domains', { key: acme.key, body: { name: 'later.test' } })
    const id = added.body.id
    const token = /"(moat-verification=[0-9a-f]+)"/.exec(added.body.records.txt)?.[1] ?? ''

    // nothing published yet: it stays pending, with the reason of the last check
    const pending = await domainWhen(id, 'a first check', (d) => d.lastCheckAt !== null)
    expect(pending.status).toBe('pending')
    expect(pending.lastCheckResult).toContain('no TXT record at later.test')

    // published: verified and active without anyone calling verify
    api.dns.zones.set('later.test', { txt: [token], mx: [{ exchange: MX_HOSTS[0] ?? '', priority: 10 }] })
    const active = await domainWhen(id, 'verification', (d) => d.status === 'active')
    expect(active).toMatchObject({ mxPointsAtMoat: true, mxDriftAt: null, verifiedAt: expect.any(String) })

    // the MX moves away: drift is reported, and mail keeps being accepted
    api.dns.zones.set('later.test', {
      txt: [token],
      mx: [{ exchange: 'mx.other-provider.test', priority: 10 }],
    })
    const drifted = await domainWhen(id, 'drift', (d) => d.mxDriftAt !== null)
    expect(drifted).toMatchObject({ status: 'verified', mxPointsAtMoat: false })
    expect(drifted.lastCheckResult).toBe(
      `MX drift since ${drifted.mxDriftAt}: the MX records name mx.other-provider.test (not Moat); mail that still reaches Moat is accepted`,
    )
    // the drift time stays that of its start while it lasts
    await new Promise((resolve) => setTimeout(resolve, 2200))
    expect((await domainOf(id)).mxDriftAt).toBe(drifted.mxDriftAt)

    api.dns.zones.set('later.test', { txt: [token], mx: [{ exchange: MX_HOSTS[1] ?? '', priority: 5 }] })
    const restored = await domainWhen(id, 'the MX back at Moat', (d) => d.status === 'active')
    expect(restored.mxDriftAt).toBeNull()

    const audit = await api.call('GET', '/v1/audit', { key: acme.key })
    const system = audit.body.items.filter((e: { actor: string }) => e.actor === 'system:recheck')
    expect(system.map((e: { action: string }) => e.action)).toEqual([
      'domain.mx_restored',
      'domain.mx_drift',
      'domain.verify',
    ])
    expect(system[1]).toMatchObject({
      source: 'system',
      target: id,
      detail: { name: 'later.test', mx: ['mx.other-provider.test'], expected: MX_HOSTS },
    })
  })
})
