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
import { readdirSync, readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { fmt, type LoadOptions, type LoadResult, now, runLoad, type Summary, summarize } from './smtp-load'
import {
  type Clamd,
  type Harness,
  type ReceivedMail,
  type SmtpSink,
  startClamd,
  startHarness,
  startSmtpSink,
} from './testkit'

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

function int(name: keyof typeof args, min: number): number {
  const v = args[name]
  const n = Number(v)
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name}: expected a whole number >= ${min}, got ${String(v)}`)
  return n
}

// ---------------------------------------------------------------------------------------------
// arrivals at the customer's server

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

// ---------------------------------------------------------------------------------------------
// the load generator in a child process

/**
 * Runs the load generator in a child process, so that it does not compete for Moat's event loop.
 * `onReady` runs once the child has loaded (TypeScript compiled) and before it opens a connection.
 */
async function loadInChildProcess(options: LoadOptions, onReady: () => void): Promise<LoadResult> {
  const jsonFile = path.join(os.tmpdir(), `moat-bench-${process.pid}-${Date.now()}.json`)
  const timeoutMs = options.timeoutMs ?? 300_000
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(HERE, 'smtp-load.ts'),
      ...['--host', options.host, '--port', String(options.port), '--count', String(options.count)],
      ...['--concurrency', String(options.concurrency), '--size', String(options.size)],
      ...['--to', options.to, '--from', options.from, '--id-prefix', options.idPrefix ?? 'run'],
      ...['--timeout', String(Math.ceil(timeoutMs / 1000)), '--json', jsonFile, '--go-on-stdin'],
    ],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
  )
  let ready = false
  let early = ''
  child.stdin.on('error', () => {})
  child.stdout.on('data', (d: Buffer) => {
    if (ready) {
      process.stderr.write(d) // the generator's own summary; the report goes to stdout
      return
    }
    early += d.toString()
    const at = early.indexOf('ready\n')
    if (at < 0) return
    ready = true
    onReady()
    child.stdin.write('go\n')
    process.stderr.write(early.slice(at + 6))
  })
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 120_000)
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

// ---------------------------------------------------------------------------------------------
// where the CPU went

const CLOCK_TICKS = 100 // USER_HZ; `getconf CLK_TCK` is 100 on Linux x86-64 and arm64

/** CPU seconds (user + system) of each process, by pid, with its name and parent. */
function processTimes(): Map<number, { comm: string; ppid: number; seconds: number }> {
  const out = new Map<number, { comm: string; ppid: number; seconds: number }>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const comm = stat.slice(stat.indexOf('(') + 1, close)
      const f = stat.slice(close + 2).split(' ') // f[0] is field 3 (state)
      out.set(Number(entry), {
        comm,
        ppid: Number(f[1]),
        seconds: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS,
      })
    } catch {
      // gone meanwhile
    }
  }
  return out
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
function machineTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = (f[3] ?? 0) + (f[4] ?? 0)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

interface Usage {
  windowSeconds: number
  moatCpuSeconds: number
  clamdCpuSeconds: number
  postgresCpuSeconds: number
  machineBusy: number
  eventLoopUtilization: number
  loopDelay: { p50: number; p99: number; max: number }
}

/** Starts measuring resource use; the returned function stops and reports. */
function measure(): () => Usage {
  const start = now()
  const elu = performance.eventLoopUtilization()
  const cpu = process.cpuUsage()
  const machine = machineTimes()
  const before = processTimes()
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  return () => {
    delay.disable()
    const after = processTimes()
    const m = machineTimes()
    const used = (pick: (p: { comm: string; ppid: number }) => boolean): number => {
      let sum = 0
      for (const [pid, p] of after) if (pick(p)) sum += p.seconds - (before.get(pid)?.seconds ?? 0)
      return sum
    }
    const c = process.cpuUsage(cpu)
    return {
      windowSeconds: (now() - start) / 1000,
      moatCpuSeconds: (c.user + c.system) / 1e6,
      clamdCpuSeconds: used((p) => p.comm === 'clamd' && p.ppid === process.pid),
      postgresCpuSeconds: used((p) => p.comm === 'postgres'),
      machineBusy: (m.busy - machine.busy) / Math.max(1, m.total - machine.total),
      eventLoopUtilization: performance.eventLoopUtilization(elu).utilization,
      loopDelay: { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 },
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the report

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
  const dirty = sh('git', [
    '-C',
    ROOT,
    'status',
    '--porcelain',
    '--untracked-files=no',
    '--',
    'packages',
    'services',
    'migrations',
  ])
  const dirtyFiles = dirty && dirty !== 'n/a' ? dirty.split('\n').map((l) => l.slice(3)) : []
  return {
    date: new Date().toISOString(),
    nproc: sh('nproc', []),
    'CPU model': /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    clamd: sh('/usr/sbin/clamd', ['--version']),
    'Moat commit': `${commit}${dirtyFiles.length ? ` + uncommitted changes in ${dirtyFiles.join(', ')}` : ''}`,
  }
}

function ms(s: Summary): string {
  return `p50 ${fmt(s.p50)} · p95 ${fmt(s.p95)} · p99 ${fmt(s.p99)} · max ${fmt(s.max)} · mean ${fmt(s.mean)}`
}

// ---------------------------------------------------------------------------------------------

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
  const command =
    `${process.env.DATABASE_URL ? `DATABASE_URL=${process.env.DATABASE_URL} ` : ''}npx tsx load-tests/ingest-bench.ts ${process.argv.slice(2).join(' ')}`.trim()

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
    const harness = h
    await harness.customer({
      tenant: 'bench',
      domain: TO_DOMAIN,
      destinations: [`127.0.0.1:${sink.port}:10`],
    })
    const dbKind = harness.database.kind
    const sql = harness.stack.database.sql
    let dbInfo = 'PGlite (embedded, in-memory, served over the wire protocol on loopback by this process)'
    if (dbKind === 'postgres') {
      const [v] = await sql<{ version: string }[]>`select version()`
      const [sc] = await sql<{ synchronous_commit: string }[]>`show synchronous_commit`
      const [fsync] = await sql<{ fsync: string }[]>`show fsync`
      const host = new URL(process.env.DATABASE_URL ?? 'postgres://unknown').host
      dbInfo = `${v?.version.split(' on ')[0]} at ${host}, fresh database per run (fsync=${fsync?.fsync}, synchronous_commit=${sc?.synchronous_commit})`
    }
    console.error(
      `moat ingest on 127.0.0.1:${harness.smtpPort}, database ${dbKind}, customer sink on 127.0.0.1:${sink.port}`,
    )

    const base = {
      host: '127.0.0.1',
      port: harness.smtpPort,
      size,
      to: `bench@${TO_DOMAIN}`,
      from: 'loadgen@sender.test',
      timeoutMs: 300_000,
    }

    // warm-up: JIT, connection pools, clamd; not measured
    if (warmup > 0) {
      const w = await runLoad({
        ...base,
        count: warmup,
        concurrency: Math.min(concurrency, warmup),
        idPrefix: 'warmup',
      })
      await waitUntil('the warm-up messages at the sink', () => arrivals.size >= w.accepted, 60_000)
      console.error(`warm-up: ${w.accepted}/${warmup} accepted, ${arrivals.size} delivered`)
    }
    arrivals.clear()

    // queue backlog, sampled once a second (one cheap query per queue)
    const backlog = { scan: 0, deliver: 0 }
    let sampling = true
    const sampler = (async () => {
      const stopAt = Date.now() + drainTimeoutMs + 600_000
      while (sampling && Date.now() < stopAt) {
        try {
          const [s, d] = await Promise.all([
            harness.stack.scanQueue.depth(),
            harness.stack.deliverQueue.depth(),
          ])
          backlog.scan = Math.max(backlog.scan, s.visible + s.inFlight)
          backlog.deliver = Math.max(backlog.deliver, d.visible + d.inFlight)
        } catch {
          // the database is closing
        }
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
    })()

    // the measured run
    let stopMeasuring: (() => Usage) | undefined
    const runOptions: LoadOptions = { ...base, count, concurrency, idPrefix: 'run' }
    const startMeasuring = () => {
      stopMeasuring = measure()
    }
    let load: LoadResult
    if (args.loadgen === 'inline') {
      startMeasuring()
      load = await runLoad(runOptions)
    } else {
      load = await loadInChildProcess(runOptions, startMeasuring)
    }
    const accepted = load.records.filter((r) => r.ok)
    const drained = await waitUntil(
      'every accepted message at the customer sink',
      () => accepted.every((r) => arrivals.has(r.id)),
      drainTimeoutMs,
    )
    const drainEnd = now()
    const usage = (stopMeasuring ?? measure())()
    sampling = false
    await sampler

    // end to end: from the end of DATA to the arrival at the customer's server
    const e2e: number[] = []
    let duplicates = 0
    let lastArrival = 0
    for (const r of accepted) {
      const at = arrivals.get(r.id)
      if (!at || r.dataEndAt === null) continue
      e2e.push((at[0] as number) - r.dataEndAt)
      duplicates += at.length - 1
      lastArrival = Math.max(lastArrival, ...at)
    }
    const delivered = e2e.length
    const missing = accepted.length - delivered
    const strays = [...arrivals.keys()].filter((id) => !id.startsWith('run-')).length
    const e2eSummary = summarize(e2e)
    const drainSeconds = ((lastArrival || drainEnd) - load.startedAt) / 1000
    const statuses = await sql<{ status: string; n: number }[]>`
      select status, count(*)::int as n from messages group by status order by status`
    const dead =
      (await harness.stack.scanQueue.depth()).dead + (await harness.stack.deliverQueue.depth()).dead

    const info = machineInfo()
    const pct = (seconds: number) => `${fmt((seconds / usage.windowSeconds) * 100, 0)} %`
    const perMsg = (seconds: number) => `${fmt((seconds * 1000) / Math.max(1, delivered), 2)} ms/msg`
    const loadgenSeconds = load.cpuMs / 1000
    const errorLines = Object.entries(load.errorKinds).map(([k, n]) => `- ${n} × \`${k}\``)

    const md = [
      `# Moat ingest benchmark — ${dbKind === 'pglite' ? 'embedded PGlite' : 'PostgreSQL'}`,
      '',
      `Latest run: ${info.date}. Written by \`load-tests/ingest-bench.ts\`; \`load-tests/README.md\` explains each figure.`,
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
      `| ingest: DATA end → 250, ms | ${ms(load.latency)} |`,
      `| end to end: delivered to the sink | ${delivered} of ${load.accepted} accepted (${missing} missing, ${duplicates} duplicates, ${strays} strays) |`,
      `| end to end: DATA end → arrival at the sink, ms | ${ms(e2eSummary)} |`,
      `| end to end: drain time (first connection → last arrival) | ${fmt(drainSeconds, 2)} s${drained ? '' : ' (drain timeout hit)'} |`,
      `| end to end: throughput | **${fmt(delivered / drainSeconds)} messages/s** |`,
      `| end to end: tail after the last 250 | ${fmt(((lastArrival || drainEnd) - load.finishedAt) / 1000, 2)} s |`,
      `| max queue backlog (visible + in flight, sampled 1/s) | scan ${backlog.scan} · deliver ${backlog.deliver} |`,
      `| messages in the database by status | ${statuses.map((s) => `${s.status} ${s.n}`).join(' · ')} (incl. ${warmup} warm-up) · dead jobs ${dead} |`,
      '',
      `## CPU over the measured window (${fmt(usage.windowSeconds, 2)} s)`,
      '',
      '| process | CPU s | of one core | per delivered message |',
      '|---|---:|---:|---:|',
      `| Moat (ingest + scan + deliver${dbKind === 'pglite' ? ' + PGlite' : ''} + customer sink, one Node process) | ${fmt(usage.moatCpuSeconds, 2)} | ${pct(usage.moatCpuSeconds)} | ${perMsg(usage.moatCpuSeconds)} |`,
      `| clamd | ${fmt(usage.clamdCpuSeconds, 2)} | ${pct(usage.clamdCpuSeconds)} | ${perMsg(usage.clamdCpuSeconds)} |`,
      ...(dbKind === 'postgres'
        ? [
            `| PostgreSQL (all postgres processes) | ${fmt(usage.postgresCpuSeconds, 2)} | ${pct(usage.postgresCpuSeconds)} | ${perMsg(usage.postgresCpuSeconds)} |`,
          ]
        : []),
      `| load generator (during its run, ${fmt(load.elapsedMs / 1000, 2)} s) | ${fmt(loadgenSeconds, 2)} | ${fmt((loadgenSeconds / (load.elapsedMs / 1000)) * 100, 0)} % | ${perMsg(loadgenSeconds)} |`,
      `| whole machine, busy | | ${fmt(usage.machineBusy * 100, 0)} % of ${info.nproc} CPUs | |`,
      '',
      `Moat main thread: event-loop utilisation ${fmt(usage.eventLoopUtilization * 100, 0)} %, event-loop delay p50 ${fmt(usage.loopDelay.p50)} ms, p99 ${fmt(usage.loopDelay.p99)} ms, max ${fmt(usage.loopDelay.max)} ms.`,
      ...(errorLines.length ? ['', '## Errors', '', ...errorLines] : []),
      '',
      '## Set-up',
      '',
      '| | |',
      '|---|---|',
      `| command | \`${command}\` (from the repository root) |`,
      `| database | ${dbInfo} |`,
      `| stack | ingest + scan + deliver in one process via \`startHarness\`; MOAT_SCAN_CONCURRENCY=${scanConcurrency}, MOAT_DELIVER_CONCURRENCY=${deliverConcurrency}, MOAT_QUEUE_POLL_MS=${harness.config.queue.pollMs}, MOAT_LOG_LEVEL=warn, objects under a temporary directory (fsync on) |`,
      '| virus scan | real clamd (`startClamd`: one-signature database, MaxThreads 4) over loopback TCP |',
      `| customer server | \`startSmtpSink\` (nodemailer smtp-server) in the Moat process; the domain has one route, 127.0.0.1:${sink.port} |`,
      `| load generator | \`load-tests/smtp-load.ts\` ${args.loadgen === 'inline' ? 'in the Moat process' : 'in a child process'}: ${load.options.concurrency} persistent connections (${load.connectionsOpened} opened), no pipelining, one recipient per message; ${warmup} warm-up messages first, not counted |`,
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
