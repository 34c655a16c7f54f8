/**
 * Ingest benchmark: the whole Moat stack in this process (ingest, scan with a real clamd, deliver),
 * a customer SMTP server (sink) on loopback, and the SMTP load generator against Moat's ingest port.
 *
 *   npx tsx load-tests/ingest-bench.ts [--count 2000] [--concurrency 20] [--size 4096]
 *     [--warmup 50] [--scan-concurrency 8] [--deliver-concurrency 16] [--loadgen process|inline]
 *     [--drain-timeout 300] [--out load-tests/results/ingest-<db>.md] [--no-save]
 *
 * Embedded PGlite by default; a real PostgreSQL when DATABASE_URL is set (a fresh database is
 * created on that server and dropped afterwards). Results go to load-tests/results/ingest-<db>.md.
 */
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { type Clamd, type Harness, type ReceivedMail, type SmtpSink, startClamd, startHarness, startSmtpSink } from './testkit'
import { fmt, type LoadOptions, type LoadResult, now, runLoad, type Summary, summarize } from './smtp-load'

const HERE = import.meta.dirname
const ROOT = path.resolve(HERE, '..')
const TO_DOMAIN = 'bench.test'

const { values: args } = parseArgs({
  options: {
    count: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '20' },
    size: { type: 'string', default: '4096' },
    warmup: { type: 'string', default: '50' },
    'scan-concurrency': { type: 'string', default: '8' },
    'deliver-concurrency': { type: 'string', default: '16' },
    loadgen: { type: 'string', default: 'process' },
    'drain-timeout': { type: 'string', default: '300' },
    out: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

function int(name: string, min: number): number {
  const v = args[name as keyof typeof args]
  const n = Number(v)
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: expected a whole number >= ${min}, got ${String(v)}`)
  return n
}

/** Arrival times at the customer's server, by X-Bench-Id (more than one = duplicate delivery). */
const arrivals = new Map<string, number[]>()

/** Makes the sink note when each message arrived, and keep only a small record of it. */
function instrument(sink: SmtpSink): void {
  const push = sink.messages.push.bind(sink.messages)
  sink.messages.push = (...items: ReceivedMail[]): number => {
    const at = now()
    for (const item of items) {
      const head = item.raw.subarray(0, Math.max(0, item.raw.indexOf('\r\n\r\n'))).toString('latin1')
      const id = /^X-Bench-Id:[ \t]*(\S+)/im.exec(head)?.[1] ?? '(none)'
      const list = arrivals.get(id)
      if (list) list.push(at)
      else arrivals.set(id, [at])
      item.raw = Buffer.alloc(0) // the body is not needed; keeps memory flat on long runs
    }
    return push(...items)
  }
}

async function waitUntil(what: string, done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!done()) {
    if (Date.now() > deadline) {
      console.error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`)
      return false
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return true
}

/** Runs the load generator in a child process, so that it does not compete for Moat's event loop. */
async function loadInChildProcess(options: LoadOptions): Promise<LoadResult> {
  const jsonFile = path.join(os.tmpdir(), `moat-bench-${process.pid}-${Date.now()}.json`)
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(HERE, 'smtp-load.ts'),
      ...['--host', options.host, '--port', String(options.port), '--count', String(options.count)],
      ...['--concurrency', String(options.concurrency), '--size', String(options.size)],
      ...['--to', options.to, '--from', options.from, '--id-prefix', options.idPrefix ?? 'run'],
      ...['--timeout', String(Math.ceil((options.timeoutMs ?? 300_000) / 1000)), '--json', jsonFile],
    ],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  )
  const limit = (options.timeoutMs ?? 300_000) + 60_000
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), limit)
    child.once('exit', (c) => {
      clearTimeout(timer)
      resolve(c)
    })
  })
  try {
    return JSON.parse(await fs.readFile(jsonFile, 'utf8')) as LoadResult
  } catch {
    throw new Error(`the load generator exited with ${code} and left no result`)
  } finally {
    await fs.rm(jsonFile, { force: true })
  }
}

function sh(cmd: string, argv: string[]): string {
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'n/a'
  }
}

