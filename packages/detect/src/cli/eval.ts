/**
 * Accuracy of Moat's whole detection engine (parsing defects, heuristics and the content model;
 * no DNS checks, which a stored corpus cannot answer truthfully) on labelled mail.
 *
 *   npm run eval -- --cv 5                          SpamAssassin corpus, k-fold cross-validation
 *   npm run eval -- --corpus DIR --labels FILE      a corpus the model has never seen
 *                   [--model FILE] [--online] [--threshold SCORE] [--limit N]
 *
 * The verdict threshold is the default quarantine threshold unless `--threshold` says otherwise.
 */
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import {
  computeMetrics,
  extractFeatures,
  type LabeledMessage,
  LogisticRegression,
  loadLabeledDir,
  loadSpamAssassin,
  recallAtFpr,
  rocAuc,
  shuffled,
  trainModel,
  trainOnVectors,
} from '@moat/classifier'
import { Detector } from '../engine'
import { ContentModel } from '../model'
import { DEFAULT_POLICY } from '../policy'

const USAGE = `npm run eval -- --cv K [--fold-seed N] [--limit N] [--threshold SCORE]
npm run eval -- --corpus DIR [--labels FILE] [--model FILE] [--online] [--threshold SCORE] [--limit N]
  labels file (default DIR/labels or DIR/index): one "spam|ham PATH" per line (tab or spaces),
  PATH relative to DIR, in evaluation order
  --model: a file from \`npm run train\`; default: trained on the whole SpamAssassin corpus now
  --online: learn each message's true label right after classifying it (TREC immediate feedback)
  --threshold: a message is spam when its score is at least this (default ${DEFAULT_POLICY.quarantineThreshold}, the quarantine threshold)
`

