import { describe, expect, it } from 'vitest'
import {
  chi2Q,
  crossValidate,
  extractFeatures,
  FisherModel,
  LogisticRegression,
  loadSpamAssassin,
  rocAuc,
  shuffled,
  trainOnVectors,
} from '../src/index'

describe('LogisticRegression', () => {
  // features 0-9 mark spam, 10-19 mark ham, 20-29 are noise shared by both
  const toy = (n: number) => {
    const vs: Uint32Array[] = []
    const ls: (0 | 1)[] = []
    for (let i = 0; i < n; i++) {
      const label = (i % 2) as 0 | 1
      const base = label ? 0 : 10
      vs.push(Uint32Array.from([base + (i % 10), base + ((i * 3) % 10), 20 + (i % 10)]).sort())
      ls.push(label)
    }
    return { vs, ls }
  }

  for (const mode of ['always', 'tone'] as const) {
    it(`learns a separable toy set (${mode})`, () => {
      const { vs, ls } = toy(200)
      const m = trainOnVectors(vs, ls, { bits: 8, mode, epochs: 3 })
      vs.forEach((v, i) => {
        expect(m.score(v) >= 0.5 ? 1 : 0).toBe(ls[i])
      })
      // train-on-error stops once the margin is met, so its scores are less extreme
      const edge = mode === 'always' ? 0.2 : 0
      expect(m.score(Uint32Array.from([1, 2]))).toBeGreaterThan(0.5 + edge)
      expect(m.score(Uint32Array.from([11, 12]))).toBeLessThan(0.5 - edge)
    })
  }

  it('round-trips through serialize/deserialize with identical scores', () => {
    const { vs, ls } = toy(100)
    const m = trainOnVectors(vs, ls, { bits: 12 })
    const copy = LogisticRegression.deserialize(m.serialize())
    expect(copy.bits).toBe(12)
    expect(copy.mode).toBe(m.mode)
    for (const v of vs) expect(copy.score(v)).toBe(m.score(v))
    const msg = extractFeatures(Buffer.from('Subject: hello\n\nbuy now'), { bits: 12 })
    expect(copy.score(msg)).toBe(m.score(msg))
    // 76-byte header, 8 bytes per non-zero weight, 12 per feature with naive-Bayes counts (40 features here)
    expect(m.naiveBayes).toBeGreaterThan(0)
    expect(m.serialize().length).toBeLessThanOrEqual(76 + 8 * 41 + 12 * 40)
    expect(copy.nSpam).toBe(50)
    expect(copy.nHam).toBe(50)
    const plain = trainOnVectors(vs, ls, { bits: 12, naiveBayes: 0 })
    expect(plain.serialize().length).toBeLessThanOrEqual(76 + 8 * 41)
    const plainCopy = LogisticRegression.deserialize(plain.serialize())
    for (const v of vs) expect(plainCopy.score(v)).toBe(plain.score(v))
  })

  it('counts each message once for naive Bayes however many passes', () => {
    const { vs, ls } = toy(100)
    const m = trainOnVectors(vs, ls, { bits: 8, epochs: 4 })
    expect(m.nSpam + m.nHam).toBe(100)
    expect(m.seen).toBe(400)
    // the naive-Bayes term alone separates the toy set
    expect(m.nbMargin(Uint32Array.from([1, 2]))).toBeGreaterThan(0)
    expect(m.nbMargin(Uint32Array.from([11, 12]))).toBeLessThan(0)
    expect(m.nbMargin(Uint32Array.from([200]))).toBe(0)
  })

  it('online training keeps the naive-Bayes table in step with the counts', () => {
    const m = new LogisticRegression({ bits: 8, naiveBayes: 3, mode: 'tone', learningRate: 1 })
    const spam = Uint32Array.from([1, 2, 3])
    const ham = Uint32Array.from([4, 5, 6])
    for (let i = 0; i < 20; i++) {
      m.train(spam, 1)
      m.train(ham, 0)
      // a freshly deserialised copy rebuilds the table from the counts: same scores, up to the 1 % staleness
      const copy = LogisticRegression.deserialize(m.serialize())
      expect(Math.abs(copy.score(spam) - m.score(spam))).toBeLessThan(0.02)
    }
    expect(m.score(spam)).toBeGreaterThan(0.9)
    expect(m.score(ham)).toBeLessThan(0.1)
  })

  it('rejects corrupt model files', () => {
    expect(() => LogisticRegression.deserialize(Buffer.from('nope'))).toThrow()
    const buf = new LogisticRegression({ bits: 4 }).serialize()
    expect(() => LogisticRegression.deserialize(Buffer.concat([buf, Buffer.alloc(3)]))).toThrow()
    const old = Buffer.concat([Buffer.from('MOATLR01', 'latin1'), Buffer.alloc(36)])
    expect(() => LogisticRegression.deserialize(old)).toThrow(/retrain/)
    const otherVersion = Buffer.from(buf)
    otherVersion.writeUInt32LE(1, 12)
    expect(() => LogisticRegression.deserialize(otherVersion)).toThrow(/feature version/)
  })
})

describe('FisherModel', () => {
  it('separates a toy set and scores unseen features 0.5', () => {
    const m = new FisherModel({ bits: 8 })
    for (let i = 0; i < 50; i++) {
      m.train(Uint32Array.from([1, 2, 3, 100 + (i % 5)]), 1)
      m.train(Uint32Array.from([4, 5, 6, 100 + (i % 5)]), 0)
    }
    expect(m.score(Uint32Array.from([1, 2, 100]))).toBeGreaterThan(0.9)
    expect(m.score(Uint32Array.from([4, 5, 100]))).toBeLessThan(0.1)
    expect(m.score(Uint32Array.from([200]))).toBe(0.5)
    expect(chi2Q(0, 4)).toBe(1)
  })
})

describe('rocAuc', () => {
  it('is 1 for perfect ranking, 0.5 for ties', () => {
    expect(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1)
    expect(rocAuc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5)
  })
})

describe('on the SpamAssassin corpus', () => {
  it('a 5-fold CV on a 600-message subsample reaches AUC > 0.95', () => {
    const sample = shuffled(loadSpamAssassin(), 7).slice(0, 600)
    expect(sample.some((m) => m.label === 1) && sample.some((m) => m.label === 0)).toBe(true)
    const r = crossValidate(sample, 5)
    expect(r.messages).toBe(600)
    expect(r.auc).toBeGreaterThan(0.95)
    expect(r.recall).toBeGreaterThan(0.85)
    expect(r.fpr).toBeLessThan(0.05)
  })

  it('cross-validation is deterministic', () => {
    const sample = shuffled(loadSpamAssassin(), 3).slice(0, 200)
    const a = crossValidate(sample, 4)
    const b = crossValidate(sample, 4)
    expect(a.auc).toBe(b.auc)
    expect(a.recall).toBe(b.recall)
  })
})
