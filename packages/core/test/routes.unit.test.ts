import { describe, expect, it } from 'vitest'
import { MoatError, orderDestinations, parseDestination } from '../src'

describe('parseDestination', () => {
  it('reads HOST:PORT and HOST:PORT:PRIORITY, with bracketed IPv6', () => {
    expect(parseDestination('mail.example.com:25')).toEqual({
      host: 'mail.example.com',
      port: 25,
      priority: 10,
    })
    expect(parseDestination('10.0.0.5:2525:20')).toEqual({ host: '10.0.0.5', port: 2525, priority: 20 })
    expect(parseDestination('[2001:db8::1]:25:5')).toEqual({ host: '2001:db8::1', port: 25, priority: 5 })
  })

  it.each([
    'mail.example.com',
    'mail.example.com:0',
    'mail.example.com:70000',
    'mail.example.com:25:x',
    ':25',
    'a b:25',
  ])('refuses %j with a hint', (spec) => {
    const err = (() => {
      try {
        parseDestination(spec)
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(MoatError)
    expect((err as MoatError).message).toBe(`invalid destination ${JSON.stringify(spec)}`)
    expect((err as MoatError).hint).toBe('write HOST:PORT or HOST:PORT:PRIORITY, e.g. mail.example.com:25:10')
  })
})

describe('orderDestinations', () => {
  const routes = [
    { host: 'c', priority: 20 },
    { host: 'a1', priority: 10 },
    { host: 'a2', priority: 10 },
    { host: 'a3', priority: 10 },
  ]

  it('puts lower priority numbers first', () => {
    for (let i = 0; i < 20; i++) {
      const order = orderDestinations(routes).map((r) => r.host)
      expect(order.at(-1)).toBe('c')
      expect(order.slice(0, 3).sort()).toEqual(['a1', 'a2', 'a3'])
    }
  })

  it('spreads load evenly among equal priorities', () => {
    const firsts: Record<string, number> = {}
    for (let i = 0; i < 3000; i++) {
      const first = orderDestinations(routes)[0]?.host ?? ''
      firsts[first] = (firsts[first] ?? 0) + 1
    }
    expect(Object.keys(firsts).sort()).toEqual(['a1', 'a2', 'a3'])
    for (const n of Object.values(firsts)) expect(n).toBeGreaterThan(800)
  })
})
