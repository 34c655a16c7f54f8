import net from 'node:net'
import { eventually, type Harness, rawSmtp, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

/** The value of one sample in Prometheus text format, e.g. `moat_smtp_replies_total{code="250"}`. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

describe.skipIf(!clamdUrl)(`health, readiness, metrics and a graceful stop ${inject('clamdMissing')}`, () => {
  let h: Harness
  let sink: SmtpSink
  let ops: string

  beforeAll(async () => {
    sink = await startSmtpSink()
    h = await startHarness({ env: { MOAT_CLAMD: clamdUrl, MOAT_SHUTDOWN_SECONDS: '5' } })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}`] })
    ops = h.stack.ops.url
  })
  afterAll(async () => {
    await h?.close()
    await sink?.stop()
  })

  it('/healthz is up, /readyz checks the database, the queue and clamd', async () => {
    const health = await fetch(`${ops}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: 'ok' })
    const ready = await fetch(`${ops}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { database: 'ok', queue: 'ok', clamd: 'ok' },
    })
    const missing = await fetch(`${ops}/nothing`)
    expect(missing.status).toBe(404)
    expect(await missing.text()).toBe('not found: try /healthz, /readyz or /metrics\n')
  })

  it('/metrics counts the SMTP session and its replies, the verdict, the delivery and the queues', async () => {
    const queueId = await h.send({
      from: 'alice@sender.example',
      to: 'bob@acme.test',
      subject: 'counted',
      text: 'hello',
    })
    await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    const res = await fetch(`${ops}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await res.text()
    expect(sample(text, 'moat_smtp_sessions_total')).toBeGreaterThanOrEqual(1)
    expect(sample(text, 'moat_smtp_replies_total{code="220"}')).toBeGreaterThanOrEqual(1)
    expect(sample(text, 'moat_smtp_replies_total{code="250"}')).toBeGreaterThanOrEqual(4)
    expect(sample(text, 'moat_scan_verdicts_total{action="deliver",virus="clean"}')).toBe(1)
    expect(sample(text, 'moat_scan_duration_seconds_count{action="deliver"}')).toBe(1)
    expect(sample(text, 'moat_delivery_attempts_total{result="delivered"}')).toBe(1)
    for (const queue of ['scan', 'deliver'])
      for (const state of ['visible', 'delayed', 'in_flight', 'dead'])
        expect(sample(text, `moat_queue_depth{queue="${queue}",state="${state}"}`), `${queue} ${state}`).toBe(
          0,
        )
    expect(sample(text, 'moat_queue_oldest_age_seconds{queue="scan"}')).toBe(0)
    expect(sample(text, 'moat_retry_backlog')).toBe(0)
    expect(sample(text, 'moat_ready')).toBe(1)
    expect(text).toContain('moat_process_cpu_seconds_total')
  })

  it('stopping ingest: idle sessions get 421 at once, a transaction under way finishes with 250, then 421; no new connections', async () => {
    const idle = await rawSmtp(h.smtpPort)
    await idle.send('EHLO idle.example')
    const busy = await rawSmtp(h.smtpPort)
    await busy.send('EHLO busy.example')
    expect((await busy.send('MAIL FROM:<alice@sender.example>')).code).toBe(250)
    expect((await busy.send('RCPT TO:<bob@acme.test>')).code).toBe(250)
    expect((await busy.send('DATA')).code).toBe(354)

    const ingest = h.stack.ingest
    if (!ingest) throw new Error('ingest is not running')
    const started = Date.now()
    const closing = ingest.close(5_000)
    expect(await idle.read()).toEqual({
      code: 421,
      text: '421 4.3.2 Service shutting down; please try again later',
    })

    // the listener is gone: new senders go to another MX at once
    await eventually(
      'the SMTP port to refuse connections',
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(h.smtpPort, '127.0.0.1')
          s.once('connect', () => {
            s.destroy()
            resolve(false)
          })
          s.once('error', () => resolve(true))
        }),
    )

    // the message under way is stored and acknowledged
    const done = await busy.data('Subject: in flight at shutdown\r\n\r\nstill accepted\r\n')
    expect(done.text).toMatch(/^250 2\.0\.0 queued as /)
    const queueId = done.text.split(' ').pop() ?? ''
    await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    // …and the next transaction is turned away, so that the sender tries again elsewhere
    expect(await busy.send('MAIL FROM:<alice@sender.example>')).toEqual({
      code: 421,
      text: '421 4.4.2 Server shutting down',
    })
    await closing
    expect(Date.now() - started).toBeLessThan(5_000)
    idle.close()
    busy.close()

    const metrics = await (await fetch(`${ops}/metrics`)).text()
    expect(sample(metrics, 'moat_smtp_replies_total{code="421"}')).toBe(2)
  })

  it('once the stack is stopping, /readyz answers 503 so the load balancer stops sending work', async () => {
    h.stack.ops.draining()
    const ready = await fetch(`${ops}/readyz`)
    expect(ready.status).toBe(503)
    expect(await ready.json()).toEqual({ status: 'shutting down' })
    expect((await fetch(`${ops}/healthz`)).status).toBe(200)
  })
})
