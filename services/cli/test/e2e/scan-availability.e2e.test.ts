import net from 'node:net'
import { type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

/**
 * A TCP relay in front of the real clamd that can be switched off: while off it drops every
 * connection at once, as a stopped clamd would refuse it.
 */
async function switchableClamd(target: string) {
  const { hostname, port } = new URL(target)
  let up = false
  const server = net.createServer((client) => {
    if (!up) {
      client.destroy()
      return
    }
    const upstream = net.connect(Number(port), hostname)
    client.pipe(upstream).pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  return {
    url: `tcp://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    set(on: boolean) {
      up = on
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

describe.skipIf(!clamdUrl)(`when clamd is unreachable ${inject('clamdMissing')}`, () => {
  let h: Harness
  let sink: SmtpSink
  let clamd: Awaited<ReturnType<typeof switchableClamd>>

  beforeAll(async () => {
    sink = await startSmtpSink()
    clamd = await switchableClamd(clamdUrl)
    h = await startHarness({ env: { MOAT_CLAMD: clamd.url, MOAT_SCAN_RETRY_SECONDS: '1' } })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}`] })
  })
  afterAll(async () => {
    await h?.close()
    await clamd?.close()
    await sink?.stop()
  })

  it('keeps the mail waiting, unscanned and undelivered, and delivers it once clamd is back', async () => {
    const queueId = await h.send({
      from: 'a@sender.example',
      to: 'bob@acme.test',
      subject: 'wait for it',
      text: 'x',
    })
    const waiting = await h.traceWhen(
      queueId,
      (t) => t.events.filter((e) => e.kind === 'scan_deferred').length >= 2,
    )
    expect(waiting.message.status).toBe('received')
    expect(waiting.message.virusScan).toBeNull()
    expect(waiting.events.find((e) => e.kind === 'scan_deferred')?.detail).toMatchObject({
      retryInSeconds: 1,
    })
    expect(String(waiting.events.find((e) => e.kind === 'scan_deferred')?.detail.reason)).toMatch(
      /^clamd did not scan/,
    )
    expect(sink.messages).toHaveLength(0)

    clamd.set(true)
    const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(done.message.virusScan).toBe('clean')
    expect(sink.messages).toHaveLength(1)
  })

  it('does nothing with a scan job seen a second time', async () => {
    const queueId = await h.send({
      from: 'a@sender.example',
      to: 'bob@acme.test',
      subject: 'once',
      text: 'x',
    })
    const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    const delivered = sink.messages.length
    // at-least-once delivery: the same job again, as after a lost delete
    await h.stack.scanQueue.send({ messageId: done.message.id })
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const again = await h.traceWhen(queueId, () => true)
    expect(again.events.map((e) => e.kind)).toEqual(done.events.map((e) => e.kind))
    expect(sink.messages).toHaveLength(delivered)
    expect((await h.stack.scanQueue.depth()).visible).toBe(0)
  })
})

describe('with virus scanning turned off by the operator', () => {
  let h: Harness
  let sink: SmtpSink

  beforeAll(async () => {
    sink = await startSmtpSink()
    // no clamd at all: MOAT_CLAMD points nowhere, and must not be used
    h = await startHarness({ env: { MOAT_VIRUS_SCAN: 'off', MOAT_CLAMD: 'tcp://127.0.0.1:9' } })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}`] })
  })
  afterAll(async () => {
    await h?.close()
    await sink?.stop()
  })

  it('delivers, and records on each message that it was not scanned', async () => {
    const queueId = await h.send({
      from: 'a@sender.example',
      to: 'bob@acme.test',
      subject: 'unscanned',
      text: 'x',
    })
    const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    expect(done.message.virusScan).toBe('not_scanned')
    expect(done.events.find((e) => e.kind === 'scanned')?.detail).toMatchObject({
      virusScan: 'not_scanned',
      reason: expect.stringContaining('virus scanning is off (MOAT_VIRUS_SCAN=off)'),
    })
    expect(sink.messages).toHaveLength(1)
  })
})
