/**
 * Spam-filter baselines: SpamAssassin 4 (Debian package, shipped rules + a fresh Bayes database per fold) and
 * bogofilter (a fresh wordlist per fold) on the same 5-fold cross-validation of the SpamAssassin public corpus
 * that `@moat/classifier`'s `crossValidate` uses (seeded shuffle, seed 42; fold f = shuffled positions ≡ f mod 5).
 * A local benchmark: it is not part of `npm test` or CI.
 *
 *   npx tsx load-tests/spam-baselines.ts [--tool spamassassin|bogofilter|both] [--limit N] [--folds K]
 *     [--concurrency 2] [--keep]
 *
 * --limit N   only the messages at shuffled positions < N (a random subset; each keeps the fold it has in the
 *             full run)
 * --folds K   score only folds 0..K-1 (each still trained on the other four of the five folds)
 * --concurrency  spamd children and parallel spamc clients (default 2)
 * --keep      keep the temporary directory (messages, per-fold databases, per-message scores)
 *
 * Needs root for spamd (its children run as `nobody`) and the Debian packages `spamassassin`, `spamc` and
 * `bogofilter`. Everything is local: spamd runs with `-L` and network tests are switched off.
 * The figures of the last run are in load-tests/results/spam-baselines.md (written by hand from this output).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs, promisify } from 'node:util'
import {
  computeMetrics,
  type LabeledMessage,
  loadSpamAssassin,
  type Metrics,
  recallAtFpr,
  rocAuc,
  shuffled,
} from '@moat/classifier'

const run = promisify(execFile)
const K = 5
const FOLD_SEED = 42
/** SpamAssassin's default required_score */
const SA_REQUIRED = 5

const { values: args } = parseArgs({
  options: {
    tool: { type: 'string', default: 'both' },
    limit: { type: 'string' },
    folds: { type: 'string', default: String(K) },
    concurrency: { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (args.help) {
  console.log(
    'npx tsx load-tests/spam-baselines.ts [--tool spamassassin|bogofilter|both] [--limit N] [--folds K] [--concurrency 2] [--keep]',
  )
  process.exit(0)
}

function int(value: string | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name}: expected a whole number in ${min}..${max}, got ${String(value)}`)
  return n
}

const tool = args.tool
if (tool !== 'spamassassin' && tool !== 'bogofilter' && tool !== 'both')
  throw new Error(`--tool: expected spamassassin, bogofilter or both, got ${tool}`)
const foldsToRun = int(args.folds, 'folds', 1, K)
const concurrency = int(args.concurrency, 'concurrency', 1, 16)

const log = (...a: unknown[]): void => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a)

// ---------------------------------------------------------------------------------------------
// corpus and folds (as crossValidate in packages/classifier/src/evaluate.ts)

const messages: LabeledMessage[] = loadSpamAssassin()
const order = shuffled(
  Array.from({ length: messages.length }, (_, i) => i),
  FOLD_SEED,
)
const limit = args.limit === undefined ? messages.length : int(args.limit, 'limit', K, messages.length)
/** fold of each message index, or -1 when it is outside --limit */
const foldOf = new Int8Array(messages.length).fill(-1)
order.forEach((idx, pos) => {
  if (pos < limit) foldOf[idx] = pos % K
})
/** message indices in the run (in shuffled order, so each fold lists its messages as crossValidate does) */
const inRun = order.filter((idx) => (foldOf[idx] ?? -1) >= 0)
const testIdx = (f: number): number[] => inRun.filter((i) => foldOf[i] === f)
const trainIdx = (f: number): number[] => inRun.filter((i) => foldOf[i] !== f)
const group = (i: number): string => messages[i]?.id.split('/')[0] ?? '?'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-spam-baselines-'))
fs.chmodSync(tmp, 0o755) // spamd's children run as nobody
const msgDir = path.join(tmp, 'msgs')
fs.mkdirSync(msgDir, { mode: 0o755 })
for (const i of inRun) fs.writeFileSync(path.join(msgDir, String(i)), messages[i]?.raw ?? '')
const msgPath = (i: number): string => path.join(msgDir, String(i))

// ---------------------------------------------------------------------------------------------
// cleanup of child processes and the temporary directory

const children = new Set<ChildProcess>()
function cleanup(): void {
  for (const c of children) c.kill('SIGTERM')
  if (!args.keep) fs.rmSync(tmp, { recursive: true, force: true })
}
process.on('uncaughtException', (e) => {
  console.error(e)
  cleanup()
  process.exit(1)
})
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })

// ---------------------------------------------------------------------------------------------
// helpers

/** Runs a command with stdin from a file or a string; resolves with stdout and the exit code. */
function runWithInput(
  cmd: string,
  argv: string[],
  input: { file: string } | { text: string },
  options: { cwd?: string } = {},
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const fd = 'file' in input ? fs.openSync(input.file, 'r') : undefined
    const child = spawn(cmd, argv, { cwd: options.cwd, stdio: [fd ?? 'pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (b: Buffer) => out.push(b))
    child.stderr?.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e) => {
      if (fd !== undefined) fs.closeSync(fd)
      reject(e)
    })
    child.on('close', (code) => {
      if (fd !== undefined) fs.closeSync(fd)
      resolve({ stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString(), code })
    })
    if (fd === undefined && 'text' in input) {
      child.stdin?.on('error', () => {}) // the command may exit without reading its input (spamc -K)
      child.stdin?.end(input.text)
    }
  })
}

async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++] as T
        await fn(item)
      }
    }),
  )
}

async function firstLine(cmd: string, argv: string[]): Promise<string> {
  const { stdout, stderr } = await run(cmd, argv)
  return `${stdout}${stderr}`.split('\n')[0]?.trim() ?? ''
}

async function requireCommand(cmd: string, pkg: string): Promise<void> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`])
  } catch {
    throw new Error(`${cmd} not found: apt-get install -y ${pkg}`)
  }
}

