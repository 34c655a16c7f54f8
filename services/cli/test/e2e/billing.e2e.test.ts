import { billingDeps, changePlan } from '@moat/billing'
import { tenantSuspension } from '@moat/core'
import { messages, plans, usageCounters, usageEvents } from '@moat/db'
import { eventually, type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { and, eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

describe.skipIf(!clamdUrl)(`billing end to end over SMTP ${inject('clamdMissing')}`, () => {
  let h: Harness
  let sink: SmtpSink

  beforeAll(async () => {
    h = await startHarness({
      env: {
        MOAT_CLAMD: clamdUrl,
        MOAT_SUSPENDED_RECHECK_SECONDS: '1',
        // the billing cycle (caps, failed payments) every second, as `moat start` runs it
        MOAT_BILLING_INTERVAL_SECONDS: '1',
      },
    })
    sink = await startSmtpSink()
  })
  afterAll(async () => {
    await sink?.stop()
    await h?.close()
  })

  const monthCounter = async (tenantId: string) => {
    const [row] = await h.stack.database.db
      .select()
      .from(usageCounters)
      .where(and(eq(usageCounters.tenantId, tenantId), eq(usageCounters.granularity, 'month')))
    return row?.messages ?? 0
  }

  it('meters each scanned message once, even when its scan job is delivered again', async () => {
    const { tenantId } = await h.customer({
      tenant: 'metered',
      domain: 'metered.test',
      destinations: [`127.0.0.1:${sink.port}`],
    })
    const ids = []
    for (let i = 0; i < 3; i++) {
      ids.push(
        await h.send({ from: 'a@sender.example', to: `u${i}@metered.test`, subject: `m${i}`, text: 'hello' }),
      )
    }
    for (const id of ids) await h.traceWhen(id, (t) => t.message.status === 'delivered')
    expect(await monthCounter(tenantId)).toBe(3)

    // at-least-once delivery: every scan job comes again, twice
    const db = h.stack.database.db
    const rows = await db.select({ id: messages.id }).from(messages).where(eq(messages.tenantId, tenantId))
    for (const { id } of rows) {
      await h.stack.scanQueue.send({ messageId: id })
      await h.stack.scanQueue.send({ messageId: id })
    }
    await eventually('the duplicate scan jobs to be consumed', async () => {
      const depth = await h.stack.scanQueue.depth()
      return depth.visible + depth.delayed + depth.inFlight === 0
    })
    expect(await monthCounter(tenantId)).toBe(3)
    expect(await db.select().from(usageEvents).where(eq(usageEvents.tenantId, tenantId))).toHaveLength(3)
  })

  it('holds mail past a prepaid cap, accepting it all, and delivers what waited on a larger plan', async () => {
    const db = h.stack.database.db
    // a plan is a row: a prepaid plan of 2 messages a month
    await db.insert(plans).values({
      id: 'tiny-prepaid',
      name: 'Tiny prepaid',
      monthlyFee: 100,
      tiers: [{ upTo: 2, unitAmount: 0, unitSize: 1 }],
      hardCapMessages: 2,
    })
    const { tenantId } = await h.customer({
      tenant: 'capped',
      domain: 'capped.test',
      destinations: [`127.0.0.1:${sink.port}`],
    })
    const deps = billingDeps(h.config, db)
    await changePlan(deps, { tenantId, planId: 'tiny-prepaid', actor: 'test' })
    const before = sink.messages.length

    const first = [
      await h.send({ from: 'a@sender.example', to: 'bob@capped.test', subject: 'within cap 1', text: 'x' }),
      await h.send({ from: 'a@sender.example', to: 'bob@capped.test', subject: 'within cap 2', text: 'x' }),
    ]
    for (const id of first) await h.traceWhen(id, (t) => t.message.status === 'delivered')
    expect(sink.messages.length).toBe(before + 2)

    // the billing cycle sees the cap reached and suspends, with the reason in words
    const suspension = await eventually(
      'billing to suspend the tenant',
      async () => (await tenantSuspension(db, tenantId)) ?? undefined,
    )
    expect(suspension).toMatchObject({
      reason: 'billing',
      note: expect.stringMatching(
        /^the Tiny prepaid plan's 2 messages for \d{4}-\d{2} are used up; mail is held until next month or a larger plan$/,
      ),
    })

    // still accepted over SMTP (never bounced for billing), then held, not tried
    const held = [
      await h.send({ from: 'a@sender.example', to: 'bob@capped.test', subject: 'over cap 1', text: 'x' }),
      await h.send({ from: 'a@sender.example', to: 'bob@capped.test', subject: 'over cap 2', text: 'x' }),
    ]
    for (const id of held) {
      const trace = await h.traceWhen(id, (t) => t.events.some((e) => e.kind === 'held'))
      expect(trace.events.find((e) => e.kind === 'held')?.detail).toEqual({
        reason: 'the account is suspended (billing); delivery resumes when it is resumed',
      })
      expect(trace.attempts).toHaveLength(0)
    }
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(sink.messages.length).toBe(before + 2)
    expect(await tenantSuspension(db, tenantId)).not.toBeNull()

    // a larger plan lifts the hold at once; everything that waited is delivered, none lost
    await changePlan(deps, { tenantId, planId: 'volume', actor: 'test' })
    expect(await tenantSuspension(db, tenantId)).toBeNull()
    for (const id of held) await h.traceWhen(id, (t) => t.message.status === 'delivered')
    const subjects = sink.messages
      .slice(before)
      .map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1]?.trim())
    expect(subjects.sort()).toEqual(['over cap 1', 'over cap 2', 'within cap 1', 'within cap 2'])
    expect(await monthCounter(tenantId)).toBe(4)
    // and the billing cycle does not suspend it again
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(await tenantSuspension(db, tenantId)).toBeNull()
  })
})
