import { describe, expect, it } from 'vitest'
import { heldBySuspension } from '../src/worker'

const since = new Date('2026-11-27T12:00:00Z')
const before = new Date('2026-11-27T11:59:59Z')
const after = new Date('2026-11-27T12:00:01Z')

describe('which mail a suspension holds', () => {
  it("an operator's suspension holds all of the tenant's mail, old and new", () => {
    const tenant = { status: 'suspended', suspendedReason: 'operator', suspendedAt: since }
    expect(heldBySuspension(tenant, before)).toBe(true)
    expect(heldBySuspension(tenant, after)).toBe(true)
  })

  it("billing's holds only mail received after it began: what came in good standing is delivered", () => {
    const tenant = { status: 'suspended', suspendedReason: 'billing', suspendedAt: since }
    expect(heldBySuspension(tenant, before)).toBe(false)
    expect(heldBySuspension(tenant, since)).toBe(true)
    expect(heldBySuspension(tenant, after)).toBe(true)
  })

  it('an active tenant holds nothing', () => {
    const tenant = { status: 'active', suspendedReason: null, suspendedAt: null }
    expect(heldBySuspension(tenant, after)).toBe(false)
  })
})
