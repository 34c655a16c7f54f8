/**
 * Scan scaling: the same batch of messages scanned by 1, then 2, then 4 scan worker processes
 * (`moat start --only scan`) sharing one database and queue, in messages per second.
 *
 *   npx tsx load-tests/scan-scaling.ts [--count 600] [--workers 1,2,4] [--concurrency 4]
 *     [--virus on|off] [--out load-tests/results/scan-scaling-<db>.md] [--no-save]
 *
 * For each worker count: a fresh database (PGlite, or a new database on the PostgreSQL server at
 * DATABASE_URL), the batch sent over SMTP to an in-process ingest (not timed), the scan jobs hidden,
 * the N workers started and waited for (`/readyz`), then the jobs made visible at once and the time
 * until every message is scanned measured. Spam detection runs with the bundled content model;
 * virus scanning through one clamd (EICAR-only signatures: the cost of the INSTREAM round trip,
 * not of a full signature set). DNS checks go to a loopback DNS server that knows nothing.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { loadOrBuildModel } from '@moat/detect'
import { type Clamd, eventually, freePort, type Harness, startClamd, startHarness } from '@moat/testkit'
import { sql } from 'drizzle-orm'

const ROOT = path.resolve(import.meta.dirname, '..')
const MOAT = path.join(ROOT, 'services/cli/bin/moat.js')
const DATABASE_URL = process.env.DATABASE_URL

const { values: args } = parseArgs({
  options: {
    count: { type: 'string', default: '600' },
    workers: { type: 'string', default: '1,2,4' },
    concurrency: { type: 'string', default: '4' },
    virus: { type: 'string', default: 'on' },
    out: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
  },
})
const count = Number(args.count)
const workerCounts = (args.workers ?? '1,2,4').split(',').map(Number)
const words =
  'invoice meeting project report schedule offer account delivery update team budget review'.split(' ')

function message(i: number): { from: string; to: string; subject: string; text: string } {
  const body = Array.from({ length: 400 }, (_, k) => words[(i * 7 + k * 13) % words.length]).join(' ')
  return {
    from: `sender${i % 50}@example.org`,
    to: `user${i % 20}@bench.test`,
    subject: `Message ${i}`,
    text: body,
  }
}

async function run(
  workers: number,
  clamd: Clamd,
  modelFile: string,
): Promise<{ seconds: number; rate: number }> {
  const h: Harness = await startHarness({
    only: ['ingest'],
    env: {
      MOAT_CLAMD: clamd.url,
      MOAT_VIRUS_SCAN: args.virus === 'off' ? 'off' : 'on',
      MOAT_SPAM_MODEL: modelFile,
      MOAT_LOG_LEVEL: 'error',
    },
  })
  const children: ChildProcess[] = []
  try {
    await h.customer({ tenant: 'bench', domain: 'bench.test', destinations: [] })
    // the batch, sent 10 at a time; the scan jobs then hidden until every worker is ready
    for (let i = 0; i < count; i += 10)
      await Promise.all(Array.from({ length: Math.min(10, count - i) }, (_, k) => h.send(message(i + k))))
    const db = h.stack.database.db
    await db.execute(sql`update queue_jobs set visible_at = now() + interval '1 hour' where queue = 'scan'`)

    const ports: number[] = []
    for (let w = 0; w < workers; w++) {
      const port = await freePort()
      ports.push(port)
      const child = spawn(process.execPath, [MOAT, 'start', '--only', 'scan'], {
        env: {
          ...process.env,
          ...h.env,
          MOAT_METRICS_PORT: String(port),
          MOAT_SCAN_CONCURRENCY: args.concurrency,
          MOAT_LOG_LEVEL: 'error',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      })
      children.push(child)
    }
    for (const port of ports)
      await eventually(
        'a scan worker to be ready',
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200,
        120_000,
      )

    const started = performance.now()
    await db.execute(sql`update queue_jobs set visible_at = now() where queue = 'scan'`)
    await eventually(
      'every message to be scanned',
      async () => {
        const [row] = await db.execute<{ n: number }>(
          sql`select count(*)::int as n from messages where status <> 'received'`,
        )
        return (row?.n ?? 0) >= count
      },
      600_000,
    )
    const seconds = (performance.now() - started) / 1000
    return { seconds, rate: count / seconds }
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))))
    await h.close()
  }
}

const clamd = await startClamd()
const modelDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-scaling-'))
const modelFile = path.join(modelDir, 'spam-model.bin')
loadOrBuildModel(modelFile)
const results: { workers: number; seconds: number; rate: number }[] = []
try {
  for (const workers of workerCounts) {
    const r = await run(workers, clamd, modelFile)
    results.push({ workers, ...r })
    console.log(
      `${workers} worker(s): ${count} messages in ${r.seconds.toFixed(2)} s = ${r.rate.toFixed(1)} msg/s`,
    )
  }
} finally {
  await clamd.stop()
  await fs.rm(modelDir, { recursive: true, force: true })
}

const base = results[0]?.rate ?? 1
const cpus = os.cpus()
const db = DATABASE_URL ? 'postgres' : 'pglite'
const report = `# Scan scaling: 1, 2, 4 scan worker processes on one database and queue (${db === 'postgres' ? 'PostgreSQL' : 'embedded PGlite'})

Run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Command: \`${DATABASE_URL ? 'DATABASE_URL=… ' : ''}npx tsx load-tests/scan-scaling.ts --count ${count} --workers ${workerCounts.join(',')} --concurrency ${args.concurrency} --virus ${args.virus}\`.
Machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}; shared with other jobs (load average at the end: ${os
  .loadavg()
  .map((l) => l.toFixed(1))
  .join(', ')}).

What is measured: ${count} messages (≈3 KiB of text each) already received and queued; the scan jobs are made visible at
once after every worker answered \`/readyz\`, and the clock runs until the last message has left \`received\`. Each
worker is \`moat start --only scan\` with \`MOAT_SCAN_CONCURRENCY=${args.concurrency}\`: clamd INSTREAM (${args.virus === 'off' ? 'off' : 'one shared clamd, EICAR-only signatures'}), spam detection
with the bundled content model, the verdict and follow-up deliver jobs committed in one transaction. The database
${db === 'postgres' ? 'is the PostgreSQL server on the same machine' : 'is PGlite served by the first process (one backend for every connection)'}.

| scan workers | seconds | messages/s | vs 1 worker |
|---:|---:|---:|---:|
${results.map((r) => `| ${r.workers} | ${r.seconds.toFixed(2)} | ${r.rate.toFixed(1)} | ${(r.rate / base).toFixed(2)}× |`).join('\n')}

Machine-readable:

\`\`\`
${results.map((r) => `scan-scaling db=${db} workers=${r.workers} count=${count} seconds=${r.seconds.toFixed(3)} rate=${r.rate.toFixed(2)}`).join('\n')}
\`\`\`
`
if (!args['no-save']) {
  const out = args.out ?? path.join(ROOT, `load-tests/results/scan-scaling-${db}.md`)
  await fs.writeFile(out, report)
  console.log(`written to ${path.relative(ROOT, out)}`)
}
console.log(report)
process.exit(0)
