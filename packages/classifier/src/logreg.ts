/**
 * Online logistic regression over hashed binary features, in the style of the TREC spam track
 * filters (Goodman & Yih 2006; Sculley's ROSVM/TONE work): one weight per hashed feature, a
 * gradient step per message, optionally only when the message is misclassified or near the margin.
 */

export interface LogRegOptions {
  bits?: number
  /** step size per message */
  learningRate?: number
  /**
   * `always`: update on every training message. `tone`: train on (near) error, i.e. only when
   * |p - label| exceeds `margin`.
   */
  mode?: 'always' | 'tone'
  margin?: number
  /** scale each message's features by 1/sqrt(count) so long messages do not dominate */
  normalize?: boolean
}

const MAGIC = 'MOATLR01'

function sigmoid(z: number): number {
  if (z > 35) return 1
  if (z < -35) return 0
  return 1 / (1 + Math.exp(-z))
}

export class LogisticRegression {
  readonly bits: number
  readonly weights: Float32Array
  bias = 0
  learningRate: number
  mode: 'always' | 'tone'
  margin: number
  normalize: boolean
  /** messages trained on, updates actually applied */
  seen = 0
  updates = 0

  constructor(options: LogRegOptions = {}) {
    this.bits = options.bits ?? 20
    this.weights = new Float32Array(1 << this.bits)
    this.learningRate = options.learningRate ?? 0.02
    this.mode = options.mode ?? 'always'
    this.margin = options.margin ?? 0.4
    this.normalize = options.normalize ?? true
  }

  private scale(features: Uint32Array): number {
    return this.normalize && features.length > 0 ? 1 / Math.sqrt(features.length) : 1
  }

  /** Raw score (log-odds) of a feature vector. */
  margin0(features: Uint32Array): number {
    let z = 0
    const w = this.weights
    for (let i = 0; i < features.length; i++) z += w[features[i] ?? 0] ?? 0
    return this.bias + z * this.scale(features)
  }

  /** Spam probability in [0, 1]. */
  score(features: Uint32Array): number {
    return sigmoid(this.margin0(features))
  }

  /** One online step; label 1 = spam, 0 = ham. Returns the probability before the update. */
  train(features: Uint32Array, label: 0 | 1): number {
    const p = this.score(features)
    this.seen++
    const err = label - p
    if (this.mode === 'tone' && Math.abs(err) < this.margin) return p
    this.updates++
    const step = this.learningRate * err * this.scale(features)
    const w = this.weights
    for (let i = 0; i < features.length; i++) {
      const f = features[i] ?? 0
      w[f] = (w[f] ?? 0) + step
    }
    this.bias += this.learningRate * err
    return p
  }

  /**
   * Compact binary form: magic, bits, bias, learning rate, flags (1 = tone, 2 = normalize), margin, then (index u32, weight
   * f32) for every non-zero weight. Little-endian.
   */
  serialize(): Buffer {
    let nonzero = 0
    for (let i = 0; i < this.weights.length; i++) if (this.weights[i] !== 0) nonzero++
    const buf = Buffer.alloc(8 + 4 + 8 + 8 + 4 + 8 + 4 + nonzero * 8)
    let o = buf.write(MAGIC, 0, 'latin1')
    o = buf.writeUInt32LE(this.bits, o)
    o = buf.writeDoubleLE(this.bias, o)
    o = buf.writeDoubleLE(this.learningRate, o)
    o = buf.writeUInt32LE((this.mode === 'tone' ? 1 : 0) | (this.normalize ? 2 : 0), o)
    o = buf.writeDoubleLE(this.margin, o)
    o = buf.writeUInt32LE(nonzero, o)
    for (let i = 0; i < this.weights.length; i++) {
      const w = this.weights[i] ?? 0
      if (w === 0) continue
      o = buf.writeUInt32LE(i, o)
      o = buf.writeFloatLE(w, o)
    }
    return buf
  }

  static deserialize(buf: Buffer): LogisticRegression {
    if (buf.length < 44 || buf.toString('latin1', 0, 8) !== MAGIC) throw new Error('not a Moat model file')
    let o = 8
    const bits = buf.readUInt32LE(o)
    o += 4
    if (bits < 1 || bits > 28) throw new Error(`bad model: bits=${bits}`)
    const bias = buf.readDoubleLE(o)
    o += 8
    const learningRate = buf.readDoubleLE(o)
    o += 8
    const flags = buf.readUInt32LE(o)
    const mode = flags & 1 ? 'tone' : 'always'
    const normalize = (flags & 2) !== 0
    o += 4
    const margin = buf.readDoubleLE(o)
    o += 8
    const n = buf.readUInt32LE(o)
    o += 4
    if (buf.length !== o + n * 8) throw new Error('bad model: truncated')
    const m = new LogisticRegression({ bits, learningRate, mode, margin, normalize })
    m.bias = bias
    const size = 1 << bits
    for (let i = 0; i < n; i++, o += 8) {
      const idx = buf.readUInt32LE(o)
      if (idx >= size) throw new Error('bad model: index out of range')
      m.weights[idx] = buf.readFloatLE(o + 4)
    }
    return m
  }
}
