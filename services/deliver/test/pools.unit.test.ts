import { describe, expect, it } from 'vitest'
import { SenderPools } from '../src/pools'

const paths = [
  { name: 'a', weight: 3 },
  { name: 'b', weight: 1 },
]

describe('SenderPools', () => {
  it('picks by weight: a weight-3 path comes first three times as often', () => {
    let seed = 1
    const random = () => {
      seed = (seed * 16807) % 2147483647
      return seed / 2147483647
    }
    const pools = new SenderPools({ default: paths }, 1000, random)
    const firsts = Array.from({ length: 4000 }, () => pools.order('default')[0]?.name)
    const a = firsts.filter((n) => n === 'a').length / firsts.length
    expect(a).toBeGreaterThan(0.72)
    expect(a).toBeLessThan(0.78)
  })

  it('rests a failing path (doubling while it keeps failing), then offers it again for a probe', () => {
    let now = 0
    const pools = new SenderPools(
      { default: paths },
      1000,
      () => 0,
      () => now,
    )
    pools.failed('default', paths[0] as (typeof paths)[0])
    expect(pools.resting('default')).toEqual(['a'])
    expect(pools.order('default').map((p) => p.name)).toEqual(['b', 'a'])
    now = 1001
    expect(pools.order('default').map((p) => p.name)).toEqual(['a', 'b'])
    pools.failed('default', paths[0] as (typeof paths)[0])
    now = 1001 + 1999
    expect(pools.resting('default')).toEqual(['a'])
    now = 1001 + 2001
    expect(pools.resting('default')).toEqual([])
    pools.succeeded('default', paths[0] as (typeof paths)[0])
    pools.failed('default', paths[0] as (typeof paths)[0])
    expect(pools.resting('default')).toEqual(['a'])
  })

  it('without a configured pool, mail goes straight to the MX', () => {
    expect(new SenderPools({}, 1000).order('default')).toEqual([{ name: 'direct', weight: 1 }])
  })
})
