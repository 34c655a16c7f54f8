import { resumeTenant, suspendTenant } from '@moat/core'
import { type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

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
      await suspendTenant(db, { tenantId, reason: 'operator', note: 'abuse report 42', actor: 'operator' })

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

      await resumeTenant(db, { tenantId, reason: 'operator', actor: 'operator' })
      const [mail] = await sink.waitFor(1)
      expect(mail?.raw.toString()).toContain('Subject: while held')
      const done = await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
      expect(done.attempts).toHaveLength(1)
    })
  },
)
