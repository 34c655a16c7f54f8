import type { Config } from '@moat/config'
import type { Domain, EffectivePolicy, Message, MessageTrace, VerificationResult } from '@moat/core'
import type { Stack } from './stack'

/** Prints `value` as JSON, or `text()` for people. */
export function print(asJson: boolean, value: unknown, text: () => string): void {
  console.log(asJson ? JSON.stringify(value, null, 2) : text())
}

/** A plain aligned table. */
export function table(rows: Record<string, unknown>[]): string {
  if (!rows.length) return '(none)'
  const first = rows[0] ?? {}
  const keys = Object.keys(first)
  const cell = (v: unknown) =>
    v instanceof Date ? v.toISOString() : v === null || v === undefined ? '-' : String(v)
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => cell(r[k]).length)))
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(keys.map((k) => k.toUpperCase())), ...rows.map((r) => line(keys.map((k) => cell(r[k]))))].join(
    '\n',
  )
}

export function domainAdded(d: Domain, records: { txt: string; mx: string[] }): string {
  return [
    `added ${d.name} (${d.id}), pending verification`,
    '',
    "Publish these records in the domain's DNS zone:",
    '',
    `  ${records.txt}`,
    ...records.mx.map((r) => `  ${r}`),
    '',
    'The TXT record proves the domain is yours; mail is accepted once it is verified.',
    "The MX records send the domain's mail through Moat (keep your own MX at a higher",
    'preference number if Moat should be the backup MX only).',
    '',
    `then: moat domain verify ${d.name}`,
  ].join('\n')
}

export function verification(r: VerificationResult, mxHosts: string[]): string {
  const lines = [
    r.verified
      ? `${r.domain.name}: verified for tenant ${r.tenantName}${r.domain.verifiedBy === 'operator' ? ' (operator override)' : ''}`
      : `${r.domain.name}: NOT verified: ${r.reason}`,
  ]
  if (r.mx.error) lines.push(`MX: ${r.mx.error}; point it at ${mxHosts.join(', ')}`)
  else if (r.mx.pointsAtMoat)
    lines.push(`MX: points at Moat (${r.mx.hosts.join(', ')}); status ${r.domain.status}`)
  else
    lines.push(`MX: ${r.mx.hosts.join(', ') || 'none'}; does not point at Moat (${mxHosts.join(', ')}) yet`)
  if (r.verified) lines.push(`next: moat route set ${r.domain.name} mail.${r.domain.name}:25`)
  return lines.join('\n')
}

export function messageList(rows: (Message & { tenantName: string })[]): string {
  return table(
    rows.map((m) => ({
      id: m.id,
      received: m.receivedAt.toISOString().replace('T', ' ').slice(0, 19),
      status: m.status,
      score: m.spamScore === null ? '-' : m.spamScore.toFixed(1),
      tenant: m.tenantName,
      from: m.mailFrom || '<>',
      to: m.rcptTo.join(',').slice(0, 40),
      subject: (m.subject ?? '').slice(0, 40),
    })),
  )
}

export function trace(t: MessageTrace): string {
  const m = t.message
  const time = (d: Date) => d.toISOString().replace('T', ' ').slice(0, 23)
  const lines = [
    `message ${m.id}  (queue id ${m.queueId}, tenant ${m.tenantName})`,
    `  status:   ${m.status}`,
    `  from:     ${m.mailFrom || '<>'}`,
    `  to:       ${m.rcptTo.join(', ')}`,
    `  subject:  ${m.subject ?? '-'}`,
    `  size:     ${m.size} bytes`,
    `  client:   ${m.clientIp ?? '-'} (HELO ${m.clientHelo ?? '-'})`,
    `  scan:     ${m.virusScan ?? 'pending'}${m.virusName ? ` (${m.virusName})` : ''}`,
    `  spam:     ${m.spamScore === null ? '-' : `score ${m.spamScore.toFixed(2)}, ${m.action}`}`,
    '',
    'recipients:',
    ...t.recipients.map(
      (r) => `  ${r.address}  ${r.status}  attempts=${r.attempts}${r.lastReply ? `  ${r.lastReply}` : ''}`,
    ),
    '',
    'history:',
    ...t.events.map((e) => `  ${time(e.at)}  ${e.kind.padEnd(14)} ${summarize(e.kind, e.detail)}`),
  ]
  if (t.attempts.length) {
    lines.push('', 'delivery attempts:')
    for (const a of t.attempts) {
      lines.push(`  ${time(a.at)}  ${a.host}:${a.port}  ${a.outcome.padEnd(9)} ${a.durationMs}ms  ${a.reply}`)
    }
  }
  return lines.join('\n')
}