const CLK_TCK = 100 // USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux

/** utime, stime, cutime, cstime and ppid of a process, from /proc/<pid>/stat (undefined once it is gone) */
function procStat(pid: number): { ppid: number; ticks: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // f[0] is field 3 (state): field n is f[n - 3]
    const ticks = [11, 12, 13, 14].reduce((sum, k) => sum + Number(f[k] ?? 0), 0)
    return { ppid: Number(f[1]), ticks }
  } catch {
    return undefined
  }
}

/**
 * CPU seconds used so far by a process and its children: its own time, its reaped children's, and its live
 * children's (spamd's children are replaced every 200 connections and reaped by the parent).
 */
function treeCpuSeconds(pid: number): number {
  let ticks = procStat(pid)?.ticks ?? 0
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const st = procStat(Number(name))
    if (st?.ppid === pid) ticks += st.ticks
  }
  return ticks / CLK_TCK
}

/** Runs argv under /usr/bin/time; returns the CPU seconds (user + system) it used. */
async function timed(
  file: string,
  cmd: string,
  argv: string[],
  input: { file: string } | { text: string },
  options: { cwd?: string } = {},
): Promise<{ stdout: string; stderr: string; code: number | null; cpuSeconds: number }> {
  const r = await runWithInput('/usr/bin/time', ['-f', '%U %S', '-o', file, cmd, ...argv], input, options)
  const [u, s] = fs.readFileSync(file, 'utf8').trim().split('\n').pop()?.split(' ').map(Number) ?? []
  return { ...r, cpuSeconds: (u ?? 0) + (s ?? 0) }
}

const pct = (x: number): string => `${(100 * x).toFixed(3)} %`

interface Verdicted {
  /** the tool's numeric score, for ROC AUC and recall at FPR <= 0.1 % */
  scores: Float64Array
  labels: (0 | 1)[]
  /** the tool's own spam verdict */
  spam: boolean[]
  /** message indices, parallel to the arrays above */
  idx: number[]
}

/**
 * Recall, FPR, precision from the tool's own verdict (computeMetrics on 1/0), ROC AUC from its score.
 * `threshold` is the score cut-off the verdict corresponds to (reported only).
 */
