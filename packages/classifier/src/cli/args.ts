import { parseArgs } from 'node:util'

export function cliArgs() {
  return parseArgs({
    args: process.argv.slice(2),
    options: {
      out: { type: 'string' },
      model: { type: 'string' },
      corpus: { type: 'string' },
      labels: { type: 'string' },
      cv: { type: 'string' },
      online: { type: 'boolean', default: false },
      threshold: { type: 'string' },
      'learning-rate': { type: 'string' },
      epochs: { type: 'string' },
      mode: { type: 'string' },
      algorithm: { type: 'string' },
      bits: { type: 'string' },
      'naive-bayes': { type: 'string' },
      'fold-seed': { type: 'string' },
      limit: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }).values
}

export type CliArgs = ReturnType<typeof cliArgs>

export function num(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n)) throw new Error(`--${name}: not a number: ${value}`)
  return n
}

export function trainOptions(a: CliArgs) {
  const mode = a.mode
  if (mode !== undefined && mode !== 'always' && mode !== 'tone') throw new Error('--mode: always | tone')
  return {
    learningRate: num(a['learning-rate'], 'learning-rate'),
    epochs: num(a.epochs, 'epochs'),
    bits: num(a.bits, 'bits'),
    naiveBayes: num(a['naive-bayes'], 'naive-bayes'),
    ...(mode ? { mode } : {}),
  }
}

/** Where `npm start` reads the model by default (MOAT_DATA_DIR/spam-model.bin with MOAT_DATA_DIR=./data). */
export const DEFAULT_MODEL_FILE = 'data/spam-model.bin'
