import fs from 'node:fs'
import { type LabeledMessage, loadLabeledDir, loadSpamAssassin } from '../corpus'
import { crossValidate, DEFAULT_TRAIN, type EvalReport, evaluateModel } from '../evaluate'
import { LogisticRegression } from '../logreg'
import { cliArgs, DEFAULT_MODEL_FILE, num, trainOptions } from './args'

const USAGE = `npm run eval -- --cv K [--fold-seed N] [--limit N] [--algorithm logreg|fisher] [training options]
  training options: --learning-rate N --epochs N --mode always|tone --bits N --naive-bayes W (0 = off)
npm run eval -- --corpus DIR --labels FILE [--model FILE] [--online] [--threshold P]
  labels file: one "spam|ham PATH" per line, PATH relative to DIR, in evaluation order
`

function print(kind: string, r: EvalReport, extra: Record<string, unknown>): void {
  const pct = (x: number) => `${(x * 100).toFixed(3)} %`
  const lines = [
    `${kind}`,
    `messages            ${r.messages} (${r.spam} spam, ${r.ham} ham)`,
    `threshold           ${r.threshold}`,
    `spam recall         ${pct(r.recall)} (${r.falseNegatives} spam missed)`,
    `false-positive rate ${pct(r.fpr)} (${r.falsePositives} ham scored spam)`,
    `precision           ${pct(r.precision)}`,
    `ROC AUC             ${r.auc.toFixed(5)}`,
    `recall @ FPR<=0.1 % ${pct(r.recallAtFpr001)} at threshold ${r.thresholdAtFpr001.toFixed(4)} (chosen on these scores: optimistic)`,
    `classify msgs/s     ${r.classifyPerSecond.toFixed(0)} (parse + features + score, one thread)`,
    `score-only msgs/s   ${r.scorePerSecond.toFixed(0)}`,
    `train seconds       ${r.trainSeconds.toFixed(3)}${kind.startsWith('cross') ? ' (features pre-extracted, mean per fold)' : ''}`,
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
  process.stdout.write(`${JSON.stringify({ kind, ...r, ...extra })}\n`)
}

const args = cliArgs()
if (args.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}
const threshold = num(args.threshold, 'threshold') ?? 0.5
if (args.cv !== undefined) {
  const k = num(args.cv, 'cv') ?? 5
  if (!Number.isInteger(k) || k < 2) throw new Error('--cv: an integer >= 2')
  let messages: LabeledMessage[] = loadSpamAssassin()
  const limit = num(args.limit, 'limit')
  if (limit !== undefined) messages = messages.slice(0, limit)
  const opts = Object.fromEntries(Object.entries(trainOptions(args)).filter(([, v]) => v !== undefined))
  const algorithm = args.algorithm ?? 'logreg'
  if (algorithm !== 'logreg' && algorithm !== 'fisher') throw new Error('--algorithm: logreg | fisher')
  const foldSeed = num(args['fold-seed'], 'fold-seed') ?? 42
  const r = crossValidate(messages, k, { ...opts, threshold, algorithm, foldSeed })
  const options = algorithm === 'fisher' ? { algorithm } : { algorithm, ...DEFAULT_TRAIN, ...opts }
  print(`cross-validation, ${k} folds, SpamAssassin corpus, ${algorithm}`, r, { foldSeed, options })
} else if (args.corpus && args.labels) {
  const messages = loadLabeledDir(args.corpus, args.labels)
  const model = LogisticRegression.deserialize(fs.readFileSync(args.model ?? DEFAULT_MODEL_FILE))
  const r = evaluateModel(model, messages, { threshold, online: args.online })
  print(`evaluation of ${args.model ?? DEFAULT_MODEL_FILE}${args.online ? ' (online feedback)' : ''}`, r, {})
} else {
  process.stderr.write(USAGE)
  process.exit(2)
}
