import fs from 'node:fs'
import path from 'node:path'
import { extractFeatures, LogisticRegression, loadSpamAssassin, trainModel } from '@moat/classifier'

/**
 * A tenant's corrections to the global model: extra weights on the same hashed features, learnt
 * from that tenant's releases and spam reports. The global model is never changed by a tenant.
 */
export type Overlay = ReadonlyMap<number, number>

/** Steps of the tenant overlay's learning rate; one report moves the score firmly, not absolutely. */
const OVERLAY_RATE = 1
/** A report trains until the message scores on the reported side by this margin, or for this many steps. */
const OVERLAY_TARGET = 0.2
const OVERLAY_MAX_STEPS = 50

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-Math.max(-35, Math.min(35, z))))
}

/** The global content model plus per-tenant overlays. */
export class ContentModel {
  constructor(readonly global: LogisticRegression) {}

  static fromFile(file: string): ContentModel {
    return new ContentModel(LogisticRegression.deserialize(fs.readFileSync(file)))
  }

  features(raw: Buffer): Uint32Array {
    return extractFeatures(raw, { bits: this.global.bits })
  }

  private scale(features: Uint32Array): number {
    return features.length > 0 ? 1 / Math.sqrt(features.length) : 1
  }

  /** Spam probability of a message for a tenant (with its overlay) or globally. */
  score(features: Uint32Array, overlay?: Overlay): number {
    let z = this.global.margin0(features)
    if (overlay?.size) {
      let sum = 0
      for (const f of features) sum += overlay.get(f) ?? 0
      z += sum * this.scale(features)
    }
    return sigmoid(z)
  }

  /**
   * The change to a tenant's overlay that teaches it one label for one message: gradient steps on
   * the overlay alone until the message scores at least {@link OVERLAY_TARGET} past 0.5 on the
   * reported side. Returns the per-feature deltas to add (empty when the model already agrees).
   */
  learn(features: Uint32Array, label: 0 | 1, overlay: Overlay): Map<number, number> {
    const delta = new Map<number, number>()
    const scale = this.scale(features)
    const current = new Map(overlay)
    for (let step = 0; step < OVERLAY_MAX_STEPS; step++) {
      const p = this.score(features, current)
      if (label === 1 ? p >= 0.5 + OVERLAY_TARGET : p <= 0.5 - OVERLAY_TARGET) break
      // the logistic-loss gradient of this one message under 1/sqrt(n) scaling
      const g = OVERLAY_RATE * (label - p) * scale
      for (const f of features) {
        delta.set(f, (delta.get(f) ?? 0) + g)
        current.set(f, (current.get(f) ?? 0) + g)
      }
    }
    return delta
  }
}

/**
 * Loads the model file, building it from the bundled SpamAssassin corpus when it does not exist
 * yet (a few seconds, once) or was made by an older feature extractor. The file is written to a
 * temporary name and renamed, so concurrent starters never read half a model.
 */
export function loadOrBuildModel(file: string, log?: { info(obj: object, msg: string): void }): ContentModel {
  let stale: string | undefined
  if (fs.existsSync(file)) {
    try {
      return ContentModel.fromFile(file)
    } catch (err) {
      // only an outdated model is replaced; a damaged or foreign file is the operator's to look at
      if (!/retrain/.test((err as Error).message)) throw new Error(`${file}: ${(err as Error).message}`)
      stale = (err as Error).message
    }
  }
  const started = Date.now()
  const messages = loadSpamAssassin()
  const model = trainModel(messages)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, model.serialize())
  fs.renameSync(tmp, file)
  log?.info(
    { file, messages: messages.length, ms: Date.now() - started, ...(stale ? { replaced: stale } : {}) },
    'built the default spam model from the SpamAssassin public corpus',
  )
  return new ContentModel(model)
}