function verdictMetrics(v: Verdicted, spam: readonly boolean[], threshold: number): Metrics {
  const m = computeMetrics(
    spam.map((s) => (s ? 1 : 0)),
    v.labels,
    0.5,
  )
  return { ...m, threshold, auc: rocAuc(v.scores, v.labels) }
}

function errorsByGroup(
  v: Verdicted,
  spam: readonly boolean[],
): { fp: Record<string, number>; fn: Record<string, number> } {
  const fp: Record<string, number> = {}
  const fn: Record<string, number> = {}
  v.idx.forEach((i, k) => {
    const g = group(i)
    if (v.labels[k] === 0 && spam[k]) fp[g] = (fp[g] ?? 0) + 1
    if (v.labels[k] === 1 && !spam[k]) fn[g] = (fn[g] ?? 0) + 1
  })
  return { fp, fn }
}

function emptyRun(): Verdicted {
  return { scores: new Float64Array(0), labels: [], spam: [], idx: [] }
}

function push(v: Verdicted, rows: { i: number; score: number; spam: boolean }[]): Verdicted {
  const scores = new Float64Array(v.scores.length + rows.length)
  scores.set(v.scores)
  rows.forEach((r, k) => {
    scores[v.scores.length + k] = r.score
  })
  return {
    scores,
    labels: [...v.labels, ...rows.map((r) => (messages[r.i]?.label ?? 0) as 0 | 1)],
    spam: [...v.spam, ...rows.map((r) => r.spam)],
    idx: [...v.idx, ...rows.map((r) => r.i)],
  }
}

function saveScores(name: string, v: Verdicted, extra: (k: number) => string = () => ''): void {
  const lines = v.idx.map(
    (i, k) =>
      `${i}\t${messages[i]?.id}\t${v.labels[k]}\t${v.scores[k]}\t${v.spam[k] ? 'spam' : 'ham'}\t${extra(k)}`,
  )
  fs.writeFileSync(path.join(tmp, `scores-${name}.tsv`), `${lines.join('\n')}\n`)
}

// ---------------------------------------------------------------------------------------------
// SpamAssassin: sa-learn into a fresh Bayes DB per fold, then spamd (-L) + spamc

const SA_BENCH_CF = (bayesPath: string): string => `# written by load-tests/spam-baselines.ts
use_bayes 1
bayes_auto_learn 0
# keep every learned token (no expiry run in the middle of the benchmark)
bayes_auto_expire 0
bayes_path ${bayesPath}
bayes_file_mode 0777
use_razor2 0
use_pyzor 0
skip_rbl_checks 1
dns_available no
report_safe 0
add_header all Bench _YESNO_ score=_SCORE_ tests=_TESTSSCORES(,)_
`

interface SaRow {
  i: number
  score: number
  spam: boolean
  saScore: number
  tests: string[]
}

function parseSaOutput(out: string): { spam: boolean; saScore: number; score: number; tests: string[] } {
  const end = out.search(/\r?\n\r?\n/)
  const head = (end < 0 ? out : out.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ')
  const m = /^X-Spam-Bench:\s*(Yes|No)\s+score=(-?[\d.]+)\s+tests=(.*)$/im.exec(head)
  if (!m) throw new Error(`no X-Spam-Bench header in spamc output: ${head.slice(0, 300)}`)
  const tests = (m[3] ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t && t !== 'none')
  // _SCORE_ has one decimal; the sum of the rule scores is SA's score to the rules' precision
  let sum = 0
  for (const t of tests) sum += Number(t.split('=')[1] ?? 0)
  return {
    spam: m[1] === 'Yes',
    saScore: Number(m[2]),
    score: Math.round(sum * 1000) / 1000,
    tests: tests.map((t) => t.split('=')[0] ?? t),
  }
}

async function startSpamd(
  dir: string,
  site: string,
): Promise<{ sock: string; pid: number; stop: () => Promise<void> }> {
  const sock = path.join(dir, 'spamd.sock')
  const logFd = fs.openSync(path.join(dir, 'spamd.log'), 'a')
  const child = spawn(
    'spamd',
    [
      '-L', // local tests only
      '--nouser-config',
      '-u',
      'nobody',
      `--max-children=${concurrency}`,
      `--min-children=${concurrency}`,
      '--min-spare=1',
      `--max-spare=${concurrency}`,
      `--socketpath=${sock}`,
      `--siteconfigpath=${site}`,
      `--helper-home-dir=${path.join(dir, 'home')}`,
      '--syslog=stderr',
    ],
    { stdio: ['ignore', logFd, logFd] },
  )
  children.add(child)
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const deadline = Date.now() + 120_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`spamd exited (${child.exitCode}); see ${dir}/spamd.log`)
    const ping = await runWithInput('spamc', ['-U', sock, '-K'], { text: '' })
    if (ping.code === 0) break
    if (Date.now() > deadline) throw new Error(`spamd did not answer within 120 s; see ${dir}/spamd.log`)
    await new Promise((r) => setTimeout(r, 250))
  }
  return {
    sock,
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill('SIGTERM')
      await exited
      children.delete(child)
      fs.closeSync(logFd)
    },
  }
}

