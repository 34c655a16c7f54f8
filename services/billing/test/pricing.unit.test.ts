import { describe, expect, it } from 'vitest'
import { invoicePreview, tierAmount, validateTiers } from '../src/pricing'

// the seeded plans (migrations/0009_billing_plans.sql), in minor units (cents)
const payg = { currency: 'usd', monthlyFee: 0, tiers: [{ upTo: null, unitAmount: 100, unitSize: 1000 }] }
const volume = {
  currency: 'usd',
  monthlyFee: 2900,
  tiers: [
    { upTo: 10_000, unitAmount: 0, unitSize: 1000 },
    { upTo: null, unitAmount: 80, unitSize: 1000 },
  ],
}
const prepaid = {
  currency: 'usd',
  monthlyFee: 4900,
  tiers: [{ upTo: 50_000, unitAmount: 0, unitSize: 1000 }],
}
const perMail = { currency: 'eur', monthlyFee: 0, tiers: [{ upTo: null, unitAmount: 2, unitSize: 1 }] }

describe('tier arithmetic, in integer minor units', () => {
  it('rounds a line half up: 0.5 cent is 1, 0.49 is 0', () => {
    expect(tierAmount(5, 100, 1000)).toBe(1) // 0.5
    expect(tierAmount(4, 100, 1000)).toBe(0) // 0.4
    expect(tierAmount(6, 80, 1000)).toBe(0) // 0.48
    expect(tierAmount(7, 80, 1000)).toBe(1) // 0.56
    expect(tierAmount(0, 80, 1000)).toBe(0)
  })

  it('stays exact where floating point would not (2^53 and beyond in the product)', () => {
    expect(tierAmount(2_000_000_000, 9_999_999, 1)).toBe(19_999_998_000_000_000)
    expect(tierAmount(1_000_000_001, 3, 2)).toBe(1_500_000_002) // 1,500,000,001.5 → up
  })

  it('volume plan: the fee alone up to 10,000 messages, overage from the 10,001st', () => {
    const at = (n: number) => invoicePreview(volume, n).total
    expect(at(0)).toBe(2900)
    expect(at(9_999)).toBe(2900)
    expect(at(10_000)).toBe(2900)
    expect(at(10_001)).toBe(2900) // 0.08 cent rounds to 0
    expect(at(10_006)).toBe(2900) // 0.48
    expect(at(10_007)).toBe(2901) // 0.56
    expect(at(11_000)).toBe(2980)
    expect(at(12_500)).toBe(3100)
    expect(at(1_010_000)).toBe(2900 + 80_000)
  })

  it('volume plan: the lines say what each tier holds', () => {
    expect(invoicePreview(volume, 12_500)).toEqual({
      currency: 'usd',
      messages: 12_500,
      total: 3100,
      lines: [
        { kind: 'fee', description: 'monthly fee', quantity: 1, unitAmount: 2900, unitSize: 1, amount: 2900 },
        {
          kind: 'tier',
          description: 'messages 1–10,000',
          quantity: 10_000,
          unitAmount: 0,
          unitSize: 1000,
          amount: 0,
        },
        {
          kind: 'tier',
          description: 'messages 10,001–',
          quantity: 2_500,
          unitAmount: 80,
          unitSize: 1000,
          amount: 200,
        },
      ],
    })
  })

  it('pay as you go and per mail: no fee line, every message priced', () => {
    expect(invoicePreview(payg, 0)).toEqual({
      currency: 'usd',
      messages: 0,
      total: 0,
      lines: [
        { kind: 'tier', description: 'messages 1–', quantity: 0, unitAmount: 100, unitSize: 1000, amount: 0 },
      ],
    })
    expect(invoicePreview(payg, 1).total).toBe(0)
    expect(invoicePreview(payg, 5).total).toBe(1)
    expect(invoicePreview(payg, 1_000).total).toBe(100)
    expect(invoicePreview(payg, 123_456).total).toBe(12_346) // 12,345.6
    expect(invoicePreview(perMail, 1).total).toBe(2)
    expect(invoicePreview(perMail, 10_000).total).toBe(20_000)
  })

  it('prepaid plan: the fee, whatever the count, and nothing priced beyond the cap', () => {
    expect(invoicePreview(prepaid, 50_000).total).toBe(4900)
    expect(invoicePreview(prepaid, 50_001).total).toBe(4900)
    expect(invoicePreview(prepaid, 50_001).lines[1]?.quantity).toBe(50_000)
  })

  it('three graduated tiers: each message at the price of the tier it falls in', () => {
    const plan = {
      currency: 'usd',
      monthlyFee: 0,
      tiers: [
        { upTo: 1_000, unitAmount: 0, unitSize: 1000 },
        { upTo: 101_000, unitAmount: 50, unitSize: 1000 },
        { upTo: null, unitAmount: 20, unitSize: 1000 },
      ],
    }
    expect(invoicePreview(plan, 1_000).total).toBe(0)
    expect(invoicePreview(plan, 101_000).total).toBe(5_000)
    expect(invoicePreview(plan, 101_001).total).toBe(5_000)
    expect(invoicePreview(plan, 201_000).total).toBe(7_000)
  })

  it('refuses a count that is not a whole number of messages', () => {
    expect(() => invoicePreview(payg, -1)).toThrow('not a message count: -1')
    expect(() => invoicePreview(payg, 1.5)).toThrow('not a message count: 1.5')
  })

  it('checks that tiers ascend and only the last is open-ended', () => {
    expect(validateTiers(volume.tiers)).toBeNull()
    expect(
      validateTiers([
        { upTo: null, unitAmount: 1, unitSize: 1 },
        { upTo: 5, unitAmount: 1, unitSize: 1 },
      ]),
    ).toBe('tier 0: only the last tier may be open-ended')
    expect(
      validateTiers([
        { upTo: 10, unitAmount: 1, unitSize: 1 },
        { upTo: 10, unitAmount: 1, unitSize: 1 },
      ]),
    ).toBe('tier 1: upTo must be above 10')
    expect(validateTiers([{ upTo: null, unitAmount: -1, unitSize: 1 }])).toBe(
      'tier 0: unitAmount must be a whole number ≥ 0',
    )
    expect(validateTiers([{ upTo: null, unitAmount: 1, unitSize: 0 }])).toBe(
      'tier 0: unitSize must be a whole number ≥ 1',
    )
  })
})
