import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { freePort, type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'

const run = promisify(execFile)
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')
const clamdUrl = inject('clamdUrl')

const send = (h: Harness, to: string, subject: string) =>
  h.send({ from: 'alice@sender.example', to, subject, text: `body of ${subject}` })

describe.skipIf(!clamdUrl)(
  `store and forward while the customer's server is down ${inject('clamdMissing')}`,
  () => {
    let h: Harness
    const sinks: SmtpSink[] = []

    beforeAll(async () => {
      h = await startHarness({
        env: { MOAT_CLAMD: clamdUrl, MOAT_RETRY_FIRST_SECONDS: '1', MOAT_RETRY_MAX_SECONDS: '2' },
      })
    })
    afterEach(async () => {
      for (const s of sinks.splice(0)) await s.stop()
    })
    afterAll(async () => {
      await h?.close()
    })

    it('defers mail while the only destination is down and delivers it once the server is back', async () => {
      const port = await freePort()
      await h.customer({ tenant: 'down-co', domain: 'down.test', destinations: [`127.0.0.1:${port}`] })
      const queueId = await send(h, 'carol@down.test', 'while you were out')

      const deferred = await h.traceWhen(queueId, (t) => t.attempts.length >= 2)
      expect(deferred.message.status).toBe('deferred')
      expect(deferred.recipients[0]?.status).toBe('deferred')
      expect(deferred.attempts.every((a) => a.outcome === 'deferred' && /ECONNREFUSED/.test(a.reply))).toBe(
        true,
      )
      const event = deferred.events.find((e) => e.kind === 'deferred')
      expect(event?.detail).toMatchObject({ recipients: ['carol@down.test'], attempt: 1, retryInSeconds: 1 })

      const sink = await startSmtpSink({ port })
      sinks.push(sink)
      const [mail] = await sink.waitFor(1)
      expect(mail?.raw.toString()).toContain('Subject: while you were out')
      const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
      expect(done.attempts.at(-1)?.outcome).toBe('delivered')
      expect(done.attempts.slice(0, -1).every((a) => a.outcome === 'deferred')).toBe(true)
      expect(done.recipients[0]).toMatchObject({ status: 'delivered', attempts: done.attempts.length })
      await new Promise((resolve) => setTimeout(resolve, 1500))
      expect(sink.messages).toHaveLength(1)

      const { stdout } = await run(process.execPath, [MOAT, 'message', 'show', queueId], {
        env: { ...process.env, ...h.env },
      })
      expect(stdout).toMatch(/deferred\s+.*ECONNREFUSED/)
      expect(stdout).toContain('status:   delivered')
    })

    it('fails over to the next destination by priority while the first is down', async () => {
      const downPort = await freePort()
      const backup = await startSmtpSink()
      sinks.push(backup)
      await h.customer({
        tenant: 'two-mx',
        domain: 'two.test',
        destinations: [`127.0.0.1:${backup.port}:20`, `127.0.0.1:${downPort}:10`],
      })
      const queueId = await send(h, 'dave@two.test', 'failover')
      const [mail] = await backup.waitFor(1)
      expect(mail?.to).toEqual(['dave@two.test'])
      const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
      // the lower priority number was tried first, in the same pass
      expect(done.attempts.map((a) => [a.port, a.outcome])).toEqual([
        [downPort, 'deferred'],
        [backup.port, 'delivered'],
      ])
    })

    it("marks a recipient failed with the remote's reply when the server refuses it permanently", async () => {
      const sink = await startSmtpSink()
      sinks.push(sink)
      sink.rcptReply = (address) =>
        address.startsWith('gone@')
          ? { code: 550, message: '5.1.1 <gone@perm.test>: user unknown' }
          : undefined
      await h.customer({ tenant: 'perm-co', domain: 'perm.test', destinations: [`127.0.0.1:${sink.port}`] })
      const queueId = await send(h, 'gone@perm.test, here@perm.test', 'partly')
      const done = await h.traceWhen(
        queueId,
        (t) => !['received', 'queued', 'deferred'].includes(t.message.status),
      )
      expect(done.message.status).toBe('partially_delivered')
      const byAddress = Object.fromEntries(done.recipients.map((r) => [r.address, r]))
      expect(byAddress['here@perm.test']?.status).toBe('delivered')
      expect(byAddress['gone@perm.test']?.status).toBe('failed')
      expect(byAddress['gone@perm.test']?.lastReply).toContain('550 5.1.1 <gone@perm.test>: user unknown')
      expect(sink.messages).toHaveLength(1)
      expect(sink.messages[0]?.to).toEqual(['here@perm.test'])
    })
  },
)

describe.skipIf(!clamdUrl)('giving up', () => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({
      env: {
        MOAT_CLAMD: clamdUrl,
        MOAT_RETRY_FIRST_SECONDS: '1',
        MOAT_RETRY_MAX_SECONDS: '1',
        MOAT_RETRY_GIVE_UP_SECONDS: '3',
      },
    })
  })
  afterAll(async () => {
    await h?.close()
  })

  it('fails the message after the give-up age, quoting the last reply', async () => {
    const port = await freePort()
    await h.customer({ tenant: 'never-co', domain: 'never.test', destinations: [`127.0.0.1:${port}`] })
    const queueId = await send(h, 'erin@never.test', 'into the void')
    const done = await h.traceWhen(queueId, (t) => t.message.status === 'failed')
    expect(done.recipients[0]?.lastReply).toMatch(/^expired after \d+s; last reply: .*ECONNREFUSED/)
    expect(done.events.map((e) => e.kind)).toContain('expired')
    expect(done.attempts.length).toBeGreaterThanOrEqual(2)
  })
})
