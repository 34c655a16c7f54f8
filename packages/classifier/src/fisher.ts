/**
 * Robinson–Fisher token model (as in bogofilter / SpamBayes), over the same hashed features as
 * the logistic regression, kept for comparison. Counts messages per feature per class; a message's
 * score combines the per-feature spamicities with Fisher's inverse chi-square method.
 */

export interface FisherOptions {
  bits?: number
  /** Robinson's strength of the prior (bogofilter robs) */
  s?: number
  /** Robinson's prior spamicity of an unseen token (bogofilter robx) */
  x?: number
  /** ignore features whose spamicity is within this of 0.5 */
  minDev?: number
}

/** P(chi2 >= x2) for even degrees of freedom v. */
export function chi2Q(x2: number, v: number): number {
  const m = x2 / 2
  let term = Math.exp(-m)
  let sum = term
  for (let i = 1; i < v / 2; i++) {
    term *= m / i
    sum += term
  }
  return Math.min(sum, 1)
}

export class FisherModel {
  readonly bits: number
  readonly spamCounts: Uint32Array
  readonly hamCounts: Uint32Array
  nSpam = 0
  nHam = 0
  s: number
  x: number
  minDev: number

  constructor(options: FisherOptions = {}) {
    this.bits = options.bits ?? 20
    this.spamCounts = new Uint32Array(1 << this.bits)
    this.hamCounts = new Uint32Array(1 << this.bits)
    this.s = options.s ?? 0.1
    this.x = options.x ?? 0.5
    this.minDev = options.minDev ?? 0.1
  }

  train(features: Uint32Array, label: 0 | 1): void {
    const c = label === 1 ? this.spamCounts : this.hamCounts
    for (let i = 0; i < features.length; i++) {
      const f = features[i] ?? 0
      c[f] = (c[f] ?? 0) + 1
    }
    if (label === 1) this.nSpam++
    else this.nHam++
  }

  /** Spam indicator in [0, 1] (Robinson's I); 0.5 = no evidence either way. */
  score(features: Uint32Array): number {
    const ns = Math.max(this.nSpam, 1)
    const nh = Math.max(this.nHam, 1)
    let lnSpam = 0
    let lnHam = 0
    let n = 0
    for (let i = 0; i < features.length; i++) {
      const idx = features[i] ?? 0
      const sc = this.spamCounts[idx] ?? 0
      const hc = this.hamCounts[idx] ?? 0
      const total = sc + hc
      if (total === 0) continue
      const ps = sc / ns
      const p = ps / (ps + hc / nh)
      const f = (this.s * this.x + total * p) / (this.s + total)
      if (Math.abs(f - 0.5) < this.minDev) continue
      lnSpam += Math.log(Math.max(1 - f, 1e-300))
      lnHam += Math.log(Math.max(f, 1e-300))
      n++
    }
    if (n === 0) return 0.5
    const spamminess = 1 - chi2Q(-2 * lnSpam, 2 * n)
    const hamminess = 1 - chi2Q(-2 * lnHam, 2 * n)
    return (1 + spamminess - hamminess) / 2
  }
}
