import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { SYMBOLS } from '../src/rules'

describe('docs/detection.md', () => {
  it('lists every symbol with the weight it really has, and nothing else', () => {
    const doc = fs.readFileSync(path.resolve(import.meta.dirname, '../../../docs/detection.md'), 'utf8')
    const documented = new Map(
      [...doc.matchAll(/^\| `([A-Z0-9_]+)` \| (-?\d+\.\d\d) \|/gm)].map((m) => [m[1], Number(m[2])]),
    )
    const actual = new Map(Object.entries(SYMBOLS).map(([name, s]) => [name, s.score]))
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(actual))
  })
})
