import { Writable } from 'node:stream'
import { loadConfig } from '@moat/config'
import { recordUsage } from '@moat/core'
import { usageCounters, usageEvents } from '@moat/db'
import { and, eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBilling } from '../src/index'
import { type BillingTest, startBillingTest } from './setup'

let t: BillingTest
beforeAll(async () => {
  t = await startBillingTest()
})
afterAll(async () => {
  await t?.close()
})

describe('metering', () => {
  it('counts a message once when two workers record it at the same time', async () => {
    const tenantId = await t.tenant('racy')
    const at = new Date('2026-03-31T23:59:59Z')
    const event = {
      messageId: 'msg_race',
      tenantId,
      direction: 'inbound',
      verdict: 'quarantine',
      size: 5000,
      at,
    }
    const results = await Promise.all(
      [1, 2, 3].map(() => t.database.db.transaction(async (tx) => recordUsage(tx, event))),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    expect(await recordUsage(t.database.db, event)).toBe(false)
    const counters = await t.database.db
      .select()
      .from(usageCounters)
      .where(eq(usageCounters.tenantId, tenantId))
      .orderBy(usageCounters.granularity)
    expect(counters).toEqual([
      expect.objectContaining({
        granularity: 'day',
        periodStart: '2026-03-31',
        messages: 1,
        quarantined: 1,
        bytes: 5000,
      }),
      expect.objectContaining({
        granularity: 'month',
        periodStart: '2026-03-01',
        messages: 1,
        quarantined: 1,
        bytes: 5000,
      }),
    ])
    expect(
      await t.database.db.select().from(usageEvents).where(eq(usageEvents.messageId, 'msg_race')),
    ).toHaveLength(1)
  })

  it('rolls a month boundary into the right day and month', async () => {
    const tenantId = await t.tenant('boundary')
    for (const [id, at] of [
      ['msg_b1', '2026-04-30T23:59:59.999Z'],
      ['msg_b2', '2026-05-01T00:00:00.000Z'],
    ] as const) {
      await recordUsage(t.database.db, {
        messageId: id,
        tenantId,
        direction: 'outbound',
        verdict: 'deliver',
        size: 10,
        at: new Date(at),
      })
    }
    const months = await t.database.db
      .select({
        start: usageCounters.periodStart,
        messages: usageCounters.messages,
        outbound: usageCounters.outbound,
      })
      .from(usageCounters)
      .where(and(eq(usageCounters.tenantId, tenantId), eq(usageCounters.granularity, 'month')))
      .orderBy(usageCounters.periodStart)
    expect(months).toEqual([
      { start: '2026-04-01', messages: 1, outbound: 1 },
      { start: '2026-05-01', messages: 1, outbound: 1 },
    ])
  })
})

describe('start-up', () => {
  it('says so when it runs without Stripe, and opens no listener', async () => {
    const lines: string[] = []
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(JSON.parse(chunk.toString()).msg)
          done()
        },
      }),
    )
    const billing = await startBilling({ config: loadConfig({}), db: t.database.db, log })
    await billing.close()
    expect(billing.port).toBeUndefined()
    expect(lines).toContain(
      'billing: no MOAT_STRIPE_SECRET_KEY, local metering only: usage is counted and prepaid caps enforced, nothing is sent to Stripe',
    )
  })
})
