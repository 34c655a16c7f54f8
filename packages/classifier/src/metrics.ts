export interface Metrics {
  messages: number
  spam: number
  ham: number
  threshold: number
  /** spam scored >= threshold / spam */
  recall: number
  /** ham scored >= threshold / ham */
  fpr: number
  falsePositives: number
  falseNegatives: number
  precision: number
  auc: number
}

/** Area under the ROC curve by the rank-sum (Mann–Whitney) statistic, ties counted half. */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort(
    (a, b) => (scores[a] ?? 0) - (scores[b] ?? 0),
  )
  let pos = 0
  let neg = 0
  let rankSum = 0
  for (let i = 0; i < idx.length; ) {
    let j = i
    const s = scores[idx[i] ?? 0] ?? 0
    while (j < idx.length && (scores[idx[j] ?? 0] ?? 0) === s) j++
    const avgRank = (i + 1 + j) / 2
    for (let k = i; k < j; k++) {
      if ((labels[idx[k] ?? 0] ?? 0) === 1) {
        pos++
        rankSum += avgRank
      } else neg++
    }
    i = j
  }
  if (pos === 0 || neg === 0) return Number.NaN
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg)
}

export function computeMetrics(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  threshold: number,
): Metrics {
  let tp = 0
  let fp = 0
  let fn = 0
  let tn = 0
  for (let i = 0; i < scores.length; i++) {
    const spam = (scores[i] ?? 0) >= threshold
    if (labels[i] === 1) spam ? tp++ : fn++
    else spam ? fp++ : tn++
  }
  return {
    messages: scores.length,
    spam: tp + fn,
    ham: fp + tn,
    threshold,
    recall: tp / Math.max(1, tp + fn),
    fpr: fp / Math.max(1, fp + tn),
    falsePositives: fp,
    falseNegatives: fn,
    precision: tp / Math.max(1, tp + fp),
    auc: rocAuc(scores, labels),
  }
}

/** Spam recall at the lowest threshold whose false-positive rate is <= maxFpr. */
export function recallAtFpr(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  maxFpr: number,
): { threshold: number; recall: number; fpr: number } {
  const hamScores: number[] = []
  for (let i = 0; i < scores.length; i++) if (labels[i] !== 1) hamScores.push(scores[i] ?? 0)
  hamScores.sort((a, b) => b - a)
  const allowed = Math.floor(maxFpr * hamScores.length)
  // threshold just above the (allowed+1)-th highest ham score
  const h = hamScores[allowed] ?? Number.NEGATIVE_INFINITY
  const threshold = h === Number.NEGATIVE_INFINITY ? 0 : nextUp(h)
  const m = computeMetrics(scores, labels, threshold)
  return { threshold, recall: m.recall, fpr: m.fpr }
}

function nextUp(x: number): number {
  return x + Math.max(Math.abs(x) * 1e-12, 1e-300)
}
