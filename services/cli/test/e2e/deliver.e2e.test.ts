import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import {
  EICAR,
  EICAR_SIGNATURE,
  type Harness,
  type SmtpSink,
  startHarness,
  startSmtpSink,
} from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const run = promisify(execFile)
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')
const clamdUrl = inject('clamdUrl')

describe.skipIf(!clamdUrl)(
  `inbound mail through real SMTP, clamd and a customer server ${inject('clamdMissing')}`,
  () => {
    let h: Harness
    let sink: SmtpSink

    beforeAll(async () => {
      sink = await startSmtpSink()
      h = await startHarness({ env: { MOAT_CLAMD: clamdUrl } })
      await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}:10`] })
    })
    afterAll(async () => {
      await h?.close()
      await sink?.stop()
    })

    it('delivers clean mail with its headers and body intact plus a Received header, and tells the story', async () => {
      const original = [
        'From: Alice <alice@sender.example>',
        'To: Bob <bob@acme.test>',
        'Subject: Quarterly report',
        'Message-ID: <q3-report@sender.example>',
        'X-Custom: kept',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Hello Bob,',
        '',
        '.A line starting with a dot, and some UTF-8: été',
        '',
      ].join('\r\n')
      const queueId = await h.send({
        envelope: { from: 'alice@sender.example', to: ['bob@acme.test'] },
        raw: original,
      })
      expect(queueId).toMatch(/^[0-9a-z]{26}$/)

      const [delivered] = await sink.waitFor(1)
      expect(delivered?.to).toEqual(['bob@acme.test'])
      expect(delivered?.from).toBe('alice@sender.example')
      const raw = delivered?.raw.toString('utf8') ?? ''
      // the scan's verdict headers, Moat's Received header, then exactly what the sender sent
      const verdict = raw.slice(0, raw.indexOf('Received: '))
      expect(verdict).toMatch(
        /^Authentication-Results: mx\.moat\.test;\r\n dkim=none [\s\S]*spf=none [\s\S]*\r\nX-Moat-Spam: no\r\n/,
      )
      expect(verdict).toMatch(
        /\r\nX-Moat-Score: -?\d+\.\d\d \/ 7 \(deliver\)\r\nX-Moat-Symbols: [\s\S]*CONTENT_HAM\(-\d/,
      )
      const received = raw.slice(verdict.length, raw.indexOf('From: Alice'))
      expect(received).toMatch(
        new RegExp(
          `^Received: from [^\\r]+ \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.moat\\.test \\(Moat\\) with ESMTPS? .*id ${queueId}\\r\\n\\tfor <bob@acme\\.test>;\\r\\n\\t\\w{3}, \\d{2} \\w{3} \\d{4} [\\d:]{8} \\+0000\\r\\n$`,
        ),
      )
      expect(raw.slice(verdict.length + received.length)).toBe(original)

      const trace = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
      expect(trace?.events.map((e) => e.kind)).toEqual(['received', 'scanned', 'delivered'])
      expect(trace?.attempts).toHaveLength(1)
      expect(trace?.attempts[0]?.outcome).toBe('delivered')

      const { stdout } = await run(process.execPath, [MOAT, 'message', 'show', queueId], {
        env: { ...process.env, ...h.env },
      })
      expect(stdout).toContain('status:   delivered')
      expect(stdout).toContain('scan:     clean')
      expect(stdout).toMatch(/received\s+from 127\.0\.0\.1/)
      expect(stdout).toMatch(/scanned\s+deliver: clean/)
      expect(stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${sink.port}\\s+delivered`))

      const json = JSON.parse(
        (
          await run(process.execPath, [MOAT, '--json', 'message', 'show', queueId], {
            env: { ...process.env, ...h.env },
          })
        ).stdout,
      )
      expect(json.message.status).toBe('delivered')
      expect(json.recipients[0].address).toBe('bob@acme.test')

      // the message log, filtered by domain
      const list = async (...args: string[]) =>
        JSON.parse(
          (
            await run(process.execPath, [MOAT, '--json', 'messages', ...args], {
              env: { ...process.env, ...h.env },
            })
          ).stdout,
        )
      const forAcme: { queueId: string; status: string }[] = await list('--domain', 'acme.test')
      expect(forAcme.map((m) => [m.queueId, m.status])).toEqual([[queueId, 'delivered']])
      expect(await list('--domain', 'other.test')).toEqual([])
      const text = await run(process.execPath, [MOAT, 'messages', '--domain', 'acme.test'], {
        env: { ...process.env, ...h.env },
      })
      expect(text.stdout).toMatch(/^ID\s+RECEIVED\s+STATUS\s+SCORE\s+TENANT\s+FROM\s+TO\s+SUBJECT\n/)
      expect(text.stdout).toMatch(
        /msg_\w+\s+[\d-]+ [\d:]+\s+delivered\s+-?\d+\.\d\s+acme\s+alice@sender\.example\s+bob@acme\.test\s+Quarterly report/,
      )
    })

    it('quarantines a message carrying EICAR in a base64 MIME attachment and never delivers it', async () => {
      const before = sink.messages.length
      const queueId = await h.send({
        from: 'mallory@sender.example',
        to: 'bob@acme.test',
        subject: 'invoice attached',
        text: 'see attachment',
        attachments: [{ filename: 'invoice.com', content: Buffer.from(EICAR), encoding: 'base64' }],
      })
      const trace = await h.traceWhen(queueId, (t) => t.message.status === 'quarantined')
      expect(trace?.message.virusScan).toBe('infected')
      expect(trace?.message.virusName).toContain(EICAR_SIGNATURE)
      expect(trace?.recipients.map((r) => r.status)).toEqual(['quarantined'])
      expect(trace?.events.map((e) => e.kind)).toEqual(['received', 'scanned', 'quarantined'])
      // nothing reaches the customer, and no delivery job exists for it
      await new Promise((resolve) => setTimeout(resolve, 1000))
      expect(sink.messages.length).toBe(before)
      expect(trace?.attempts).toEqual([])
      expect(
        (await h.stack.deliverQueue.depth()).visible + (await h.stack.deliverQueue.depth()).inFlight,
      ).toBe(0)
    })
  },
)
