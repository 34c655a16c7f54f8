import type { PlanTier } from '@moat/db'

/** The parts of a plan that set its price. */
export interface PricedPlan {
  currency: string
  monthlyFee: number
  tiers: PlanTier[]
}

/** One line of an invoice: the flat fee, or the messages that fell in one tier. */
export interface InvoiceLine {
  kind: 'fee' | 'tier'
  description: string
  /** messages in this tier (1 for the fee) */
  quantity: number
  /** minor units per `unitSize` messages (the fee: the whole amount) */
  unitAmount: number
  unitSize: number
  /** minor units, rounded half up */
  amount: number
}

export interface InvoicePreview {
  currency: string
  messages: number
  lines: InvoiceLine[]
  /** minor units: the sum of the lines */
  total: number
}

/**
 * `count × unitAmount / unitSize` rounded half up, in integers (BigInt, so no product can lose
 * precision). Each tier line is rounded on its own, as Stripe rounds each line of an invoice.
 */
export function tierAmount(count: number, unitAmount: number, unitSize: number): number {
  const n = BigInt(count) * BigInt(unitAmount) * 2n + BigInt(unitSize)
  return Number(n / (2n * BigInt(unitSize)))
}

/**
 * What a period with `messages` scanned messages costs on `plan`: the monthly fee, then each tier
 * in turn (graduated: the first `upTo` messages at the first tier's price, the next ones at the
 * next tier's, and so on). Messages beyond a last tier that has a limit are not priced (a prepaid
 * plan's cap is enforced by suspension, not by price).
 *
 * @example
 * invoicePreview({ currency: 'usd', monthlyFee: 2900, tiers: [
 *   { upTo: 10000, unitAmount: 0, unitSize: 1000 },
 *   { upTo: null, unitAmount: 80, unitSize: 1000 },
 * ] }, 12500).total // 2900 + 2500 × 80 / 1000 = 3100
 */
export function invoicePreview(plan: PricedPlan, messages: number): InvoicePreview {
  if (!Number.isSafeInteger(messages) || messages < 0)
    throw new RangeError(`not a message count: ${messages}`)
  const lines: InvoiceLine[] = []
  if (plan.monthlyFee > 0) {
    lines.push({
      kind: 'fee',
      description: 'monthly fee',
      quantity: 1,
      unitAmount: plan.monthlyFee,
      unitSize: 1,
      amount: plan.monthlyFee,
    })
  }
  let from = 0
  for (const tier of plan.tiers) {
    const upTo = tier.upTo ?? Number.POSITIVE_INFINITY
    const inTier = Math.max(0, Math.min(messages, upTo) - from)
    lines.push({
      kind: 'tier',
      description: `messages ${(from + 1).toLocaleString('en-US')}–${tier.upTo === null ? '' : tier.upTo.toLocaleString('en-US')}`,
      quantity: inTier,
      unitAmount: tier.unitAmount,
      unitSize: tier.unitSize,
      amount: tierAmount(inTier, tier.unitAmount, tier.unitSize),
    })
    if (tier.upTo === null) break
    from = tier.upTo
  }
  return {
    currency: plan.currency,
    messages,
    lines,
    total: lines.reduce((sum, line) => sum + line.amount, 0),
  }
}

/** Checks that tiers ascend and end open, so that every message has a price (or a cap). */
export function validateTiers(tiers: PlanTier[]): string | null {
  let last = 0
  for (const [i, tier] of tiers.entries()) {
    if (!Number.isSafeInteger(tier.unitAmount) || tier.unitAmount < 0)
      return `tier ${i}: unitAmount must be a whole number ≥ 0`
    if (!Number.isSafeInteger(tier.unitSize) || tier.unitSize < 1)
      return `tier ${i}: unitSize must be a whole number ≥ 1`
    if (tier.upTo === null)
      return i === tiers.length - 1 ? null : `tier ${i}: only the last tier may be open-ended`
    if (!Number.isSafeInteger(tier.upTo) || tier.upTo <= last) return `tier ${i}: upTo must be above ${last}`
    last = tier.upTo
  }
  return null
}
