/**
 * Scan-stage benchmark: Moat's spam detection alone (MIME parsing with mailparser, SPF/DKIM/DMARC/ARC
 * through mailauth against a DNS server on loopback, one IP and one domain blocklist zone, the
 * heuristics and the content model) over the SpamAssassin public corpus, on one thread. ClamAV and
 * the database are excluded. Prints messages per second per core and where the time goes.
 *
 *   npx tsx load-tests/scan-bench.ts [--limit N] [--passes N] [--offline]
 *
 * `--offline` skips authentication and blocklists (what `npm run eval` measures).
 */
import os from 'node:os'
import { parseArgs } from 'node:util'
import { loadSpamAssassin, trainModel } from '@moat/classifier'
import { createResolver } from '@moat/core'
import { ContentModel, cachedLookup, Detector } from '@moat/detect'
import { startDnsServer } from '@moat/testkit'

const { values: args } = parseArgs({
  options: {
    limit: { type: 'string' },
    passes: { type: 'string', default: '2' },
    offline: { type: 'boolean', default: false },
  },
})
const corpus = loadSpamAssassin().slice(0, args.limit ? Number(args.limit) : undefined)
const model = new ContentModel(trainModel(corpus))

const dns = await startDnsServer()
// a few real-looking records so that SPF and DMARC do real work, the rest answer NXDOMAIN
dns.zones.set('example.com', { txt: ['v=spf1 ip4:192.0.2.0/24 -all'] })
dns.zones.set('_dmarc.example.com', { txt: ['v=DMARC1; p=reject'] })
dns.zones.set('2.0.0.127.bl.test', { a: ['127.0.0.2'] })
const lookup = cachedLookup(createResolver([dns.address]))
const detector = new Detector({
  model,
  lookup: args.offline ? undefined : lookup,
  authservId: 'mx.moat.test',
  dnsbl: [
    { zone: 'bl.test', type: 'ip', symbol: 'RBL_TEST', score: 3 },
    { zone: 'dbl.test', type: 'domain', symbol: 'DBL_TEST', score: 3 },
  ],
})

function envelopeOf(raw: Buffer, i: number) {
  const head = raw.toString('latin1', 0, Math.min(raw.length, 8192))
  const from = /^(?:Return-Path|From):.*?<?([^\s<>]+@[^\s<>]+)>?/im.exec(head)?.[1] ?? ''
  return {
    mailFrom: from,
    rcptTo: ['user@customer.test'],
    clientIp: `198.51.100.${i % 250}`,
    helo: 'mail.sender.test',
  }
}

const passes = Number(args.passes)
const totals = { parseMs: 0, authMs: 0, rulesMs: 0, modelMs: 0 }
let scanned = 0
let ms = 0
for (let pass = 0; pass < passes; pass++) {
  // the first pass warms the JIT and the DNS cache; only the last pass is reported
  const t = performance.now()
  let n = 0
  for (const [i, m] of corpus.entries()) {
    const raw = Buffer.isBuffer(m.raw) ? m.raw : Buffer.from(m.raw, 'latin1')
    const a = await detector.analyze(raw, envelopeOf(raw, i))
    n++
    if (pass === passes - 1)
      for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += a.timings[k]
  }
  ms = performance.now() - t
  scanned = n
}
await dns.stop()
const perSecond = scanned / (ms / 1000)
const result = {
  kind: 'scan stage, one thread',
  mode: args.offline ? 'offline (no DNS checks)' : 'full (auth + blocklists via loopback DNS)',
  messages: scanned,
  seconds: Number((ms / 1000).toFixed(2)),
  messagesPerSecondPerCore: Math.round(perSecond),
  meanMsPerMessage: Number((ms / scanned).toFixed(3)),
  stageMsPerMessage: Object.fromEntries(
    Object.entries(totals).map(([k, v]) => [k.replace(/Ms$/, ''), Number((v / scanned).toFixed(3))]),
  ),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
}
process.stdout.write(
  `scanned ${scanned} messages in ${result.seconds} s: ${result.messagesPerSecondPerCore} msgs/s on one core\n`,
)
process.stdout.write(`${JSON.stringify(result)}\n`)
