import fs from 'node:fs'
import path from 'node:path'
import { loadSpamAssassin } from '../corpus'
import { DEFAULT_TRAIN, trainModel } from '../evaluate'
import { cliArgs, DEFAULT_MODEL_FILE, trainOptions } from './args'

const args = cliArgs()
if (args.help) {
  process.stdout.write(
    'npm run train -- [--out FILE] [--learning-rate N] [--epochs N] [--mode always|tone] [--bits N] [--naive-bayes W]\n',
  )
  process.exit(0)
}
const out = args.out ?? DEFAULT_MODEL_FILE
const opts = Object.fromEntries(Object.entries(trainOptions(args)).filter(([, v]) => v !== undefined))
const messages = loadSpamAssassin()
const t = performance.now()
const model = trainModel(messages, opts)
const seconds = (performance.now() - t) / 1000
const bytes = model.serialize()
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(out, bytes)
const summary = {
  out,
  messages: messages.length,
  spam: messages.filter((m) => m.label === 1).length,
  trainSeconds: Number(seconds.toFixed(3)),
  modelBytes: bytes.length,
  options: { ...DEFAULT_TRAIN, ...opts },
}
process.stdout.write(
  `trained on ${summary.messages} messages in ${seconds.toFixed(2)} s → ${out} (${bytes.length} bytes)\n`,
)
process.stdout.write(`${JSON.stringify(summary)}\n`)