async function runSpamAssassin(): Promise<Record<string, unknown>> {
  await requireCommand('spamd', 'spamassassin')
  await requireCommand('spamc', 'spamc')
  await requireCommand('sa-learn', 'spamassassin')
  const version = (await run('spamassassin', ['-V'])).stdout.trim().split('\n').join('; ')
  log(`SpamAssassin: ${version}`)
  let all = emptyRun()
  const rows: SaRow[] = []
  let learnMs = 0
  let classifyMs = 0
  /** 1-minute load average at the end of each fold's classification (other work on the machine skews timings) */
  const loads: number[] = []
  let learnCpu = 0
  let classifyCpu = 0
  const learned: string[] = []
  const magic: Record<string, number>[] = []
  for (let f = 0; f < foldsToRun; f++) {
    const dir = path.join(tmp, 'sa', `fold${f}`)
    const site = path.join(dir, 'site')
    fs.mkdirSync(site, { recursive: true })
    fs.mkdirSync(path.join(dir, 'bayes'))
    fs.mkdirSync(path.join(dir, 'home'))
    // the system's site config (plugin .pre files, local.cf, 65_debian.cf) plus the benchmark's settings
    for (const name of fs.readdirSync('/etc/spamassassin'))
      if (/\.(pre|cf)$/.test(name))
        fs.copyFileSync(path.join('/etc/spamassassin', name), path.join(site, name))
    fs.writeFileSync(path.join(site, 'zz_moat_bench.cf'), SA_BENCH_CF(path.join(dir, 'bayes', 'bayes')))
    const train = trainIdx(f)
    const test = testIdx(f)
    let t = performance.now()
    for (const [flag, label] of [
      ['--spam', 1],
      ['--ham', 0],
    ] as const) {
      const files = train.filter((i) => messages[i]?.label === label).map(String)
      const r = await timed(
        path.join(dir, 'time.txt'),
        'sa-learn',
        [`--siteconfigpath=${site}`, '-L', flag, ...files],
        { text: '' },
        { cwd: msgDir },
      )
      if (r.code !== 0) throw new Error(`sa-learn ${flag} failed (exit ${r.code}): ${r.stderr}`)
      learnCpu += r.cpuSeconds
      const stdout = r.stdout
      const line = stdout.trim().split('\n').pop() ?? ''
      learned.push(`fold ${f} ${flag}: ${line}`)
      log(`SA fold ${f} ${flag} (${files.length} files): ${line}`)
    }
    learnMs += performance.now() - t
    const dump = (await run('sa-learn', [`--siteconfigpath=${site}`, '--dump', 'magic'])).stdout
    const mg: Record<string, number> = {}
    for (const m of dump.matchAll(/^\S+\s+\S+\s+(\d+)\s+\S+\s+non-token data: (nspam|nham|ntokens)$/gm))
      mg[m[2] ?? ''] = Number(m[1])
    magic.push(mg)
    await run('chmod', ['-R', 'a+rwX', dir])
    const spamd = await startSpamd(dir, site)
    const foldRows: SaRow[] = []
    try {
      const cpu0 = treeCpuSeconds(spamd.pid)
      t = performance.now()
      await pool(test, concurrency, async (i) => {
        const r = await runWithInput('spamc', ['-U', spamd.sock, '-x', '-s', '100000000'], {
          file: msgPath(i),
        })
        if (r.code !== 0) throw new Error(`spamc failed on message ${i} (exit ${r.code}): ${r.stderr}`)
        foldRows.push({ i, ...parseSaOutput(r.stdout) })
      })
      const ms = performance.now() - t
      const cpu = treeCpuSeconds(spamd.pid) - cpu0
      classifyMs += ms
      classifyCpu += cpu
      loads.push(os.loadavg()[0] ?? 0)
      log(
        `SA fold ${f}: ${test.length} messages classified in ${(ms / 1000).toFixed(1)} s (spamd CPU ${cpu.toFixed(1)} s)`,
      )
    } finally {
      await spamd.stop()
    }
    foldRows.sort((a, b) => test.indexOf(a.i) - test.indexOf(b.i))
    rows.push(...foldRows)
    all = push(all, foldRows)
  }
  // consistency: SA's verdict is score >= required_score
  const disagree = rows.filter((r) => r.spam !== r.score >= SA_REQUIRED).length
  const bayesHits = rows.filter((r) => r.tests.some((t) => /^BAYES_\d+$/.test(t))).length
  const bayesRules: Record<string, number> = {}
  for (const r of rows)
    for (const t of r.tests) if (/^BAYES_\d+$/.test(t)) bayesRules[t] = (bayesRules[t] ?? 0) + 1
  const fpRules: Record<string, number> = {}
  for (const r of rows)
    if (messages[r.i]?.label === 0 && r.spam) for (const t of r.tests) fpRules[t] = (fpRules[t] ?? 0) + 1
  const topFpRules = Object.entries(fpRules)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([rule, n]) => `${rule} ${n}`)
  saveScores('spamassassin', all, (k) => rows[k]?.tests.join(',') ?? '')
  if (bayesHits === 0)
    log('WARNING: no BAYES_xx rule hit: Bayes was not used (fewer than 200 spam or ham learned?)')
  const m = verdictMetrics(all, all.spam, SA_REQUIRED)
  const onScore = computeMetrics(all.scores, all.labels, SA_REQUIRED)
  const atFpr = recallAtFpr(all.scores, all.labels, 0.001)
  return {
    tool: 'spamassassin',
    version,
    ...m,
    recallAtFpr001: atFpr.recall,
    recallAtFpr001Threshold: atFpr.threshold,
    classifyPerSecond: all.scores.length / (classifyMs / 1000),
    classifySeconds: classifyMs / 1000,
    classifyCpuSeconds: classifyCpu,
    classifyPerCpuSecond: all.scores.length / classifyCpu,
    learnSecondsPerFold: learnMs / 1000 / foldsToRun,
    learnCpuSecondsPerFold: learnCpu / foldsToRun,
    concurrency,
    loadAverage1m: loads,
    verdictVsScoreDisagreements: disagree,
    verdictVsScoreCheck: { recall: onScore.recall, fpr: onScore.fpr },
    bayesRuleHits: bayesHits,
    bayesRules,
    bayesDbPerFold: magic,
    errorsByGroup: errorsByGroup(all, all.spam),
    topRulesOnFalsePositives: topFpRules,
    learned,
  }
}