function machineInfo(): Record<string, string> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const meminfo = readFileSync('/proc/meminfo', 'utf8')
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0)
  const commit = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])
  const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--', 'packages', 'services', 'migrations'])
  return {
    date: new Date().toISOString(),
    nproc: sh('nproc', []),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    clamd: sh('/usr/sbin/clamd', ['--version']),
    'moat commit': `${commit}${dirty && dirty !== 'n/a' ? ' (with uncommitted changes in packages/services)' : ''}`,
  }
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
function cpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = (f[3] ?? 0) + (f[4] ?? 0)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

function ms(s: Summary): string {
  return `p50 ${fmt(s.p50)} · p95 ${fmt(s.p95)} · p99 ${fmt(s.p99)} · max ${fmt(s.max)}`
}

async function main(): Promise<void> {
  if (args.help) {
    console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0])
    return
  }
  const count = int('count', 1)
  const concurrency = int('concurrency', 1)
  const size = int('size', 0)
  const warmup = int('warmup', 0)
  const scanConcurrency = int('scan-concurrency', 1)
  const deliverConcurrency = int('deliver-concurrency', 1)
  const drainTimeoutMs = int('drain-timeout', 1) * 1000
  if (args.loadgen !== 'process' && args.loadgen !== 'inline') throw new Error('--loadgen: process or inline')

  let clamd: Clamd | undefined
  let sink: SmtpSink | undefined
  let h: Harness | undefined
  try {
    clamd = await startClamd()
    sink = await startSmtpSink()
    instrument(sink)
    h = await startHarness({
      env: {
        MOAT_CLAMD: clamd.url,
        MOAT_LOG_LEVEL: 'warn',
        MOAT_SCAN_CONCURRENCY: String(scanConcurrency),
        MOAT_DELIVER_CONCURRENCY: String(deliverConcurrency),
      },
    })
    await h.customer({ tenant: 'bench', domain: TO_DOMAIN, destinations: [`127.0.0.1:${sink.port}:10`] })
    const dbKind = h.database.kind
    const sql = h.stack.database.sql
    let dbInfo = 'PGlite (embedded, in-memory, served on loopback in this process)'
    if (dbKind === 'postgres') {
      const [v] = await sql<{ version: string }[]>`select version()`
      const [sc] = await sql<{ synchronous_commit: string }[]>`show synchronous_commit`
      const [fsync] = await sql<{ fsync: string }[]>`show fsync`
      dbInfo = `${v?.version.split(' on ')[0]} at ${new URL(process.env.DATABASE_URL ?? '').host} (fsync=${fsync?.fsync}, synchronous_commit=${sc?.synchronous_commit})`
    }
    console.error(`moat ingest on 127.0.0.1:${h.smtpPort}, database ${dbKind}, sink on 127.0.0.1:${sink.port}`)

    const base = {
      host: '127.0.0.1',
      port: h.smtpPort,
      size,
      to: `bench@${TO_DOMAIN}`,
      from: 'loadgen@sender.test',
      timeoutMs: 300_000,
    }

    // warm-up: JIT, connection pools, clamd; not measured
    if (warmup > 0) {
      const w = await runLoad({ ...base, count: warmup, concurrency: Math.min(concurrency, warmup), idPrefix: 'warmup' })
      await waitUntil('the warm-up messages at the sink', () => arrivals.size >= w.accepted, 60_000)
      console.error(`warm-up: ${w.accepted}/${warmup} accepted and delivered`)
    }
    arrivals.clear()

    // measured run
    const elu0 = performance.eventLoopUtilization()
    const cpu0 = process.cpuUsage()
    const sys0 = cpuTimes()
    const loopDelay = monitorEventLoopDelay({ resolution: 10 })
    loopDelay.enable()
    const backlog = { scan: 0, deliver: 0 }
    let sampling = true
    const sampler = (async () => {
      // queue depth once a second, bounded by the drain timeout
      const stopAt = Date.now() + drainTimeoutMs + 600_000
      while (sampling && Date.now() < stopAt) {
        try {
          const [s, d] = await Promise.all([h?.stack.scanQueue.depth(), h?.stack.deliverQueue.depth()])
          backlog.scan = Math.max(backlog.scan, (s?.visible ?? 0) + (s?.inFlight ?? 0))
          backlog.deliver = Math.max(backlog.deliver, (d?.visible ?? 0) + (d?.inFlight ?? 0))
        } catch {
          // the database is closing
        }
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
    })()

    const runOptions: LoadOptions = { ...base, count, concurrency, idPrefix: 'run' }
    const load = args.loadgen === 'inline' ? await runLoad(runOptions) : await loadInChildProcess(runOptions)
    const acceptedIds = load.records.filter((r) => r.ok)
    const drained = await waitUntil(
      'every accepted message at the customer sink',
      () => acceptedIds.every((r) => arrivals.has(r.id)),
      drainTimeoutMs,
    )
    const drainEnd = now()
    sampling = false
    await sampler
    loopDelay.disable()
    const elu = performance.eventLoopUtilization(elu0)
    const cpu = process.cpuUsage(cpu0)
    const sys1 = cpuTimes()

    // end to end: from the end of DATA to the arrival at the customer's server
    const e2e: number[] = []
    let duplicates = 0
    let lastArrival = 0
    for (const r of acceptedIds) {
      const at = arrivals.get(r.id)
      if (!at || r.dataEndAt === null) continue
      e2e.push((at[0] as number) - r.dataEndAt)
      duplicates += at.length - 1
      lastArrival = Math.max(lastArrival, ...at)
    }
    const delivered = e2e.length
    const missing = acceptedIds.length - delivered
    const strays = [...arrivals.keys()].filter((id) => !id.startsWith('run-')).length
    const e2eSummary = summarize(e2e)
    const drainSeconds = ((lastArrival || drainEnd) - load.startedAt) / 1000
    const statuses = await sql<{ status: string; n: number }[]>`
      select status, count(*)::int as n from messages group by status order by status`
    const dead = (await h.stack.scanQueue.depth()).dead + (await h.stack.deliverQueue.depth()).dead

    const info = machineInfo()
    const command = `${process.env.DATABASE_URL ? `DATABASE_URL=${process.env.DATABASE_URL} ` : ''}npx tsx load-tests/ingest-bench.ts ${process.argv.slice(2).join(' ')}`.trim()
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    const windowSeconds = (drainEnd - load.startedAt) / 1000
    const machineBusy = (sys1.busy - sys0.busy) / Math.max(1, sys1.total - sys0.total)
    const errorLines = Object.entries(load.errorKinds).map(([k, n]) => `  - ${n} × \`${k}\``)

    const md = [
      `# Moat ingest benchmark — ${dbKind === 'pglite' ? 'embedded PGlite' : 'PostgreSQL'}`,
      '',
      `Latest run: ${info.date}. Generated by \`load-tests/ingest-bench.ts\`; see \`load-tests/README.md\` for what each figure means.`,
      '',
      '## Summary',
      '',
      '| database | messages | connections | size (bytes) | ingest msg/s | accept p50 ms | accept p99 ms | e2e p50 ms | e2e p99 ms | drain s | e2e msg/s | errors |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      `| ${dbKind} | ${count} | ${load.options.concurrency} | ${size} | ${fmt(load.messagesPerSecond)} | ${fmt(load.latency.p50)} | ${fmt(load.latency.p99)} | ${fmt(e2eSummary.p50)} | ${fmt(e2eSummary.p99)} | ${fmt(drainSeconds, 2)} | ${fmt(delivered / drainSeconds)} | ${load.errors + missing} |`,
      '',
      '## Details',
      '',
      '| measure | value |',
      '|---|---|',
      `| ingest: accepted (250) / sent | ${load.accepted} / ${count} (${load.errors} not accepted) |`,
      `| ingest: time to accept all | ${fmt(load.elapsedMs / 1000, 2)} s |`,
      `| ingest: acceptance rate | **${fmt(load.messagesPerSecond)} messages/s** |`,
      `| ingest: DATA end → 250, ms | ${ms(load.latency)} · mean ${fmt(load.latency.mean)} |`,
      `| end to end: delivered to the sink | ${delivered} of ${load.accepted} accepted (${missing} missing, ${duplicates} duplicates, ${strays} strays) |`,
      `| end to end: DATA end → arrival at the sink, ms | ${ms(e2eSummary)} · mean ${fmt(e2eSummary.mean)} |`,
      `| end to end: drain time (first connection → last arrival) | ${fmt(drainSeconds, 2)} s${drained ? '' : ' (drain timeout hit)'} |`,
      `| end to end: throughput | **${fmt(delivered / drainSeconds)} messages/s** |`,
      `| end to end: tail after the last 250 | ${fmt(((lastArrival || drainEnd) - load.finishedAt) / 1000, 2)} s |`,
      `| max queue backlog (visible + in flight, sampled 1/s) | scan ${backlog.scan} · deliver ${backlog.deliver} |`,
      `| message status in the database | ${statuses.map((s) => `${s.status} ${s.n}`).join(' · ')} (incl. ${warmup} warm-up) · dead jobs ${dead} |`,
      `| Moat process CPU (stack + database${dbKind === 'pglite' ? ' (PGlite)' : ''} + sink) | ${fmt(cpuSeconds, 2)} s over ${fmt(windowSeconds, 2)} s = ${fmt((cpuSeconds / windowSeconds) * 100, 0)} % of one core · ${fmt((cpuSeconds * 1000) / Math.max(1, delivered), 2)} ms per message |`,
      `| Moat main thread event-loop utilisation | ${fmt(elu.utilization * 100, 0)} % · loop delay p50 ${fmt(loopDelay.percentile(50) / 1e6)} ms, p99 ${fmt(loopDelay.percentile(99) / 1e6)} ms, max ${fmt(loopDelay.max / 1e6)} ms |`,
      `| whole machine CPU busy | ${fmt(machineBusy * 100, 0)} % of ${info.nproc} CPUs |`,
      ...(errorLines.length ? ['', 'Errors:', '', ...errorLines] : []),
      '',
      '## Set-up',
      '',
      '| | |',
      '|---|---|',
      `| command | \`${command}\` |`,
      `| database | ${dbInfo} |`,
      `| stack | ingest + scan + deliver in one process via \`startHarness\`; MOAT_SCAN_CONCURRENCY=${scanConcurrency}, MOAT_DELIVER_CONCURRENCY=${deliverConcurrency}, MOAT_QUEUE_POLL_MS=${h.config.queue.pollMs}, MOAT_LOG_LEVEL=warn |`,
      `| virus scan | real clamd (\`startClamd\`, one-signature database, MaxThreads 4) over TCP |`,
      `| customer server | \`startSmtpSink\` (nodemailer smtp-server) in the Moat process, one route 127.0.0.1:${sink.port} |`,
      `| load generator | \`load-tests/smtp-load.ts\` ${args.loadgen === 'inline' ? 'in the Moat process' : 'in a child process'}: ${load.options.concurrency} persistent connections, no pipelining, ${load.connectionsOpened} connections opened, ${warmup} warm-up messages first (not counted) |`,
      '',
      '## Machine',
      '',
      '| | |',
      '|---|---|',
      ...Object.entries(info).map(([k, v]) => `| ${k} | ${v} |`),
      '',
    ].join('\n')

    console.log(md)
    if (!args['no-save']) {
      const out = args.out ?? path.join(HERE, 'results', `ingest-${dbKind}.md`)
      await fs.mkdir(path.dirname(out), { recursive: true })
      await fs.writeFile(out, md)
      console.error(`saved ${path.relative(process.cwd(), out)}`)
    }
    if (!drained || load.accepted === 0) process.exitCode = 1
  } finally {
    await h?.close().catch((err: unknown) => console.error('closing the stack:', err))
    await sink?.stop().catch(() => {})
    await clamd?.stop().catch(() => {})
  }
}

main().then(
  () => {
    // pooled connections and timers must not keep a finished benchmark alive
    setTimeout(() => process.exit(), 2000).unref()
  },
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