function summarize(kind: string, d: Record<string, unknown>): string {
  switch (kind) {
    case 'received':
      return `from ${d.clientIp} (${d.size} bytes${d.tls ? ', TLS' : ''})`
    case 'scanned': {
      const symbols = (d.symbols as { name: string; score: number; detail?: string }[] | undefined) ?? []
      const why = symbols
        .filter((s) => s.score !== 0 || s.detail)
        .map(
          (s) =>
            `\n      ${s.name.padEnd(30)} ${s.score >= 0 ? '+' : ''}${s.score.toFixed(2)}${s.detail ? `  ${s.detail}` : ''}`,
        )
        .join('')
      const auth = d.auth as Record<string, string> | undefined
      const authLine = auth
        ? `\n      auth: spf=${auth.spf} dkim=${auth.dkim} dmarc=${auth.dmarc} arc=${auth.arc}`
        : ''
      return `${d.action}: ${d.reason} (${d.durationMs}ms)${why}${authLine}`
    }
    case 'deferred':
      return `${d.reason}; retry #${d.attempt} at ${d.nextAttemptAt}`
    case 'delivered':
    case 'failed':
      return `${(d.recipients as string[]).join(', ')}: ${d.reply}`
    default:
      return Object.entries(d)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ')
  }
}

export function policy(p: EffectivePolicy): string {
  const show = (v: number | string | null | undefined) =>
    v === null ? 'off' : v === undefined ? '' : String(v)
  const source = (k: keyof EffectivePolicy['effective']) =>
    p.domain && k in p.domain ? 'domain' : k in p.tenant ? 'tenant' : 'default'
  const keys = ['tagThreshold', 'quarantineThreshold', 'discardThreshold', 'subjectPrefix'] as const
  return table(keys.map((k) => ({ setting: k, value: show(p.effective[k]), from: source(k) })))
}

export function startBanner(cfg: Config, stack: Stack): void {
  const db = cfg.databaseUrl
    ? 'PostgreSQL at DATABASE_URL'
    : `embedded PGlite in ${cfg.dataDir}/pglite (served on ${stack.database.url})`
  const lines = [
    '',
    `Moat is running: ${stack.running.join(', ')}`,
    stack.ingest
      ? `  SMTP (inbound MX)   ${cfg.smtp.host}:${stack.ingest.port}  STARTTLS, max ${cfg.smtp.maxMessageBytes} bytes`
      : '',
    stack.submission
      ? `  SMTP (submission)   ${cfg.smtp.host}:${stack.submission.port} STARTTLS + AUTH, ${cfg.smtp.host}:${stack.submission.securePort} implicit TLS`
      : '',
    stack.api ? `  REST API            ${stack.api.url}  (docs ${stack.api.url}/docs)` : '',
    stack.running.includes('billing')
      ? `  billing             ${cfg.billing.stripe ? `Stripe; webhooks at ${stack.billing?.url ?? '?'}/stripe/webhook${cfg.billing.stripe.webhookSecret ? '' : ' (OFF: set MOAT_STRIPE_WEBHOOK_SECRET)'}` : 'local metering only (no MOAT_STRIPE_SECRET_KEY): usage counted, nothing sent to Stripe'}`
      : '',
    `  database            ${db}`,
    `  messages stored in  ${cfg.dataDir}/objects`,
    stack.running.includes('scan')
      ? `  virus scanning      ${cfg.scan.virusScan ? (stack.clamd ?? '?') : 'OFF (MOAT_VIRUS_SCAN=off): mail is delivered unscanned'}`
      : '',
    stack.running.includes('scan')
      ? `  spam detection      ${cfg.scan.spamScan ? `model ${cfg.scan.spamModelFile}, ${cfg.scan.dnsblZones.length ? `blocklists ${cfg.scan.dnsblZones.map((z) => z.zone).join(', ')}` : 'no blocklists (MOAT_DNSBL_ZONES)'}` : 'OFF (MOAT_SPAM_SCAN=off)'}`
      : '',
    '',
    'Next, in another terminal:',
    '  npx moat tenant create acme',
    '  npx moat domain add acme example.com        # prints the DNS records to publish',
    '  npx moat domain verify example.com          # or --force to override as operator',
    '  npx moat route set example.com 127.0.0.1:2526',
    `  swaks --server 127.0.0.1:${stack.ingest?.port ?? cfg.smtp.port} --to user@example.com`,
    '  npx moat messages',
    '',
  ]
  console.log(lines.filter((l, i, a) => l !== '' || a[i - 1] !== '').join('\n'))
}
