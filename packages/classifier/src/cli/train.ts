import fs from 'node:fs'
import path from 'node:path'
import { type LabeledMessage, loadLabeledDir, loadSpamAssassin } from '../corpus'
import { DEFAULT_TRAIN, trainModel } from '../evaluate'
import { cliArgs, DEFAULT_MODEL_FILE, trainOptions } from './args'

const args = cliArgs()
if (args.help) {
  process.stdout.write(
    [
      'npm run train -- [--corpus DIR [--labels FILE]] [--out FILE] [--learning-rate N] [--epochs N] [--mode always|tone] [--bits N] [--naive-bayes W]',
      '  --corpus: raw messages labelled by a file of "spam|ham PATH" lines (default DIR/labels or DIR/index);',
      '            without it, the bundled SpamAssassin public corpus',
      `  --out: default ${DEFAULT_MODEL_FILE}, where \`npm start\` reads it (MOAT_SPAM_MODEL)`,
      '',
    ].join('\n'),
  )
  process.exit(0)
}
const out = args.out ?? DEFAULT_MODEL_FILE
const opts = Object.fromEntries(Object.entries(trainOptions(args)).filter(([, v]) => v !== undefined))
function corpus(): LabeledMessage[] {
  if (!args.corpus) return loadSpamAssassin()
  const dir = args.corpus
  const labels =
    args.labels ?? ['labels', 'index'].map((f) => path.join(dir, f)).find((f) => fs.existsSync(f))
  if (!labels) {
    process.stderr.write(`no labels file: give --labels FILE, or put one at ${dir}/labels\n`)
    process.exit(2)
  }
  return loadLabeledDir(dir, labels)
}
const messages = corpus()
const spam = messages.filter((m) => m.label === 1).length
if (spam === 0 || spam === messages.length) {
  process.stderr.write(`the corpus needs both spam and ham (${spam} spam of ${messages.length})\n`)
  process.exit(2)
}
const t = performance.now()
const model = trainModel(messages, opts)
const seconds = (performance.now() - t) / 1000
const bytes = model.serialize()
fs.mkdirSync(path.dirname(out), { recursive: true })
// written aside and renamed: a running Moat never reads half a model
fs.writeFileSync(`${out}.tmp`, bytes)
fs.renameSync(`${out}.tmp`, out)
const summary = {
  out,
  messages: messages.length,
  corpus: args.corpus ?? 'SpamAssassin public corpus',
  spam,
  trainSeconds: Number(seconds.toFixed(3)),
  modelBytes: bytes.length,
  options: { ...DEFAULT_TRAIN, ...opts },
}
process.stdout.write(
  `trained on ${summary.messages} messages in ${seconds.toFixed(2)} s → ${out} (${bytes.length} bytes)\n`,
)
process.stdout.write(`${JSON.stringify(summary)}\n`)
