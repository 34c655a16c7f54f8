import { type AuthOutcome, authenticateMessage, hasSignatures } from './auth'
import type { DnsLookup } from './dns'
import { checkBlocklists, type DnsblZone } from './dnsbl'
import type { ContentModel, Overlay } from './model'
import { type MessageView, readMessage } from './parse'
import { contentScore, type Hit, hit, runRules } from './rules'

export interface Envelope {
  mailFrom: string
  rcptTo: readonly string[]
  clientIp: string | null
  helo: string | null
}

export interface DetectorOptions {
  /** the global content model; null scores content as neutral and says so */
  model: ContentModel | null
  /** DNS for authentication and blocklists; undefined skips every network check (offline evaluation) */
  lookup?: DnsLookup
  /** names this Moat in Authentication-Results */
  authservId: string
  dnsbl?: readonly DnsblZone[]
}

export interface Analysis {
  hits: Hit[]
  score: number
  /** content model's spam probability (with the tenant's overlay), null without a model */
  probability: number | null
  features: Uint32Array
  auth: AuthOutcome['summary'] | null
  /** `Authentication-Results: …` for the delivered message, null when authentication was not run */
  authResults: string | null
  view: MessageView
  /** per stage, for the scan benchmark and the trace */
  timings: { parseMs: number; authMs: number; rulesMs: number; modelMs: number }
}

/**
 * Moat's spam detection: parsing, sender authentication, blocklists, heuristics and the content
 * model, each adding named, weighted symbols. No stage can fail a message: a stage that throws
 * becomes a symbol of its own and the rest still score.
 */
export class Detector {
  constructor(readonly options: DetectorOptions) {}

  /**
   * Scores one message. `overlayFor` fetches the tenant's corrections to the model for the
   * message's features (see `ContentModel.learn`).
   */
  async analyze(
    raw: Buffer,
    envelope: Envelope,
    overlayFor?: (features: Uint32Array) => Promise<Overlay>,
  ): Promise<Analysis> {
    const o = this.options
    let t = performance.now()
    const view = await readMessage(raw)
    const parseMs = performance.now() - t

    t = performance.now()
    const rcptDomains = [
      ...new Set(envelope.rcptTo.map((r) => r.slice(r.lastIndexOf('@') + 1).toLowerCase())),
    ]
    const ruleHits = runRules(view, { recipientDomains: rcptDomains, now: new Date() })
    const rulesMs = performance.now() - t

    t = performance.now()
    const features = o.model ? o.model.features(raw) : new Uint32Array()
    const overlay = o.model && overlayFor ? await overlayFor(features) : undefined
    const probability = o.model ? o.model.score(features, overlay) : null
    const modelMs = performance.now() - t

    t = performance.now()
    let auth: AuthOutcome | null = null
    const netHits: Hit[] = []
    if (o.lookup) {
      const lookup = o.lookup
      const [authResult, lists] = await Promise.all([
        envelope.clientIp
          ? authenticateMessage(
              raw,
              {
                ...envelope,
                clientIp: envelope.clientIp,
                headerFrom: view.fromAddresses,
                signed: hasSignatures(view.headers),
              },
              { lookup, authservId: o.authservId },
            ).catch((err: Error) => {
              netHits.push({ name: 'AUTH_ERROR', score: 0, detail: err.message.slice(0, 200) })
              return null
            })
          : Promise.resolve(null),
        checkBlocklists(
          o.dnsbl ?? [],
          { clientIp: envelope.clientIp, linkHosts: view.links.map((l) => l.host) },
          lookup,
        ),
      ])
      auth = authResult
      if (auth) netHits.push(...auth.hits)
      netHits.push(...lists.hits)
      for (const e of lists.errors) netHits.push(hit('DNSBL_ERROR', e))
    }
    const authMs = performance.now() - t

    const hits = [...ruleHits, ...netHits]
    if (probability === null) hits.push(hit('CONTENT_MODEL_MISSING'))
    else {
      const score = round(contentScore(probability))
      hits.push({
        name: probability >= 0.5 ? 'CONTENT_SPAM' : 'CONTENT_HAM',
        score,
        detail: `p=${probability.toFixed(4)}`,
      })
    }
    const score = round(hits.reduce((sum, h) => sum + h.score, 0))
    return {
      hits,
      score,
      probability,
      features,
      auth: auth?.summary ?? null,
      authResults: auth?.header ?? null,
      view,
      timings: { parseMs, authMs, rulesMs, modelMs },
    }
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000
}
