import { describe, expect, it } from 'vitest'
import { backoffSeconds } from '../src'

describe('backoffSeconds', () => {
  it('doubles from the first delay and stops at the cap (defaults: 1 minute, 1 hour)', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map((n) => backoffSeconds(n, 60, 3600))).toEqual([
      60, 120, 240, 480, 960, 1920, 3600, 3600, 3600,
    ])
  })
})
