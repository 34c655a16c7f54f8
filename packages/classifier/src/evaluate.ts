import type { LabeledMessage } from './corpus'
import { shuffled } from './corpus'
import { extractFeatures } from './features'
import { FisherModel } from './fisher'
import { LogisticRegression, type LogRegOptions } from './logreg'
import { computeMetrics, type Metrics, recallAtFpr } from './metrics'

export interface TrainOptions extends LogRegOptions {
  /** passes over the training set, reshuffled each pass (seeded) */
  epochs?: number
  seed?: number
}

/** Picked by 5-fold CV on the SpamAssassin corpus (load-tests/results/spam-model.md). */
export const DEFAULT_TRAIN: Required<TrainOptions> = {
  bits: 20,
  learningRate: 1,
  mode: 'tone',
  margin: 0.1,
  normalize: true,
  naiveBayes: 3,
  epochs: 10,
  seed: 1,
}

/** Trains a model on pre-extracted feature vectors. */
export function trainOnVectors(
  vectors: readonly Uint32Array[],
  labels: readonly (0 | 1)[],
  options: TrainOptions = {},
): LogisticRegression {
  const o = { ...DEFAULT_TRAIN, ...options }
  const model = new LogisticRegression(o)
  const order = Array.from({ length: vectors.length }, (_, i) => i)
  for (let e = 0; e < o.epochs; e++) {
    for (const i of shuffled(order, o.seed + e))
      model.train(vectors[i] as Uint32Array, labels[i] as 0 | 1, e === 0)
  }
  model.prepare()
  return model
}

export function trainModel(
  messages: readonly LabeledMessage[],
  options: TrainOptions = {},
): LogisticRegression {
  const bits = options.bits ?? DEFAULT_TRAIN.bits
  return trainOnVectors(
    messages.map((m) => extractFeatures(m.raw, { bits })),
    messages.map((m) => m.label),
    options,
  )
}

export interface EvalReport extends Metrics {
  /** recall at a threshold that keeps FPR <= 0.1 % (chosen on the evaluated scores: optimistic) */
  recallAtFpr001: number
  /** the threshold behind `recallAtFpr001` */
  thresholdAtFpr001: number
  /** messages per second for extraction + scoring of evaluated messages */
  classifyPerSecond: number
  /** messages per second for scoring alone (features already extracted) */
  scorePerSecond: number
  trainSeconds: number
}

function finish(
  scores: Float64Array,
  labels: (0 | 1)[],
  threshold: number,
  extractMs: number,
  scoreMs: number,
  trainMs: number,
): EvalReport {
  const m = computeMetrics(scores, labels, threshold)
  const atFpr = recallAtFpr(scores, labels, 0.001)
  return {
    ...m,
    recallAtFpr001: atFpr.recall,
    thresholdAtFpr001: atFpr.threshold,
    classifyPerSecond: scores.length / ((extractMs + scoreMs) / 1000),
    scorePerSecond: scores.length / (scoreMs / 1000),
    trainSeconds: trainMs / 1000,
  }
}

/**
 * k-fold cross-validation: seeded shuffle, fold f = positions f, f+k, f+2k, …; each fold is scored
 * by a model trained only on the other folds.
 */
export function crossValidate(
  messages: readonly LabeledMessage[],
  k: number,
  options: TrainOptions & { threshold?: number; foldSeed?: number; algorithm?: 'logreg' | 'fisher' } = {},
): EvalReport & { folds: number } {
  const bits = options.bits ?? DEFAULT_TRAIN.bits
  const order = shuffled(
    Array.from({ length: messages.length }, (_, i) => i),
    options.foldSeed ?? 42,
  )
  let t = performance.now()
  const vectors = messages.map((m) => extractFeatures(m.raw, { bits }))
  const extractMs = performance.now() - t
  const labels = messages.map((m) => m.label)
  const scores = new Float64Array(messages.length)
  let trainMs = 0
  let scoreMs = 0
  for (let f = 0; f < k; f++) {
    const test: number[] = []
    const train: number[] = []
    order.forEach((idx, pos) => {
      ;(pos % k === f ? test : train).push(idx)
    })
    t = performance.now()
    let model: { score(v: Uint32Array): number }
    if (options.algorithm === 'fisher') {
      const fisher = new FisherModel({ bits })
      for (const i of train) fisher.train(vectors[i] as Uint32Array, labels[i] as 0 | 1)
      model = fisher
    } else {
      model = trainOnVectors(
        train.map((i) => vectors[i] as Uint32Array),
        train.map((i) => labels[i] as 0 | 1),
        options,
      )
    }
    trainMs += performance.now() - t
    t = performance.now()
    for (const i of test) scores[i] = model.score(vectors[i] as Uint32Array)
    scoreMs += performance.now() - t
  }
  // every message is scored exactly once, so extraction time counts once
  return { ...finish(scores, labels, options.threshold ?? 0.5, extractMs, scoreMs, trainMs / k), folds: k }
}

/**
 * Scores messages in order with a given model. With `online`, the model is trained on each message
 * right after scoring it (TREC immediate-feedback protocol).
 */
export function evaluateModel(
  model: LogisticRegression,
  messages: readonly LabeledMessage[],
  options: { threshold?: number; online?: boolean } = {},
): EvalReport {
  model.prepare()
  const scores = new Float64Array(messages.length)
  const labels = messages.map((m) => m.label)
  let extractMs = 0
  let scoreMs = 0
  let trainMs = 0
  messages.forEach((m, i) => {
    let t = performance.now()
    const v = extractFeatures(m.raw, { bits: model.bits })
    extractMs += performance.now() - t
    t = performance.now()
    scores[i] = model.score(v)
    scoreMs += performance.now() - t
    if (options.online) {
      t = performance.now()
      model.train(v, m.label)
      trainMs += performance.now() - t
    }
  })
  return finish(scores, labels, options.threshold ?? 0.5, extractMs, scoreMs, trainMs)
}
