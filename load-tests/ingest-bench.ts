/**
 * Ingest benchmark: the whole Moat stack in this process (ingest, scan with a real clamd, deliver),
 * a customer SMTP server (sink) on loopback, and the SMTP load generator against Moat's ingest port.
 *
 *   npx tsx load-tests/ingest-bench.ts [--count 2000] [--concurrency 20] [--size 4096]
 *     [--warmup 50] [--scan-concurrency 8] [--deliver-concurrency 16] [--loadgen process|inline]
 *     [--drain-timeout 300] [--quiet-wait 60] [--ingest-only | --split]
 *     [--out load-tests/results/ingest-<db>.md] [--no-save]
 *
 * Embedded PGlite by default; a real PostgreSQL when DATABASE_URL is set (a fresh database is
 * created on that server and dropped afterwards). Results go to load-tests/results/ingest-<db>.md.
 *
 * --split: only ingest runs in this process; scan + deliver run in one child process
 * (`node services/cli/bin/moat.js start --only scan,deliver`) on the same database and data
 * directory. Results go to load-tests/results/ingest-<db>-split.md.
 */
import { execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import {
  type Clamd,
  type Harness,
  type ReceivedMail,
  type SmtpSink,
  startClamd,
  startHarness,
  startSmtpSink,
} from '@moat/testkit'
import { fmt, type LoadOptions, type LoadResult, now, runLoad, type Summary, summarize } from './smtp-load'

const HERE = import.meta.dirname
const ROOT = path.resolve(HERE, '..')
const TO_DOMAIN = 'bench.test'
/** set: a real PostgreSQL server (startHarness creates a fresh database on it); unset: embedded PGlite */
const DATABASE_URL = process.env.DATABASE_URL

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
    'quiet-wait': { type: 'string', default: '60' },
    out: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    'ingest-only': { type: 'boolean', default: false },
    split: { type: 'boolean', default: false },
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
// --split: scan + deliver in a child process

const MOAT_CLI = path.join(ROOT, 'services', 'cli', 'bin', 'moat.js')
/** the child's graceful stop: its workers get up to 30 s to finish their jobs */
const CHILD_STOP_MS = 40_000

interface ScanDeliverChild {
  pid: number
  /** set once the child has exited, with how */
  exited: string | undefined
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` */
  stop(graceMs: number): Promise<void>
  /** SIGKILL now (error paths); synchronous, safe to call at any time */
  kill(): void
}

/**
 * Starts `moat start --only scan,deliver` in a child process and resolves once it has printed its
 * start banner ("Moat is running: scan, deliver"). Its log lines go to stderr, prefixed.
 */
async function startScanDeliverChild(
  env: Record<string, string>,
  timeoutMs: number,
): Promise<ScanDeliverChild> {
  const child = spawn(process.execPath, [MOAT_CLI, 'start', '--only', 'scan,deliver'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (child.pid === undefined) throw new Error(`could not start ${MOAT_CLI}`)
  const pid = child.pid
  let exited: string | undefined
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = signal ? `signal ${signal}` : `exit code ${code}`
      resolve()
    })
    child.once('error', (err) => {
      exited ??= `spawn error: ${err.message}`
      resolve()
    })
  })
  const kill = () => {
    if (exited === undefined) child.kill('SIGKILL')
  }
  // a benchmark that dies for any reason must not leave the child running
  const onSignal = (signal: NodeJS.Signals) => {
    kill()
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  const unhook = () => {
    process.removeListener('exit', kill)
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
  process.once('exit', kill)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const forward = (line: string) => {
    if (line.trim()) process.stderr.write(`[scan+deliver ${pid}] ${line}\n`)
  }
  let banner = false
  let ready: () => void = () => {}
  const readyPromise = new Promise<void>((resolve) => {
    ready = resolve
  })
  let outBuffer = ''
  child.stdout.on('data', (d: Buffer) => {
    outBuffer += d.toString()
    const lines = outBuffer.split('\n')
    outBuffer = lines.pop() ?? ''
    for (const line of lines) {
      if (!banner && line.startsWith('Moat is running:')) {
        banner = true
        forward(line)
        ready()
      } else if (line.startsWith('{')) forward(line) // pino's JSON log lines; the rest is the banner
    }
  })
  let errBuffer = ''
  child.stderr.on('data', (d: Buffer) => {
    errBuffer += d.toString()
    const lines = errBuffer.split('\n')
    errBuffer = lines.pop() ?? ''
    for (const line of lines) forward(line)
  })
  const handle: ScanDeliverChild = {
    pid,
    get exited() {
      return exited
    },
    async stop(graceMs) {
      if (exited === undefined) {
        child.kill('SIGTERM')
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          exit,
          new Promise<void>((resolve) => {
            timer = setTimeout(() => {
              console.error(`the scan + deliver child did not stop within ${graceMs / 1000}s: SIGKILL`)
              kill()
              resolve()
            }, graceMs)
          }),
        ])
        clearTimeout(timer)
        await exit
      }
      unhook()
    },
    kill,
  }
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([
    readyPromise.then(() => 'ready' as const),
    exit.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs)
    }),
  ])
  clearTimeout(timer)
  if (outcome !== 'ready') {
    kill()
    await exit
    unhook()
    throw new Error(
      outcome === 'exited'
        ? `the scan + deliver child exited before it was ready (${exited})`
        : `the scan + deliver child was not ready within ${timeoutMs / 1000}s`,
    )
  }
  return handle
}

/**
 * The customer sink (`startSmtpSink`) has no 'error' listener, so a connection reset by its client
 * is an uncaught exception. In one process that cannot happen; with --split the deliver worker is
 * another process, and when that dies (or gets SIGKILL on an error path) its connections are cut.
 * Such resets are reported and ignored; any other uncaught exception ends the bench as before.
 */
function survivePeerResets(): void {
  process.on('uncaughtException', (err: Error & { code?: string; meta?: { protocol?: string } }) => {
    if (err?.meta?.protocol === 'smtp' && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
      console.error(`customer sink: a connection was cut (${err.code}); the scan + deliver child died?`)
      return
    }
    console.error(err)
    process.exit(1)
  })
}

/** CPU seconds (user + system) of one thread, from /proc/<pid>/task/<tid>/stat; NaN if gone. */
function threadSeconds(pid: number, tid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS
  } catch {
    return Number.NaN
  }
}

// ---------------------------------------------------------------------------------------------
// where the CPU went

const LOOP_SAMPLE_MS = 10
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
  /** --split: the scan + deliver child process (all its threads), and its main thread alone */
  childCpuSeconds: number
  childMainThreadCpuSeconds: number
  clamdCpuSeconds: number
  postgresCpuSeconds: number
  machineBusy: number
  cpus: number
  eventLoopUtilization: number
  loopDelay: { p50: number; p99: number; max: number }
}

/**
 * Waits (up to `maxSeconds`) until the machine is nearly idle, so that other work on it does not
 * skew the run. Returns the busy share of the last one-second sample and how long it waited.
 */
async function waitForQuiet(
  maxSeconds: number,
): Promise<{ busy: number; waitedSeconds: number; loadavg: string }> {
  const started = Date.now()
  let busy = 1
  for (let i = 0; i < Math.max(1, maxSeconds); i++) {
    const a = machineTimes()
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const b = machineTimes()
    busy = (b.busy - a.busy) / Math.max(1, b.total - a.total)
    if (busy < QUIET_BUSY) break
  }
  const loadavg = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')
  return { busy, waitedSeconds: (Date.now() - started) / 1000, loadavg }
}
const QUIET_BUSY = 0.15

/**
 * Starts measuring resource use; the returned function stops and reports. `childPid`: the
 * --split scan + deliver process, measured on its own.
 */
function measure(childPid?: number): () => Usage {
  const start = now()
  const elu = performance.eventLoopUtilization()
  const cpu = process.cpuUsage()
  const machine = machineTimes()
  const before = processTimes()
  const childMainBefore = childPid === undefined ? 0 : threadSeconds(childPid, childPid)
  const delay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS })
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
    const childAfter = childPid === undefined ? undefined : after.get(childPid)
    const childBefore = childPid === undefined ? undefined : before.get(childPid)
    return {
      windowSeconds: (now() - start) / 1000,
      moatCpuSeconds: (c.user + c.system) / 1e6,
      childCpuSeconds:
        childPid === undefined
          ? 0
          : (childAfter?.seconds ?? Number.NaN) - (childBefore?.seconds ?? Number.NaN),
      childMainThreadCpuSeconds:
        childPid === undefined ? 0 : threadSeconds(childPid, childPid) - childMainBefore,
      clamdCpuSeconds: used((p) => p.comm === 'clamd' && p.ppid === process.pid),
      postgresCpuSeconds: used((p) => p.comm === 'postgres'),
      machineBusy: (m.busy - machine.busy) / Math.max(1, m.total - machine.total),
      cpus: os.cpus().length,
      eventLoopUtilization: performance.eventLoopUtilization(elu).utilization,
      // the histogram holds whole timer intervals; the lag is what exceeds the sampling interval
      loopDelay: {
        p50: Math.max(0, delay.percentile(50) / 1e6 - LOOP_SAMPLE_MS),
        p99: Math.max(0, delay.percentile(99) / 1e6 - LOOP_SAMPLE_MS),
        max: Math.max(0, delay.max / 1e6 - LOOP_SAMPLE_MS),
      },
    }
  }
}

// ---------------------------------------------------------------------------------------------
// pipeline stages, from what Moat records

/**
 * Per message of the measured run, from Moat's own records: `received_at` (when DATA began),
 * the `scanned` event (written in the scan transaction, whose `now()` is taken just after clamd
 * answered; its detail has clamd's `durationMs`), the delivery attempt's `duration_ms` and the
 * `delivered` event (transaction started just after the customer's 250).
 */
async function stageBreakdown(
  sql: Harness['stack']['database']['sql'],
): Promise<{ stage: string; s: Summary }[]> {
  const rows = await sql<
    {
      received: Date
      scanned: Date | null
      scan_ms: number | null
      smtp_ms: number | null
      delivered: Date | null
    }[]
  >`
    select m.received_at as received,
           s.at as scanned, (s.detail->>'durationMs')::float8 as scan_ms,
           a.duration_ms::float8 as smtp_ms,
           d.at as delivered
    from messages m
    left join lateral (select at, detail from message_events where message_id = m.id and kind = 'scanned' order by id limit 1) s on true
    left join lateral (select at from message_events where message_id = m.id and kind = 'delivered' order by id limit 1) d on true
    left join lateral (select duration_ms from delivery_attempts where message_id = m.id order by id limit 1) a on true
    where m.subject like 'load test run-%'`
  const t = (d: Date | null) => (d ? new Date(d).getTime() : Number.NaN)
  const col = (f: (r: (typeof rows)[number]) => number) =>
    summarize(rows.map(f).filter((v) => Number.isFinite(v)))
  return [
    {
      stage: 'DATA start → scanned, minus the scan (waiting in the scan queue)',
      s: col((r) => t(r.scanned) - t(r.received) - (r.scan_ms ?? 0)),
    },
    { stage: 'clamd scan (INSTREAM, new connection each)', s: col((r) => r.scan_ms ?? Number.NaN) },
    {
      stage: 'scanned → delivered, minus SMTP (scan commit + waiting in the deliver queue)',
      s: col((r) => t(r.delivered) - t(r.scanned) - (r.smtp_ms ?? 0)),
    },
    { stage: 'SMTP to the customer server (pooled connection)', s: col((r) => r.smtp_ms ?? Number.NaN) },
    { stage: 'DATA start → delivered (total inside Moat)', s: col((r) => t(r.delivered) - t(r.received)) },
  ]
}

// ---------------------------------------------------------------------------------------------
// database work per message (PostgreSQL only)

interface DbCounters {
  commits: number
  inserted: number
  updated: number
  deleted: number
}

/** This database's transaction and row counters from pg_stat_database (PostgreSQL; not PGlite). */
async function dbCounters(sql: Harness['stack']['database']['sql']): Promise<DbCounters | undefined> {
  try {
    const [row] = await sql<{ commits: string; inserted: string; updated: string; deleted: string }[]>`
      select xact_commit as commits, tup_inserted as inserted, tup_updated as updated, tup_deleted as deleted
      from pg_stat_database where datname = current_database()`
    if (!row) return undefined
    return {
      commits: Number(row.commits),
      inserted: Number(row.inserted),
      updated: Number(row.updated),
      deleted: Number(row.deleted),
    }
  } catch {
    return undefined
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
  /** only the ingest service runs: acceptance alone, nothing is scanned or delivered */
  const ingestOnly = args['ingest-only']
  /** ingest in this process, scan + deliver in one child process (`moat start --only scan,deliver`) */
  const split = args.split
  if (split && ingestOnly) throw new Error('--split and --ingest-only exclude each other')
  if (args.loadgen !== 'process' && args.loadgen !== 'inline') throw new Error('--loadgen: process or inline')
  const command =
    `${DATABASE_URL ? `DATABASE_URL=${DATABASE_URL} ` : ''}npx tsx load-tests/ingest-bench.ts ${process.argv.slice(2).join(' ')}`.trim()

  let clamd: Clamd | undefined
  let sink: SmtpSink | undefined
  let h: Harness | undefined
  let child: ScanDeliverChild | undefined
  let finished = false
  try {
    clamd = await startClamd()
    sink = await startSmtpSink()
    instrument(sink)
    const stackEnv = {
      MOAT_CLAMD: clamd.url,
      MOAT_LOG_LEVEL: 'warn',
      MOAT_SCAN_CONCURRENCY: String(scanConcurrency),
      MOAT_DELIVER_CONCURRENCY: String(deliverConcurrency),
    }
    h = await startHarness({
      ...(ingestOnly || split ? { only: ['ingest' as const] } : {}),
      env: stackEnv,
    })
    const harness = h
    await harness.customer({
      tenant: 'bench',
      domain: TO_DOMAIN,
      destinations: [`127.0.0.1:${sink.port}:10`],
    })
    if (split) {
      survivePeerResets()
      // harness.env: DATABASE_URL of the fresh database, the shared MOAT_DATA_DIR, DNS, poll interval
      child = await startScanDeliverChild({ ...harness.env, ...stackEnv }, 120_000)
      console.error(`scan + deliver: child process ${child.pid} is running`)
    }
    const scanDeliver = child
    /** true (and says so) when the --split child has died: nothing more will be delivered */
    const childDied = (): boolean => {
      if (scanDeliver?.exited === undefined) return false
      console.error(`the scan + deliver child process ended (${scanDeliver.exited})`)
      return true
    }
    const dbKind = harness.database.kind
    const sql = harness.stack.database.sql
    let dbInfo = `PGlite (embedded, in-memory, served over the wire protocol on loopback by this process${split ? '; the scan + deliver child reaches it through that loopback server' : ''})`
    if (dbKind === 'postgres') {
      const [v] = await sql<{ version: string }[]>`select version()`
      const [sc] = await sql<{ synchronous_commit: string }[]>`show synchronous_commit`
      const [fsync] = await sql<{ fsync: string }[]>`show fsync`
      const host = new URL(DATABASE_URL ?? 'postgres://unknown').host
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
      if (!ingestOnly) {
        await waitUntil(
          'the warm-up messages at the sink',
          () => arrivals.size >= w.accepted || childDied(),
          60_000,
        )
        if (scanDeliver?.exited !== undefined)
          throw new Error('the scan + deliver child died during the warm-up')
        if (arrivals.size === 0 && sink.messages.length > 0) {
          throw new Error(
            'the customer sink received mail but the arrival hook saw none (startSmtpSink changed?)',
          )
        }
      }
      console.error(`warm-up: ${w.accepted}/${warmup} accepted, ${arrivals.size} delivered`)
    }
    arrivals.clear()
    const quiet = await waitForQuiet(int('quiet-wait', 0))
    if (quiet.busy >= QUIET_BUSY) {
      console.error(
        `the machine is busy (${fmt(quiet.busy * 100, 0)} % of all CPUs) with other work; running anyway`,
      )
    }

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
    const t0 = now()
    const progress = (what: string) => console.error(`[${fmt((now() - t0) / 1000, 2)} s] ${what}`)
    let countersBefore: Promise<DbCounters | undefined> = Promise.resolve(undefined)
    const startMeasuring = () => {
      progress('load generator ready; measuring')
      stopMeasuring = measure(scanDeliver?.pid)
      if (dbKind === 'postgres') countersBefore = dbCounters(sql)
    }
    let load: LoadResult
    if (args.loadgen === 'inline') {
      startMeasuring()
      load = await runLoad(runOptions)
    } else {
      load = await loadInChildProcess(runOptions, startMeasuring)
    }
    progress(`load done: ${load.accepted} accepted${ingestOnly ? '' : '; waiting for the customer sink'}`)
    const accepted = load.records.filter((r) => r.ok)
    const drained =
      ingestOnly ||
      ((await waitUntil(
        'every accepted message at the customer sink',
        () => accepted.every((r) => arrivals.has(r.id)) || childDied(),
        drainTimeoutMs,
      )) &&
        scanDeliver?.exited === undefined)
    const drainEnd = now()
    progress(`${arrivals.size} arrived at the customer sink`)
    const usage = (stopMeasuring ?? measure(scanDeliver?.pid))()
    sampling = false
    await sampler
    // PostgreSQL publishes a backend's counters within about a second
    let dbWork: { before: DbCounters; after: DbCounters } | undefined
    if (dbKind === 'postgres') {
      const before = await countersBefore
      await new Promise((resolve) => setTimeout(resolve, 1500))
      const after = await dbCounters(sql)
      if (before && after) dbWork = { before, after }
    }

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
    const missing = ingestOnly ? 0 : accepted.length - delivered
    const strays = [...arrivals.keys()].filter((id) => !id.startsWith('run-')).length
    const e2eSummary = summarize(e2e)
    const drainSeconds = ingestOnly ? Number.NaN : ((lastArrival || drainEnd) - load.startedAt) / 1000
    const statuses = await sql<{ status: string; n: number }[]>`
      select status, count(*)::int as n from messages group by status order by status`
    const stages = ingestOnly ? [] : await stageBreakdown(sql)
    const dead =
      (await harness.stack.scanQueue.depth()).dead + (await harness.stack.deliverQueue.depth()).dead

    const info = machineInfo()
    const pct = (seconds: number) => `${fmt((seconds / usage.windowSeconds) * 100, 0)} %`
    const perMsg = (seconds: number) =>
      `${fmt((seconds * 1000) / Math.max(1, ingestOnly ? load.accepted : delivered), 2)} ms/msg`
    const perCount = (n: number) => fmt(n / Math.max(1, ingestOnly ? load.accepted : delivered), 1)
    const loadgenSeconds = load.cpuMs / 1000
    const machineSeconds = usage.machineBusy * usage.windowSeconds * usage.cpus
    const otherSeconds = Math.max(
      0,
      machineSeconds -
        usage.moatCpuSeconds -
        (Number.isFinite(usage.childCpuSeconds) ? usage.childCpuSeconds : 0) -
        usage.clamdCpuSeconds -
        usage.postgresCpuSeconds -
        (args.loadgen === 'inline' ? 0 : loadgenSeconds), // inline: already in the Moat process's CPU
    )
    const errorLines = Object.entries(load.errorKinds).map(([k, n]) => `- ${n} × \`${k}\``)

    const md = [
      `# Moat ingest benchmark — ${dbKind === 'pglite' ? 'embedded PGlite' : 'PostgreSQL'}${ingestOnly ? ', ingest service only' : ''}${split ? ', split: ingest in the bench process, scan + deliver in a child process' : ''}`,
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
      ...(ingestOnly
        ? ['| end to end | not measured: --ingest-only runs no scan and no delivery |']
        : [
            `| end to end: delivered to the sink | ${delivered} of ${load.accepted} accepted (${missing} missing, ${duplicates} duplicates, ${strays} strays) |`,
            `| end to end: DATA end → arrival at the sink, ms | ${ms(e2eSummary)} |`,
            `| end to end: drain time (first connection → last arrival) | ${fmt(drainSeconds, 2)} s${drained ? '' : scanDeliver?.exited !== undefined ? ` (the scan + deliver child ended early: ${scanDeliver.exited})` : ' (drain timeout hit)'} |`,
            `| end to end: throughput | **${fmt(delivered / drainSeconds)} messages/s** |`,
            `| end to end: tail after the last 250 | ${fmt(((lastArrival || drainEnd) - load.finishedAt) / 1000, 2)} s |`,
          ]),
      `| max queue backlog (visible + in flight, sampled 1/s) | scan ${backlog.scan} · deliver ${backlog.deliver} |`,
      `| messages in the database by status | ${statuses.map((s) => `${s.status} ${s.n}`).join(' · ')} (incl. ${warmup} warm-up) · dead jobs ${dead} |`,
      '',
      ...(ingestOnly
        ? []
        : [
            '## Where the time goes (from the database records of the measured messages, ms)',
            '',
            '| stage | p50 | p95 | p99 | max |',
            '|---|---:|---:|---:|---:|',
            ...stages.map(
              ({ stage, s }) =>
                `| ${stage} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.p99)} | ${fmt(s.max)} |`,
            ),
            '',
          ]),
      `## CPU over the measured window (${fmt(usage.windowSeconds, 2)} s)`,
      '',
      `| process | CPU s | of one core | per ${ingestOnly ? 'accepted' : 'delivered'} message |`,
      '|---|---:|---:|---:|',
      ...(split
        ? [
            `| Moat ingest (bench process) — with the customer sink${dbKind === 'pglite' ? ' and PGlite' : ''} in it | ${fmt(usage.moatCpuSeconds, 2)} | ${pct(usage.moatCpuSeconds)} | ${perMsg(usage.moatCpuSeconds)} |`,
            `| Moat scan + deliver (child process) | ${fmt(usage.childCpuSeconds, 2)} | ${pct(usage.childCpuSeconds)} | ${perMsg(usage.childCpuSeconds)} |`,
          ]
        : [
            `| Moat (${ingestOnly ? 'ingest' : 'ingest + scan + deliver'}${dbKind === 'pglite' ? ' + PGlite' : ''} + customer sink, one Node process) | ${fmt(usage.moatCpuSeconds, 2)} | ${pct(usage.moatCpuSeconds)} | ${perMsg(usage.moatCpuSeconds)} |`,
          ]),
      `| clamd | ${fmt(usage.clamdCpuSeconds, 2)} | ${pct(usage.clamdCpuSeconds)} | ${perMsg(usage.clamdCpuSeconds)} |`,
      ...(dbKind === 'postgres'
        ? [
            `| PostgreSQL (all postgres processes) | ${fmt(usage.postgresCpuSeconds, 2)} | ${pct(usage.postgresCpuSeconds)} | ${perMsg(usage.postgresCpuSeconds)} |`,
          ]
        : []),
      `| load generator (during its run, ${fmt(load.elapsedMs / 1000, 2)} s${args.loadgen === 'inline' ? `; inside the ${split ? 'bench' : 'Moat'} process, counted there too` : ''}) | ${fmt(loadgenSeconds, 2)} | ${fmt((loadgenSeconds / (load.elapsedMs / 1000)) * 100, 0)} % | ${perMsg(loadgenSeconds)} |`,
      `| other processes on the machine (not part of the benchmark; should be near 0) | ${fmt(otherSeconds, 2)} | ${pct(otherSeconds)} | |`,
      `| whole machine, busy | ${fmt(machineSeconds, 2)} | ${fmt(usage.machineBusy * 100, 0)} % of ${info.nproc} CPUs | |`,
      '',
      ...(dbWork
        ? [
            `PostgreSQL work per ${ingestOnly ? 'accepted' : 'delivered'} message (pg_stat_database, read 1.5 s after the run${ingestOnly ? '' : `; includes the queues' idle polling, about ${Math.round((2 * 2 * 1000) / harness.config.queue.pollMs)} transactions/s`}): ${perCount(dbWork.after.commits - dbWork.before.commits)} committed transactions, rows inserted ${perCount(dbWork.after.inserted - dbWork.before.inserted)} · updated ${perCount(dbWork.after.updated - dbWork.before.updated)} · deleted ${perCount(dbWork.after.deleted - dbWork.before.deleted)}.`,
            '',
          ]
        : []),
      `Before the run the machine was ${fmt(quiet.busy * 100, 0)} % busy (waited ${fmt(quiet.waitedSeconds, 0)} s for it to drop below ${QUIET_BUSY * 100} %; load average then ${quiet.loadavg}).`,
      '',
      `${split ? 'Bench process (Moat ingest)' : 'Moat'} main thread: event-loop utilisation ${fmt(usage.eventLoopUtilization * 100, 0)} %; event-loop lag p50 ${fmt(usage.loopDelay.p50)} ms, p99 ${fmt(usage.loopDelay.p99)} ms, max ${fmt(usage.loopDelay.max)} ms.`,
      ...(split
        ? [
            '',
            `Scan + deliver child, main thread alone (\`/proc/<pid>/task/<pid>/stat\`; near 100 % = that thread is the bottleneck): ${fmt(usage.childMainThreadCpuSeconds, 2)} CPU s, ${pct(usage.childMainThreadCpuSeconds)} of the window.`,
          ]
        : []),
      ...(errorLines.length ? ['', '## Errors', '', ...errorLines] : []),
      '',
      '## Set-up',
      '',
      '| | |',
      '|---|---|',
      `| command | \`${command}\` (from the repository root) |`,
      `| database | ${dbInfo} |`,
      `| stack | ${split ? `two processes on the same database and data directory: ingest in the bench process via \`startHarness({ only: ['ingest'] })\`; scan + deliver in one child process, \`node services/cli/bin/moat.js start --only scan,deliver\`, with the harness's environment` : `${ingestOnly ? 'ingest only (no scan, no delivery)' : 'ingest + scan + deliver'} in one process via \`startHarness\``}; MOAT_SCAN_CONCURRENCY=${scanConcurrency}, MOAT_DELIVER_CONCURRENCY=${deliverConcurrency}, MOAT_QUEUE_POLL_MS=${harness.config.queue.pollMs}, MOAT_LOG_LEVEL=warn, objects under a temporary directory (fsync on) |`,
      '| virus scan | real clamd (`startClamd`: one-signature database, MaxThreads 4) over loopback TCP |',
      `| customer server | \`startSmtpSink\` (nodemailer smtp-server) in the ${split ? 'bench (ingest)' : 'Moat'} process; the domain has one route, 127.0.0.1:${sink.port} |`,
      `| load generator | \`load-tests/smtp-load.ts\` ${args.loadgen === 'inline' ? `in the ${split ? 'bench (ingest)' : 'Moat'} process` : 'in a child process'}: ${load.options.concurrency} persistent connections (${load.connectionsOpened} opened), no pipelining, one recipient per message; ${warmup} warm-up messages first, not counted |`,
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
      const out =
        args.out ??
        path.join(
          HERE,
          'results',
          `ingest-${dbKind}${ingestOnly ? '-ingest-only' : ''}${split ? '-split' : ''}.md`,
        )
      await fs.mkdir(path.dirname(out), { recursive: true })
      await fs.writeFile(out, md)
      console.error(`saved ${path.relative(process.cwd(), out)}`)
    }
    if (!drained || load.accepted === 0) process.exitCode = 1
    finished = true
  } finally {
    // the child first: closing the harness drops the database under it
    if (child) {
      if (!finished) child.kill()
      await child.stop(CHILD_STOP_MS).catch((err: unknown) => console.error('stopping the child:', err))
    }
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
