import { describe, expect, it } from 'vitest'
import { DEFAULT_POLICY } from '../src/policy'
import { contentScore, SYMBOLS } from '../src/rules'

describe('contentScore', () => {
  it('spans −5 (certain ham) to +10 (certain spam), zero at p = 0.5', () => {
    expect(contentScore(0)).toBe(-5)
    expect(contentScore(0.5)).toBe(0)
    expect(contentScore(1)).toBe(10)
  })

  it('alone tags from p = 0.75 and quarantines from p = 0.85 with the default thresholds', () => {
    expect(contentScore(0.75)).toBeCloseTo(DEFAULT_POLICY.tagThreshold as number, 9)
    expect(contentScore(0.85)).toBeCloseTo(DEFAULT_POLICY.quarantineThreshold as number, 9)
  })

  it("cannot outweigh a domain's DMARC reject policy, however sure of ham", () => {
    expect(SYMBOLS.DMARC_REJECT.score + contentScore(0)).toBeGreaterThanOrEqual(
      DEFAULT_POLICY.quarantineThreshold as number,
    )
  })

  it('cannot hide an executable attachment that fails DMARC p=quarantine: at least tagged', () => {
    const evidence = SYMBOLS.ATTACH_EXECUTABLE.score + SYMBOLS.DMARC_QUARANTINE.score
    expect(evidence + contentScore(0)).toBeGreaterThanOrEqual(DEFAULT_POLICY.tagThreshold as number)
  })
})
