import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { resumeTenant } from '@moat/core'
import { type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')
const run = promisify(execFile)
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')

describe.skipIf(!clamdUrl)(
  `a suspended tenant's mail waits, and none is lost ${inject('clamdMissing')}`,
  () => {
    let h: Harness
    let sink: SmtpSink

    beforeAll(async () => {
      h = await startHarness({ env: { MOAT_CLAMD: clamdUrl, MOAT_SUSPENDED_RECHECK_SECONDS: '1' } })
      sink = await startSmtpSink()
    })
    afterAll(async () => {
      await sink?.stop()
      await h?.close()
    })

    it('accepts and holds mail while suspended, and delivers it after resumption', async () => {
      const { tenantId } = await h.customer({
        tenant: 'held-co',
        domain: 'held.test',
        destinations: [`127.0.0.1:${sink.port}`],
      })
      const db = h.stack.database.db
      const moat = (...args: string[]) =>
        run(process.execPath, [MOAT, ...args], { env: { ...process.env, ...h.env } })
      const suspended = await moat('tenant', 'suspend', 'held-co', '--note', 'abuse report 42')
      expect(suspended.stdout).toBe('suspended held-co: its mail waits until: moat tenant resume held-co\n')
      expect((await moat('tenant', 'list')).stdout).toMatch(/held-co\s+ten_\S+\s+suspended \(operator\)/)

      // still accepted over SMTP: suspension never bounces mail
      const queueId = await h.send({
        from: 'a@sender.example',
        to: 'bob@held.test',
        subject: 'while held',
        text: 'x',
      })
      const held = await h.traceWhen(queueId, (t) => t.events.some((e) => e.kind === 'held'))
      expect(held.events.find((e) => e.kind === 'held')?.detail).toEqual({
        reason: 'the account is suspended (operator); delivery resumes when it is resumed',
      })
      expect(held.attempts).toHaveLength(0)
      // several rechecks pass without a try and without a second 'held' event
      await new Promise((resolve) => setTimeout(resolve, 2500))
      const still = await h.traceWhen(queueId, () => true)
      expect(still.attempts).toHaveLength(0)
      expect(still.events.filter((e) => e.kind === 'held')).toHaveLength(1)
      expect(still.recipients[0]).toMatchObject({ status: 'pending', attempts: 0 })
      expect(sink.messages).toHaveLength(0)

      // billing cannot lift an operator's suspension
      await resumeTenant(db, { tenantId, reason: 'billing', actor: 'billing' })
      await new Promise((resolve) => setTimeout(resolve, 1500))
      expect(sink.messages).toHaveLength(0)

      expect((await moat('tenant', 'resume', 'held-co')).stdout).toBe('resumed held-co\n')
      const [mail] = await sink.waitFor(1)
      expect(mail?.raw.toString()).toContain('Subject: while held')
      const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
      expect(done.attempts).toHaveLength(1)
    })
  },
)
