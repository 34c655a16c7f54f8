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
  /**
   * Weight of a naive-Bayes term added to the log-odds: `naiveBayes` × the mean over the message's
   * features of logit(Robinson's smoothed spamicity), from per-feature spam/ham message counts kept in
   * the model. 0 = plain logistic regression (no counts kept).
   */
  naiveBayes?: number
}

/** Version of the feature extractor a model was trained with; models of another version are refused. */
export const FEATURE_VERSION = 3
const MAGIC = 'MOATLR02'
const OLD_MAGIC = 'MOATLR01'
const HEADER_BYTES = 8 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 4 + 4 + 4 + 4
/** Robinson's prior strength and prior spamicity, and the dead band around 0.5 (as bogofilter's min_dev) */
const NB_S = 0.1
const NB_X = 0.5
const NB_MIN_DEV = 0.1
/** spamicities are clamped to [NB_CLAMP, 1 - NB_CLAMP] before the logit */
const NB_CLAMP = 0.001

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
  readonly naiveBayes: number
  /** per-feature counts of spam / ham messages containing it (empty unless `naiveBayes` > 0) */
  readonly spamCounts: Uint32Array
  readonly hamCounts: Uint32Array
  nSpam = 0
  nHam = 0
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
    this.naiveBayes = options.naiveBayes ?? 0
    const counts = this.naiveBayes > 0 ? 1 << this.bits : 0
    this.spamCounts = new Uint32Array(counts)
    this.hamCounts = new Uint32Array(counts)
  }

  /** logit of each feature's smoothed spamicity (0 inside the dead band), built on first use */
  private nbTable: Float32Array | null = null
  private tableSpam = 0
  private tableHam = 0

  private nbWeight(idx: number, nsInv: number, nhInv: number): number {
    const s = this.spamCounts[idx] ?? 0
    const h = this.hamCounts[idx] ?? 0
    const total = s + h
    if (total === 0) return 0
    const ps = s * nsInv
    const p = ps / (ps + h * nhInv)
    let f = (NB_S * NB_X + total * p) / (NB_S + total)
    if (Math.abs(f - 0.5) < NB_MIN_DEV) return 0
    if (f < NB_CLAMP) f = NB_CLAMP
    else if (f > 1 - NB_CLAMP) f = 1 - NB_CLAMP
    return Math.log(f / (1 - f))
  }

  /**
   * The table is rebuilt when either class total has moved by more than 1 % since it was built;
   * in between, `count()` updates the entries of the features it touches (with the table's totals).
   */
  private table(): Float32Array {
    if (
      this.nbTable &&
      Math.abs(this.nSpam - this.tableSpam) <= 0.01 * this.tableSpam &&
      Math.abs(this.nHam - this.tableHam) <= 0.01 * this.tableHam
    )
      return this.nbTable
    const t = this.nbTable ?? new Float32Array(this.spamCounts.length)
    this.tableSpam = this.nSpam
    this.tableHam = this.nHam
    const nsInv = 1 / Math.max(this.nSpam, 1)
    const nhInv = 1 / Math.max(this.nHam, 1)
    for (let i = 0; i < t.length; i++) t[i] = this.nbWeight(i, nsInv, nhInv)
    this.nbTable = t
    return t
  }

  /** Builds the naive-Bayes lookup table now rather than on the first score (a no-op without naiveBayes). */
  prepare(): void {
    if (this.naiveBayes > 0) this.table()
  }

  /**
   * The naive-Bayes term: `naiveBayes` × mean over the message's features of logit(f), where f is
   * Robinson's smoothed spamicity (s·x + n·p) / (s + n), s = 0.1, x = 0.5, p = the feature's spam
   * frequency / (spam frequency + ham frequency); features with |f − 0.5| < 0.1 count 0.
   */
  nbMargin(features: Uint32Array): number {
    if (this.naiveBayes <= 0 || features.length === 0) return 0
    const t = this.table()
    let z = 0
    for (let i = 0; i < features.length; i++) z += t[features[i] ?? 0] ?? 0
    return (this.naiveBayes * z) / features.length
  }

  /** Adds a message to the naive-Bayes counts (once per message, not per training pass). */
  count(features: Uint32Array, label: 0 | 1): void {
    if (this.naiveBayes <= 0) return
    const c = label === 1 ? this.spamCounts : this.hamCounts
    for (let i = 0; i < features.length; i++) {
      const f = features[i] ?? 0
      c[f] = (c[f] ?? 0) + 1
    }
    if (label === 1) this.nSpam++
    else this.nHam++
    const t = this.nbTable
    if (!t) return
    const nsInv = 1 / Math.max(this.tableSpam, 1)
    const nhInv = 1 / Math.max(this.tableHam, 1)
    for (let i = 0; i < features.length; i++) {
      const f = features[i] ?? 0
      t[f] = this.nbWeight(f, nsInv, nhInv)
    }
  }

  private scale(features: Uint32Array): number {
    return this.normalize && features.length > 0 ? 1 / Math.sqrt(features.length) : 1
  }

  /** Log-odds of the logistic-regression part alone (no naive-Bayes term). */
  lrMargin(features: Uint32Array): number {
    let z = 0
    const w = this.weights
    for (let i = 0; i < features.length; i++) z += w[features[i] ?? 0] ?? 0
    return this.bias + z * this.scale(features)
  }

  /** Raw score (log-odds) of a feature vector. */
  margin0(features: Uint32Array): number {
    if (this.naiveBayes <= 0 || features.length === 0) return this.lrMargin(features)
    // one pass over both tables
    const w = this.weights
    const t = this.table()
    let z = 0
    let nb = 0
    for (let i = 0; i < features.length; i++) {
      const f = features[i] ?? 0
      z += w[f] ?? 0
      nb += t[f] ?? 0
    }
    return this.bias + z * this.scale(features) + (this.naiveBayes * nb) / features.length
  }

  /** Spam probability in [0, 1]. */
  score(features: Uint32Array): number {
    return sigmoid(this.margin0(features))
  }

  /**
   * One online step; label 1 = spam, 0 = ham. The logistic-regression part is trained on its own
   * margin (independently of the naive-Bayes term, which only counts). `count: false` skips the
   * naive-Bayes counts, for second and later passes over the same messages. Returns the
   * logistic-regression part's probability before the update (= `score()` when `naiveBayes` is 0).
   */
  train(features: Uint32Array, label: 0 | 1, count = true): number {
    const p = sigmoid(this.lrMargin(features))
    if (count) this.count(features, label)
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
   * Compact binary form, little-endian: magic `MOATLR02`, bits u32, feature version u32, bias f64,
   * learning rate f64, flags u32 (1 = tone, 2 = normalize), margin f64, naiveBayes f64, nSpam u32,
   * nHam u32, then the number of non-zero weights u32 and of non-zero count pairs u32, then
   * (index u32, weight f32) per non-zero weight, then (index u32, spam u32, ham u32) per feature with
   * a non-zero count. `MOATLR01` files (an older feature extractor) are refused: retrain.
   */
  serialize(): Buffer {
    let nonzero = 0
    for (let i = 0; i < this.weights.length; i++) if (this.weights[i] !== 0) nonzero++
    let counted = 0
    for (let i = 0; i < this.spamCounts.length; i++)
      if (this.spamCounts[i] !== 0 || this.hamCounts[i] !== 0) counted++
    const buf = Buffer.alloc(HEADER_BYTES + nonzero * 8 + counted * 12)
    let o = buf.write(MAGIC, 0, 'latin1')
    o = buf.writeUInt32LE(this.bits, o)
    o = buf.writeUInt32LE(FEATURE_VERSION, o)
    o = buf.writeDoubleLE(this.bias, o)
    o = buf.writeDoubleLE(this.learningRate, o)
    o = buf.writeUInt32LE((this.mode === 'tone' ? 1 : 0) | (this.normalize ? 2 : 0), o)
    o = buf.writeDoubleLE(this.margin, o)
    o = buf.writeDoubleLE(this.naiveBayes, o)
    o = buf.writeUInt32LE(this.nSpam, o)
    o = buf.writeUInt32LE(this.nHam, o)
    o = buf.writeUInt32LE(nonzero, o)
    o = buf.writeUInt32LE(counted, o)
    for (let i = 0; i < this.weights.length; i++) {
      const w = this.weights[i] ?? 0
      if (w === 0) continue
      o = buf.writeUInt32LE(i, o)
      o = buf.writeFloatLE(w, o)
    }
    for (let i = 0; i < this.spamCounts.length; i++) {
      const sc = this.spamCounts[i] ?? 0
      const hc = this.hamCounts[i] ?? 0
      if (sc === 0 && hc === 0) continue
      o = buf.writeUInt32LE(i, o)
      o = buf.writeUInt32LE(sc, o)
      o = buf.writeUInt32LE(hc, o)
    }
    return buf
  }

  static deserialize(buf: Buffer): LogisticRegression {
    const magic = buf.length >= 8 ? buf.toString('latin1', 0, 8) : ''
    if (magic === OLD_MAGIC)
      throw new Error('model file is MOATLR01, from an older feature extractor: retrain it (npm run train)')
    if (buf.length < HEADER_BYTES || magic !== MAGIC) throw new Error('not a Moat model file')
    let o = 8
    const bits = buf.readUInt32LE(o)
    o += 4
    if (bits < 1 || bits > 28) throw new Error(`bad model: bits=${bits}`)
    const featureVersion = buf.readUInt32LE(o)
    o += 4
    if (featureVersion !== FEATURE_VERSION)
      throw new Error(
        `model uses feature version ${featureVersion}, this code ${FEATURE_VERSION}: retrain it`,
      )
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
    const naiveBayes = buf.readDoubleLE(o)
    o += 8
    if (!Number.isFinite(naiveBayes) || naiveBayes < 0) throw new Error('bad model: naiveBayes')
    const nSpam = buf.readUInt32LE(o)
    o += 4
    const nHam = buf.readUInt32LE(o)
    o += 4
    const n = buf.readUInt32LE(o)
    o += 4
    const counted = buf.readUInt32LE(o)
    o += 4
    if (buf.length !== o + n * 8 + counted * 12) throw new Error('bad model: truncated')
    const m = new LogisticRegression({ bits, learningRate, mode, margin, normalize, naiveBayes })
    if (counted > 0 && naiveBayes <= 0) throw new Error('bad model: counts without naiveBayes')
    m.bias = bias
    m.nSpam = nSpam
    m.nHam = nHam
    const size = 1 << bits
    for (let i = 0; i < n; i++, o += 8) {
      const idx = buf.readUInt32LE(o)
      if (idx >= size) throw new Error('bad model: index out of range')
      m.weights[idx] = buf.readFloatLE(o + 4)
    }
    for (let i = 0; i < counted; i++, o += 12) {
      const idx = buf.readUInt32LE(o)
      if (idx >= size) throw new Error('bad model: index out of range')
      m.spamCounts[idx] = buf.readUInt32LE(o + 4)
      m.hamCounts[idx] = buf.readUInt32LE(o + 8)
    }
    return m
  }
}