// ---------------------------------------------------------------------------------------------
// bogofilter: a fresh wordlist per fold, bulk registration, bulk classification

async function runBogofilter(): Promise<Record<string, unknown>> {
  await requireCommand('bogofilter', 'bogofilter')
  const version = await firstLine('bogofilter', ['-V'])
  log(`bogofilter: ${version}`)
  const q = (await run('bogofilter', ['-Q'])).stdout
  const cutoff = (name: string): number => Number(new RegExp(`^${name}\\s*=\\s*([\\d.]+)`, 'm').exec(q)?.[1])
  const spamCutoff = cutoff('spam_cutoff')
  const hamCutoff = cutoff('ham_cutoff')
  log(`bogofilter cutoffs: spam >= ${spamCutoff}, ham <= ${hamCutoff}`)
  let all = emptyRun()
  const verdicts: ('Spam' | 'Ham' | 'Unsure')[] = []
  let learnMs = 0
  let classifyMs = 0
  let learnCpu = 0
  let classifyCpu = 0
  const loads: number[] = []
  for (let f = 0; f < foldsToRun; f++) {
    const dir = path.join(tmp, 'bogofilter', `fold${f}`)
    fs.mkdirSync(dir, { recursive: true })
    const train = trainIdx(f)
    const test = testIdx(f)
    let t = performance.now()
    for (const [flag, label] of [
      ['-s', 1],
      ['-n', 0],
    ] as const) {
      const list = train.filter((i) => messages[i]?.label === label).map(msgPath)
      const r = await timed(path.join(dir, 'time.txt'), 'bogofilter', ['-d', dir, flag, '-b'], {
        text: `${list.join('\n')}\n`,
      })
      learnCpu += r.cpuSeconds
      if (r.code !== 0) throw new Error(`bogofilter ${flag} -b failed (exit ${r.code}): ${r.stderr}`)
    }
    learnMs += performance.now() - t
    const counts = (await run('bogoutil', ['-w', dir, '.MSG_COUNT'])).stdout.trim().split('\n').pop()
    log(`bogofilter fold ${f}: trained on ${train.length} messages; .MSG_COUNT ${counts}`)
    t = performance.now()
    const r = await timed(
      path.join(dir, 'time.txt'),
      'bogofilter',
      ['-d', dir, '-v', '-b', '--spamicity-formats=%0.16f, %0.16f, %0.16f'],
      { text: `${test.map(msgPath).join('\n')}\n` },
    )
    const ms = performance.now() - t
    classifyMs += ms
    classifyCpu += r.cpuSeconds
    loads.push(os.loadavg()[0] ?? 0)
    // in bulk mode the exit code is that of the last message: 0 spam, 1 ham, 2 unsure, 3 error
    if (r.code === null || r.code > 2) throw new Error(`bogofilter -b failed (exit ${r.code}): ${r.stderr}`)
    const byPath = new Map<string, { verdict: 'Spam' | 'Ham' | 'Unsure'; score: number }>()
    for (const line of r.stdout.split('\n')) {
      const m = /^(\S+) X-Bogosity: (Spam|Ham|Unsure), tests=bogofilter, spamicity=([\d.]+)/.exec(line)
      if (m) byPath.set(m[1] ?? '', { verdict: m[2] as 'Spam' | 'Ham' | 'Unsure', score: Number(m[3]) })
    }
    const foldRows = test.map((i) => {
      const v = byPath.get(msgPath(i))
      if (!v) throw new Error(`bogofilter printed no verdict for message ${i}`)
      verdicts.push(v.verdict)
      return { i, score: v.score, spam: v.verdict === 'Spam' }
    })
    log(`bogofilter fold ${f}: ${test.length} messages classified in ${(ms / 1000).toFixed(2)} s`)
    all = push(all, foldRows)
  }
  const unsureAsSpam = verdicts.map((v) => v !== 'Ham')
  const breakdown: Record<string, Record<string, number>> = { spam: {}, ham: {} }
  verdicts.forEach((v, k) => {
    const b = breakdown[all.labels[k] === 1 ? 'spam' : 'ham'] ?? {}
    b[v] = (b[v] ?? 0) + 1
  })
  const disagree = all.spam.filter((s, k) => s !== (all.scores[k] ?? 0) >= spamCutoff).length
  saveScores('bogofilter', all, (k) => verdicts[k] ?? '')
  const m = verdictMetrics(all, all.spam, spamCutoff)
  const u = verdictMetrics(all, unsureAsSpam, hamCutoff)
  const atFpr = recallAtFpr(all.scores, all.labels, 0.001)
  return {
    tool: 'bogofilter',
    version,
    spamCutoff,
    hamCutoff,
    ...m,
    recallAtFpr001: atFpr.recall,
    recallAtFpr001Threshold: atFpr.threshold,
    classifyPerSecond: all.scores.length / (classifyMs / 1000),
    classifySeconds: classifyMs / 1000,
    classifyCpuSeconds: classifyCpu,
    classifyPerCpuSecond: all.scores.length / classifyCpu,
    learnSecondsPerFold: learnMs / 1000 / foldsToRun,
    learnCpuSecondsPerFold: learnCpu / foldsToRun,
    concurrency: 1,
    loadAverage1m: loads,
    verdicts: breakdown,
    unsureAsSpam: {
      recall: u.recall,
      fpr: u.fpr,
      falsePositives: u.falsePositives,
      falseNegatives: u.falseNegatives,
      precision: u.precision,
    },
    verdictVsScoreDisagreements: disagree,
    errorsByGroup: errorsByGroup(all, all.spam),
  }
}

