import { setRoutes } from '@moat/core'
import { type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

describe.skipIf(!clamdUrl)(`delivery by route: per recipient, TLS required ${inject('clamdMissing')}`, () => {
  let h: Harness
  const sinks: SmtpSink[] = []
  beforeAll(async () => {
    h = await startHarness({ env: { MOAT_CLAMD: clamdUrl } })
  })
  afterAll(async () => {
    for (const s of sinks) await s.stop()
    await h?.close()
  })

  it("sends a recipient with its own destination there, and the domain's other recipients to theirs", async () => {
    const main = await startSmtpSink()
    const vip = await startSmtpSink()
    sinks.push(main, vip)
    await h.customer({ tenant: 'split-co', domain: 'split.test', destinations: [`127.0.0.1:${main.port}`] })
    await setRoutes(h.stack.database.db, {
      domain: 'split.test',
      actor: 'test',
      destinations: [
        { host: '127.0.0.1', port: main.port, priority: 10 },
        { host: '127.0.0.1', port: vip.port, priority: 10, recipient: 'ceo@split.test' },
      ],
    })
    const queueId = await h.send({
      from: 'a@sender.example',
      to: 'ceo@split.test, staff@split.test, ops@split.test',
      subject: 'quarterly',
      text: 'numbers',
    })
    const [atVip] = await vip.waitFor(1)
    const [atMain] = await main.waitFor(1)
    expect(atVip?.to).toEqual(['ceo@split.test'])
    expect(atMain?.to.sort()).toEqual(['ops@split.test', 'staff@split.test'])
    const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(done.attempts.map((a) => [a.port, a.outcome]).sort()).toEqual(
      [
        [main.port, 'delivered'],
        [vip.port, 'delivered'],
      ].sort(),
    )
  })

  it('keeps mail queued rather than send it in the clear to a destination that must use TLS', async () => {
    const plain = await startSmtpSink({ starttls: false })
    const secure = await startSmtpSink()
    sinks.push(plain, secure)
    await h.customer({ tenant: 'tls-co', domain: 'tls.test', destinations: [`127.0.0.1:${plain.port}`] })
    await setRoutes(h.stack.database.db, {
      domain: 'tls.test',
      actor: 'test',
      destinations: [{ host: '127.0.0.1', port: plain.port, priority: 10, tls: 'required' }],
    })
    const queueId = await h.send({ from: 'a@sender.example', to: 'x@tls.test', subject: 'secret', text: 's' })
    const deferred = await h.traceWhen(queueId, (t) => t.attempts.length >= 1)
    expect(deferred.attempts[0]?.outcome).toBe('deferred')
    expect(deferred.attempts[0]?.reply).toMatch(
      /^TLS could not be set up \(STARTTLS: .+\); this destination requires TLS, so the mail waits$/,
    )
    expect(plain.messages).toHaveLength(0)

    // the customer fixes the route: the next retry goes over TLS
    await setRoutes(h.stack.database.db, {
      domain: 'tls.test',
      actor: 'test',
      destinations: [{ host: '127.0.0.1', port: secure.port, priority: 10, tls: 'required' }],
    })
    const [mail] = await secure.waitFor(1)
    expect(mail?.secure).toBe(true)
    expect(plain.messages).toHaveLength(0)
  })
})