const { values: args } = parseArgs({
  options: {
    cv: { type: 'string' },
    'fold-seed': { type: 'string' },
    corpus: { type: 'string' },
    labels: { type: 'string' },
    model: { type: 'string' },
    online: { type: 'boolean', default: false },
    threshold: { type: 'string' },
    limit: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

function num(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n)) {
    process.stderr.write(`--${name}: not a number: ${value}\n`)
    process.exit(2)
  }
  return n
}

if (args.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}
const threshold = num(args.threshold, 'threshold') ?? (DEFAULT_POLICY.quarantineThreshold as number)
const limit = num(args.limit, 'limit')

const envelope = { mailFrom: '', rcptTo: ['user@customer.example'], clientIp: null, helo: null }

interface Scored {
  scores: Float64Array
  probabilities: Float64Array
  labels: (0 | 1)[]
  ms: number
}

async function scoreAll(
  detectorFor: (i: number) => Detector,
  messages: readonly LabeledMessage[],
  order: readonly number[],
  online: ((i: number, features: Uint32Array) => void) | undefined,
): Promise<Scored> {
  const scores = new Float64Array(messages.length)
  const probabilities = new Float64Array(messages.length)
  let ms = 0
  for (const i of order) {
    const m = messages[i] as LabeledMessage
    const t = performance.now()
    const a = await detectorFor(i).analyze(m.raw, envelope)
    ms += performance.now() - t
    scores[i] = a.score
    probabilities[i] = a.probability ?? 0.5
    online?.(i, a.features)
  }
  return { scores, probabilities, labels: messages.map((m) => m.label), ms }
}

function report(kind: string, r: Scored, extra: Record<string, unknown>): void {
  const m = computeMetrics(r.scores, r.labels, threshold)
  const tag = computeMetrics(r.scores, r.labels, DEFAULT_POLICY.tagThreshold as number)
  const low = recallAtFpr(r.scores, r.labels, 0.001)
  const modelAuc = rocAuc(r.probabilities, r.labels)
  const perSecond = r.labels.length / (r.ms / 1000)
  const pct = (x: number) => `${(x * 100).toFixed(3)} %`
  process.stdout.write(
    [
      kind,
      `messages            ${m.messages} (${m.spam} spam, ${m.ham} ham)`,
      `threshold           score ≥ ${threshold}`,
      `spam recall         ${pct(m.recall)} (${m.falseNegatives} spam missed)`,
      `false-positive rate ${pct(m.fpr)} (${m.falsePositives} ham marked spam)`,
      `precision           ${pct(m.precision)}`,
      `at the tag threshold ${tag.threshold}: recall ${pct(tag.recall)}, false-positive rate ${pct(tag.fpr)} (${tag.falsePositives} ham)`,
      `ROC AUC             ${m.auc.toFixed(5)} (content model alone: ${modelAuc.toFixed(5)})`,
      `recall @ FPR≤0.1 %  ${pct(low.recall)} (threshold chosen on these scores: optimistic)`,
      `messages/s          ${perSecond.toFixed(0)} (whole engine without DNS, one thread)`,
      '',
    ].join('\n'),
  )
  process.stdout.write(
    `${JSON.stringify({
      kind,
      ...m,
      tag: { threshold: tag.threshold, recall: tag.recall, fpr: tag.fpr, falsePositives: tag.falsePositives },
      recallAtFpr001: low.recall,
      modelAuc,
      messagesPerSecond: perSecond,
      ...extra,
    })}\n`,
  )
}

if (args.cv !== undefined) {
  const k = num(args.cv, 'cv') ?? 5
  if (!Number.isInteger(k) || k < 2) {
    process.stderr.write('--cv: an integer ≥ 2\n')
    process.exit(2)
  }
  const foldSeed = num(args['fold-seed'], 'fold-seed') ?? 42
  const messages = loadSpamAssassin().slice(0, limit)
  // the same folds as the content model's own cross-validation (packages/classifier)
  const order = shuffled(
    Array.from({ length: messages.length }, (_, i) => i),
    foldSeed,
  )
  const foldOf = new Int32Array(messages.length)
  order.forEach((idx, pos) => {
    foldOf[idx] = pos % k
  })
  const detectors: Detector[] = []
  for (let f = 0; f < k; f++) {
    const train = order.filter((i) => foldOf[i] !== f)
    const model = trainOnVectors(
      train.map((i) => extractFeatures((messages[i] as LabeledMessage).raw)),
      train.map((i) => (messages[i] as LabeledMessage).label),
    )
    detectors.push(new Detector({ model: new ContentModel(model), authservId: 'eval' }))
  }
  const r = await scoreAll((i) => detectors[foldOf[i] ?? 0] as Detector, messages, order, undefined)
  report(`cross-validation, ${k} folds, SpamAssassin corpus, whole engine`, r, { folds: k, foldSeed })
} else if (args.corpus) {
  // the labels file defaults to DIR/labels, or DIR/index as in the TREC corpora
  const labels =
    args.labels ??
    ['labels', 'index'].map((f) => path.join(args.corpus as string, f)).find((f) => fs.existsSync(f))
  if (!labels) {
    process.stderr.write(`no labels file: give --labels FILE, or put one at ${args.corpus}/labels\n`)
    process.exit(2)
  }
  const messages = loadLabeledDir(args.corpus, labels).slice(0, limit)
  const global = args.model
    ? LogisticRegression.deserialize(fs.readFileSync(args.model))
    : trainModel(loadSpamAssassin())
  const detector = new Detector({ model: new ContentModel(global), authservId: 'eval' })
  const order = messages.map((_, i) => i)
  const learn = args.online
    ? (i: number, features: Uint32Array) => {
        global.train(features, (messages[i] as LabeledMessage).label)
      }
    : undefined
  const r = await scoreAll(() => detector, messages, order, learn)
  report(
    `evaluation of ${args.corpus}, whole engine, model ${args.model ?? 'trained on the SpamAssassin corpus'}${args.online ? ', online feedback' : ''}`,
    r,
    { online: args.online },
  )
} else {
  process.stderr.write(USAGE)
  process.exit(2)
}
