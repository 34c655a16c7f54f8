/**
 * Outbound relay benchmark: authenticated submission (STARTTLS + AUTH PLAIN) at a given
 * concurrency into the whole Moat stack (submission, scan with clamd and spam detection, deliver
 * with MX lookups in a loopback DNS server), delivering to two MX sinks (Postfix's `smtp-sink` on
 * 127.0.0.2 and 127.0.0.3, one port). Then, as the reference, a throwaway Postfix instance relays
 * the same load (same generator, same sinks; recipients routed by `transport_maps` instead of MX
 * lookups; no TLS and no AUTH: Postfix relays for `mynetworks`).
 *
 *   npx tsx load-tests/outbound-bench.ts [--count 1000] [--concurrency 50] [--size 4096] [--no-postfix]
 *
 * Needs root (smtp-sink -u, the Postfix instance), postfix and clamav-daemon installed.
 * Results: load-tests/results/outbound.md (overwritten: latest results).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { startStack } from '@moat/cli'
import { loadConfig } from '@moat/config'
import {
  addDomain,
  createResolver,
  createSmtpCredential,
  createTenant,
  VERIFICATION_PREFIX,
  verifyDomain,
} from '@moat/core'
import { createLogger } from '@moat/log'
import { createTestDatabase, freePort, startClamd, startDnsServer, tempDir } from '@moat/testkit'
import nodemailer from 'nodemailer'

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '50' },
    size: { type: 'string', default: '4096' },
    'no-postfix': { type: 'boolean', default: false },
    'no-moat': { type: 'boolean', default: false },
  },
})
const COUNT = Number(values.count)
const CONCURRENCY = Number(values.concurrency)
const SIZE = Number(values.size)
const HERE = import.meta.dirname

interface Sink {
  count(): number
  stop(): void
}

/** Postfix's smtp-sink on host:port, counting messages (`-c`). */
async function smtpSink(host: string, port: number): Promise<Sink> {
  const child: ChildProcess = spawn('smtp-sink', ['-u', 'nobody', '-c', `${host}:${port}`, '1024'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let last = 0
  child.stdout?.on('data', (d: Buffer) => {
    const m = d.toString().match(/mesg=(\d+)/g)
    if (m) last = Number(m.at(-1)?.slice(5))
  })
  await new Promise((r) => setTimeout(r, 300))
  return { count: () => last, stop: () => child.kill() }
}

function body(i: number, to: string, from: string): string {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: outbound bench ${i}\r\nMessage-ID: <bench-${i}@${from.split('@')[1]}>\r\nDate: ${new Date().toUTCString()}\r\nContent-Type: text/plain\r\n\r\n`
  const line = 'The quarterly figures are in the shared folder; please review them before Friday.\r\n'
  return head + line.repeat(Math.max(1, Math.ceil((SIZE - head.length) / line.length)))
}

/** Sends COUNT messages over CONCURRENCY connections; resolves with accept and delivery times. */
async function drive(options: {
  port: number
  auth?: { user: string; pass: string }
  tls: boolean
  from: string
  delivered: () => number
}): Promise<{ acceptSeconds: number; deliverSeconds: number; errors: number }> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: options.port,
    pool: true,
    maxConnections: CONCURRENCY,
    maxMessages: Number.POSITIVE_INFINITY,
    requireTLS: options.tls,
    ignoreTLS: !options.tls,
    auth: options.auth,
    tls: { rejectUnauthorized: false },
  })
  const start = performance.now()
  let next = 0
  let errors = 0
  const before = options.delivered()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (;;) {
        const i = next++
        if (i >= COUNT) return
        const to = `user${i}@${i % 2 ? 'b' : 'a'}.bench`
        await transport
          .sendMail({ envelope: { from: options.from, to: [to] }, raw: body(i, to, options.from) })
          .catch(() => errors++)
      }
    }),
  )
  const acceptSeconds = (performance.now() - start) / 1000
  transport.close()
  const deadline = Date.now() + 600_000
  while (options.delivered() - before < COUNT - errors && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20))
  return { acceptSeconds, deliverSeconds: (performance.now() - start) / 1000, errors }
}

async function runMoat(sinkPort: number, delivered: () => number) {
  const database = await createTestDatabase()
  const dns = await startDnsServer()
  const clamd = await startClamd()
  const dataDir = await tempDir('moat-outbound-bench-')
  const config = loadConfig({
    DATABASE_URL: database.url,
    MOAT_DATA_DIR: dataDir,
    MOAT_HOSTNAME: 'smtp.moat.bench',
    MOAT_SMTP_HOST: '127.0.0.1',
    MOAT_SUBMISSION_PORT: '0',
    MOAT_SUBMISSIONS_PORT: '0',
    MOAT_DNS_SERVERS: dns.address,
    MOAT_MX_HOSTS: 'mx1.moat.bench',
    MOAT_LOG_LEVEL: 'warn',
    MOAT_CLAMD: clamd.url,
    MOAT_QUEUE_POLL_MS: '50',
    MOAT_OUTBOUND_SMTP_PORT: String(sinkPort),
    MOAT_OUTBOUND_RATE_PER_MINUTE: '1000000',
    MOAT_OUTBOUND_RATE_PER_HOUR: '1000000',
    MOAT_OUTBOUND_TENANT_RATE_PER_MINUTE: '1000000',
    MOAT_OUTBOUND_TENANT_RATE_PER_HOUR: '1000000',
    MOAT_OUTBOUND_SPIKE_MIN: '1000000',
    MOAT_SCAN_CONCURRENCY: '8',
    MOAT_DELIVER_CONCURRENCY: '16',
    MOAT_SMTP_MAX_CLIENTS: '1000',
    ...(process.env.MOAT_TEST_SPAM_MODEL ? { MOAT_SPAM_MODEL: process.env.MOAT_TEST_SPAM_MODEL } : {}),
  })
  const log = createLogger({ level: config.logLevel, name: 'bench' })
  const stack = await startStack(config, { only: ['submission', 'scan', 'deliver'], log })
  try {
    const db = stack.database.db
    dns.zones.set('a.bench', { mx: [{ exchange: 'mx.a.bench', priority: 10 }] })
    dns.zones.set('mx.a.bench', { a: ['127.0.0.2'] })
    dns.zones.set('b.bench', { mx: [{ exchange: 'mx.b.bench', priority: 10 }] })
    dns.zones.set('mx.b.bench', { a: ['127.0.0.3'] })
    const tenant = await createTenant(db, { name: 'bench', actor: 'bench' })
    const domain = await addDomain(db, { tenant: tenant.id, name: 'sender.bench', actor: 'bench' })
    dns.zones.set('sender.bench', { txt: [`${VERIFICATION_PREFIX}${domain.verificationToken}`] })
    await verifyDomain(db, createResolver(config.dnsServers), {
      name: 'sender.bench',
      mxHosts: [],
      actor: 'bench',
    })
    const { username, password } = await createSmtpCredential(db, {
      tenantId: tenant.id,
      name: 'bench',
      actor: 'bench',
    })
    const port = stack.submission?.port ?? 0
    const result = await drive({
      port,
      auth: { user: username, pass: password },
      tls: true,
      from: 'bench@sender.bench',
      delivered,
    })
    return { ...result, database: database.kind }
  } finally {
    await stack.close()
    await clamd.stop()
    await dns.stop()
    await database.close()
    await fs.rm(dataDir, { recursive: true, force: true })
  }
}

async function runPostfix(sinkPort: number, delivered: () => number) {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-pf-'))
  // the postfix user must reach the data directory inside it
  await fs.chmod(tmp, 0o755)
  const pfPort = await freePort()
  await fs.mkdir(path.join(tmp, 'etc'))
  await fs.mkdir(path.join(tmp, 'queue'))
  await fs.mkdir(path.join(tmp, 'data'))
  execFileSync('chown', ['postfix', path.join(tmp, 'data')])
  await fs.writeFile(
    path.join(tmp, 'etc/main.cf'),
    `compatibility_level = 3.6
queue_directory = ${tmp}/queue
data_directory = ${tmp}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
transport_maps = inline:{ a.bench=smtp:[127.0.0.2]:${sinkPort}, b.bench=smtp:[127.0.0.3]:${sinkPort} }
maillog_file_prefixes = ${tmp}
maillog_file = ${tmp}/maillog
alias_maps =
alias_database =
smtputf8_enable = no
`,
  )
  const master = (await fs.readFile(path.join(HERE, 'postfix-baseline.sh'), 'utf8')).match(
    /cat >"\$TMP\/etc\/master.cf" <<EOF\n([\s\S]*?)\nEOF/,
  )?.[1]
  if (!master) throw new Error('master.cf template not found in postfix-baseline.sh')
  await fs.writeFile(
    path.join(tmp, 'etc/master.cf'),
    `${master.replace('$PF_PORT', String(pfPort)).replace('$TMP', tmp)}\n`,
  )
  try {
    execFileSync('postfix', ['-c', path.join(tmp, 'etc'), 'start'], { stdio: 'pipe' })
  } catch (err) {
    const log = await fs.readFile(path.join(tmp, 'maillog'), 'utf8').catch(() => '')
    const e = err as { stderr?: Buffer; stdout?: Buffer }
    throw new Error(
      `postfix did not start: ${e.stderr?.toString()} ${e.stdout?.toString()} ${log.slice(-1500)}`,
    )
  }
  try {
    await new Promise((r) => setTimeout(r, 1500))
    const result = await drive({ port: pfPort, tls: false, from: 'bench@sender.bench', delivered })
    return { ...result, version: execFileSync('postconf', ['-h', 'mail_version']).toString().trim() }
  } finally {
    execFileSync('postfix', ['-c', path.join(tmp, 'etc'), 'stop'], { stdio: 'ignore' })
    await fs.rm(tmp, { recursive: true, force: true })
  }
}

async function main() {
  const sinkPort = await freePort()
  const sinks = [await smtpSink('127.0.0.2', sinkPort), await smtpSink('127.0.0.3', sinkPort)]
  const delivered = () => sinks.reduce((n, s) => n + s.count(), 0)
  try {
    const load = `${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`
    const moat = values['no-moat']
      ? { acceptSeconds: Number.NaN, deliverSeconds: Number.NaN, errors: 0, database: 'not run' }
      : await runMoat(sinkPort, delivered)
    console.error('moat', moat)
    const postfix = values['no-postfix'] ? undefined : await runPostfix(sinkPort, delivered)
    console.error('postfix', postfix)
    const rate = (n: number, s: number) => (n / s).toFixed(0)
    const rows = [
      `| Moat (${moat.database}), STARTTLS + AUTH, clamd + spam scan, MX lookups, DKIM off | ${COUNT} | ${moat.errors} | ${moat.acceptSeconds.toFixed(1)} | ${rate(COUNT - moat.errors, moat.acceptSeconds)} | ${moat.deliverSeconds.toFixed(1)} | ${rate(COUNT - moat.errors, moat.deliverSeconds)} |`,
      ...(postfix
        ? [
            `| Postfix ${postfix.version}, plain SMTP, relay by mynetworks, transport_maps | ${COUNT} | ${postfix.errors} | ${postfix.acceptSeconds.toFixed(1)} | ${rate(COUNT - postfix.errors, postfix.acceptSeconds)} | ${postfix.deliverSeconds.toFixed(1)} | ${rate(COUNT - postfix.errors, postfix.deliverSeconds)} |`,
          ]
        : []),
    ]
    const out = [
      '# Outbound relay benchmark',
      '',
      `Command: \`npx tsx load-tests/outbound-bench.ts --count ${COUNT} --concurrency ${CONCURRENCY} --size ${SIZE}${values['no-postfix'] ? ' --no-postfix' : ''}\``,
      '',
      `${COUNT} messages of ${SIZE} bytes, one recipient each, alternating between two domains whose MX hosts are`,
      `Postfix \`smtp-sink\` on 127.0.0.2 and 127.0.0.3 (one port); ${CONCURRENCY} concurrent SMTP connections from`,
      'nodemailer (pooled, one connection per worker). *accepted/s*: messages over the time until the last `250`;',
      '*delivered/s*: messages over the time until the sinks counted every one (end to end, from the first connection).',
      '',
      '| system | messages | errors | accept s | accepted/s | deliver s | delivered/s |',
      '|---|---|---|---|---|---|---|',
      ...rows,
      '',
      'Moat ran submission, scan (8 jobs) and deliver (16 jobs) in one process; the load generator ran in the',
      'same process. Postfix had the easier job: no TLS, no AUTH, no content scan, no MX lookup.',
      '',
      '## Machine',
      '',
      `| | |`,
      '|---|---|',
      `| CPU | ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length} (shared with other work) |`,
      `| memory | ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB |`,
      `| node | ${process.version} |`,
      `| load average before | ${load} |`,
      `| date | ${new Date().toISOString()} |`,
      '',
    ].join('\n')
    await fs.mkdir(path.join(HERE, 'results'), { recursive: true })
    await fs.writeFile(path.join(HERE, 'results/outbound.md'), out)
    console.log(out)
  } finally {
    for (const s of sinks) s.stop()
  }
}

await main()
process.exit(0)
