/**
 * Ingest scaling: the same SMTP load spread over 1, then 2, then 4 ingest processes
 * (`moat start --only ingest`, each on its own port) sharing one database and object store, in
 * accepted messages per second.
 *
 *   npx tsx load-tests/ingest-scaling.ts [--count 3000] [--nodes 1,2,4] [--concurrency 40]
 *     [--size 4096] [--out load-tests/results/ingest-scaling-<db>.md] [--no-save]
 *
 * For each node count: a fresh database (PGlite, or a new database on the PostgreSQL server at
 * DATABASE_URL) with one verified customer domain, N ingest processes started and waited for
 * (`/readyz`), then the load generator (load-tests/smtp-load.ts, raw SMTP like smtp-source) opens
 * `concurrency` connections spread evenly over the N ports, as equal-priority MX records or a TCP
 * load balancer would, and sends `count` messages. Nothing scans or delivers meanwhile: this is the
 * receiving stage alone (store the message, commit its rows and scan job, answer 250).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { eventually, freePort, type Harness, startHarness } from '@moat/testkit'
import { type LoadResult, runLoad } from './smtp-load'

const ROOT = path.resolve(import.meta.dirname, '..')
const MOAT = path.join(ROOT, 'services/cli/bin/moat.js')
const DATABASE_URL = process.env.DATABASE_URL

const { values: args } = parseArgs({
  options: {
    count: { type: 'string', default: '3000' },
    nodes: { type: 'string', default: '1,2,4' },
    concurrency: { type: 'string', default: '40' },
    size: { type: 'string', default: '4096' },
    out: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
  },
})
const count = Number(args.count)
const concurrency = Number(args.concurrency)
const nodeCounts = (args.nodes ?? '1,2,4').split(',').map(Number)

async function run(nodes: number): Promise<{ seconds: number; rate: number; errors: number; p95: number }> {
  // the harness gives the database, the data directory and a verified domain; its own ingest is not used
  const h: Harness = await startHarness({ only: ['ingest'], env: { MOAT_LOG_LEVEL: 'error' } })
  const children: ChildProcess[] = []
  try {
    await h.customer({ tenant: 'bench', domain: 'bench.test', destinations: [] })
    const ports: { smtp: number; ops: number }[] = []
    for (let n = 0; n < nodes; n++) {
      const port = { smtp: await freePort(), ops: await freePort() }
      ports.push(port)
      children.push(
        spawn(process.execPath, [MOAT, 'start', '--only', 'ingest'], {
          env: {
            ...process.env,
            ...h.env,
            MOAT_SMTP_PORT: String(port.smtp),
            MOAT_METRICS_PORT: String(port.ops),
            MOAT_LOG_LEVEL: 'error',
          },
          stdio: ['ignore', 'ignore', 'inherit'],
        }),
      )
    }
    for (const port of ports)
      await eventually(
        'an ingest node to be ready',
        async () =>
          (await fetch(`http://127.0.0.1:${port.ops}/readyz`).catch(() => undefined))?.status === 200,
        120_000,
      )

    const share = (total: number, i: number) => Math.floor(total / nodes) + (i < total % nodes ? 1 : 0)
    const results: LoadResult[] = await Promise.all(
      ports.map((port, i) =>
        runLoad({
          host: '127.0.0.1',
          port: port.smtp,
          count: share(count, i),
          concurrency: Math.max(1, share(concurrency, i)),
          size: Number(args.size),
          to: 'user@bench.test',
          from: 'loadgen@sender.test',
          idPrefix: `n${nodes}-${i}`,
        }),
      ),
    )
    const started = Math.min(...results.map((r) => r.startedAt))
    const finished = Math.max(...results.map((r) => r.finishedAt))
    const accepted = results.reduce((sum, r) => sum + r.accepted, 0)
    const latencies = results
      .flatMap((r) => r.records.map((m) => m.latencyMs))
      .filter((l): l is number => l !== null)
      .sort((a, b) => a - b)
    const seconds = (finished - started) / 1000
    return {
      seconds,
      rate: accepted / seconds,
      errors: results.reduce((sum, r) => sum + r.errors, 0),
      p95: latencies[Math.floor(latencies.length * 0.95)] ?? Number.NaN,
    }
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))))
    await h.close()
  }
}

const results: { nodes: number; seconds: number; rate: number; errors: number; p95: number }[] = []
for (const nodes of nodeCounts) {
  const r = await run(nodes)
  results.push({ nodes, ...r })
  console.log(
    `${nodes} ingest node(s): ${count} messages in ${r.seconds.toFixed(2)} s = ${r.rate.toFixed(1)} msg/s, ${r.errors} errors, p95 ${r.p95.toFixed(0)} ms`,
  )
}

const base = results[0]?.rate ?? 1
const cpus = os.cpus()
const db = DATABASE_URL ? 'postgres' : 'pglite'
const report = `# Ingest scaling: 1, 2, 4 ingest processes on one database (${db === 'postgres' ? 'PostgreSQL' : 'embedded PGlite'})

Run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Command: \`${DATABASE_URL ? 'DATABASE_URL=… ' : ''}npx tsx load-tests/ingest-scaling.ts --count ${count} --nodes ${nodeCounts.join(',')} --concurrency ${concurrency} --size ${args.size}\`.
Machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}; shared with other jobs (load average at the end: ${os
  .loadavg()
  .map((l) => l.toFixed(1))
  .join(', ')}).

What is measured: ${count} messages of about ${args.size} bytes over ${concurrency} SMTP connections (no pipelining, like
smtp-source) spread evenly over N \`moat start --only ingest\` processes, from the first connection to the last
\`250\`. Each \`250\` means the message is in the object store and its rows and scan job are committed. The load
generator runs in one more process on the same ${cpus.length} cores, and so does the database ${db === 'postgres' ? '(the PostgreSQL server)' : '(PGlite, served by the benchmark process: one backend for every connection)'}, so past ${cpus.length} busy processes
the figures measure the machine, not Moat: on dedicated nodes each ingest process would have its own core.

| ingest nodes | seconds | accepted/s | vs 1 node | errors | p95 acceptance latency |
|---:|---:|---:|---:|---:|---:|
${results.map((r) => `| ${r.nodes} | ${r.seconds.toFixed(2)} | ${r.rate.toFixed(1)} | ${(r.rate / base).toFixed(2)}× | ${r.errors} | ${r.p95.toFixed(0)} ms |`).join('\n')}

Machine-readable:

\`\`\`
${results.map((r) => `ingest-scaling db=${db} nodes=${r.nodes} count=${count} seconds=${r.seconds.toFixed(3)} rate=${r.rate.toFixed(2)} errors=${r.errors}`).join('\n')}
\`\`\`
`
if (!args['no-save']) {
  const out = args.out ?? path.join(ROOT, `load-tests/results/ingest-scaling-${db}.md`)
  await fs.writeFile(out, report)
  console.log(`written to ${path.relative(ROOT, out)}`)
}
console.log(report)
process.exit(0)