// ---------------------------------------------------------------------------------------------

function table(r: Record<string, unknown>): string {
  const n = (k: string): number => Number(r[k])
  const rows: [string, string][] = [
    ['messages', `${n('messages')} (${n('spam')} spam, ${n('ham')} ham)`],
    ['spam recall', pct(n('recall'))],
    ['false-positive rate', `${pct(n('fpr'))} (${n('falsePositives')} ham)`],
    ['precision', pct(n('precision'))],
    ['missed spam', String(n('falseNegatives'))],
    ['ROC AUC (numeric score)', n('auc').toFixed(5)],
    ['recall at FPR ≤ 0.1 % (threshold picked on the test scores: optimistic)', pct(n('recallAtFpr001'))],
    [
      'classification, messages/s (wall clock)',
      `${n('classifyPerSecond').toFixed(1)} (${n('concurrency')} process${n('concurrency') > 1 ? 'es' : ''})`,
    ],
    [
      'classification, messages per CPU-second of the filter processes',
      `${n('classifyPerCpuSecond').toFixed(1)} (${n('classifyCpuSeconds').toFixed(1)} CPU s)`,
    ],
    [
      'training per fold: wall s / CPU s',
      `${n('learnSecondsPerFold').toFixed(1)} / ${n('learnCpuSecondsPerFold').toFixed(1)}`,
    ],
  ]
  const u = r.unsureAsSpam as Metrics | undefined
  if (u)
    rows.push([
      'unsure counted as spam: recall / FPR / precision',
      `${pct(u.recall)} / ${pct(u.fpr)} (${u.falsePositives} ham) / ${pct(u.precision)}`,
    ])
  if (r.verdicts) rows.push(['verdicts by true class', JSON.stringify(r.verdicts)])
  if (r.bayesRuleHits !== undefined)
    rows.push(['messages with a BAYES_xx rule hit', `${n('bayesRuleHits')} of ${n('messages')}`])
  rows.push(['errors by corpus group', JSON.stringify(r.errorsByGroup)])
  rows.push(['1-min load average after each fold', JSON.stringify(r.loadAverage1m)])
  return ['| measure | value |', '|---|---|', ...rows.map(([a, b]) => `| ${a} | ${b} |`)].join('\n')
}

async function main(): Promise<void> {
  const started = performance.now()
  log(
    `${messages.length} messages loaded; ${inRun.length} in the run (limit ${limit}); folds 0..${foldsToRun - 1} of ${K}; temp ${tmp}`,
  )
  const results: Record<string, unknown>[] = []
  try {
    if (tool === 'spamassassin' || tool === 'both') results.push(await runSpamAssassin())
    if (tool === 'bogofilter' || tool === 'both') results.push(await runBogofilter())
  } finally {
    cleanup()
    if (args.keep) log(`kept ${tmp}`)
  }
  for (const r of results) {
    console.log(`\n## ${String(r.tool)} (${String(r.version)})\n`)
    console.log(table(r))
  }
  console.log(
    JSON.stringify({
      kind: `spam baselines, ${K}-fold CV (seed ${FOLD_SEED}), SpamAssassin corpus`,
      corpusMessages: messages.length,
      limit,
      foldsRun: foldsToRun,
      seconds: (performance.now() - started) / 1000,
      results,
    }),
  )
}

main().catch((e: unknown) => {
  console.error(e)
  cleanup()
  process.exit(1)
})
