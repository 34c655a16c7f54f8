/**
 * SMTP load generator.
 *
 *   npx tsx load-tests/smtp-load.ts --port 2525 [--host 127.0.0.1] [--count 2000] [--concurrency 20]
 *     [--size 4096] [--to bench@bench.test] [--from loadgen@sender.test] [--per-connection 0]
 *     [--timeout 300] [--id-prefix run] [--json result.json]
 *
 * Opens `concurrency` raw SMTP connections and sends `count` messages of about `size` bytes over
 * them (each connection reused for as many messages as it gets, or `--per-connection` messages
 * before reconnecting). No pipelining: MAIL, RCPT, DATA and the body each wait for their reply, like
 * Postfix's smtp-source. For every message it records the time from writing the end of DATA
 * ("\r\n.\r\n") to the final reply: the acceptance latency. Every message carries a unique
 * `X-Bench-Id` header so a receiver further down the line can match it.
 *
 * `runLoad` is the same thing as a function, for the ingest benchmark.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

export interface LoadOptions {
  host: string
  port: number
  /** messages to send in total */
  count: number
  /** parallel SMTP connections */
  concurrency: number
  /** approximate size of each message in bytes, headers included */
  size: number
  to: string
  from: string
  /** messages per connection before reconnecting; 0 = keep the connection for the whole run */
  perConnection?: number
  /** hard limit for the whole run; messages not sent by then are counted as not sent */
  timeoutMs?: number
  /** limit for each SMTP reply */
  replyTimeoutMs?: number
  /** give up when the server has answered nothing for this long (a hung server ends the run early) */
  stallMs?: number
  /** prefix of the X-Bench-Id values (`<prefix>-<index>`) */
  idPrefix?: string
  /** EHLO name */
  helo?: string
}

export interface MessageRecord {
  /** the X-Bench-Id of the message */
  id: string
  index: number
  connection: number
  /** wall-clock time (epoch ms, sub-ms precision) when "\r\n.\r\n" was written; null if DATA was never reached */
  dataEndAt: number | null
  /** ms from the end of DATA to the final reply; null if there was no final reply */
  latencyMs: number | null
  /** the code of the final reply (or of the command that failed) */
  code: number | null
  ok: boolean
  /** the reply text, or the error for a failed message */
  reply: string
}

export interface Summary {
  count: number
  min: number
  mean: number
  p50: number
  p95: number
  p99: number
  max: number
}

export interface LoadResult {
  options: Required<LoadOptions>
  /** epoch ms when the first connection was opened */
  startedAt: number
  /** epoch ms when the last reply was read */
  finishedAt: number
  elapsedMs: number
  /** messages for which DATA was completed (end of data written) */
  sent: number
  /** messages answered 250 after DATA */
  accepted: number
  /** messages not accepted (refused, connection failure, timeout, not attempted before the deadline) */
  errors: number
  /** error text (reply code or failure) → how many */
  errorKinds: Record<string, number>
  connectionsOpened: number
  /** CPU time (user + system) this process spent during the run, ms */
  cpuMs: number
  /** accepted messages per second over the whole run */
  messagesPerSecond: number
  /** acceptance latency of accepted messages, ms */
  latency: Summary
  records: MessageRecord[]
}

/** Wall-clock time in epoch milliseconds with sub-millisecond precision, comparable between processes. */
export function now(): number {
  return performance.timeOrigin + performance.now()
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b)
  const sum = sorted.reduce((a, b) => a + b, 0)
  return {
    count: sorted.length,
    min: sorted[0] ?? Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  }
}

export function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

/**
 * A plain-text message of about `size` bytes (headers included, CRLF line endings, no line starting
 * with a dot, so no dot-stuffing is needed), ending with CRLF.
 */
export function buildMessage(input: { id: string; size: number; from: string; to: string }): Buffer {
  const headers = [
    `From: Load Generator <${input.from}>`,
    `To: <${input.to}>`,
    `Subject: load test ${input.id}`,
    `Message-ID: <${input.id}.${randomBytes(4).toString('hex')}@loadgen.test>`,
    `Date: ${new Date().toUTCString().replace(/GMT$/, '+0000')}`,
    `X-Bench-Id: ${input.id}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    '',
  ].join('\r\n')
  let remaining = Math.max(0, input.size - Buffer.byteLength(headers))
  const lines: string[] = []
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '
  let n = 0
  while (remaining > 0 && lines.length < 10_000_000) {
    const width = Math.min(76, Math.max(1, remaining - 2))
    let line = ''
    for (let i = 0; i < width; i++) line += alphabet[(n++ * 7 + i) % alphabet.length]
    // a line must not start with "." (never here) nor carry trailing spaces that matter; fine for a load test
    lines.push(line)
    remaining -= width + 2
  }
  return Buffer.from(`${headers}${lines.join('\r\n')}\r\n`, 'latin1')
}

interface Reply {
  code: number
  text: string
}

class SmtpError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
  ) {
    super(message)
  }
}

/** One raw SMTP connection that reads replies (multi-line aware) in order. */
class Connection {
  private buffer = ''
  private readonly replies: Reply[] = []
  private waiter: ((r: Reply | Error) => void) | null = null
  private failure: Error | null = null

  private constructor(
    private readonly socket: net.Socket,
    private readonly replyTimeoutMs: number,
  ) {
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => this.onData(d))
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('connection closed by server')))
  }

  static open(host: string, port: number, replyTimeoutMs: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error('connect timeout'))
      }, replyTimeoutMs)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        resolve(new Connection(socket, replyTimeoutMs))
      })
      socket.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
    })
  }

  private onData(d: Buffer): void {
    this.buffer += d.toString('latin1')
    for (let guard = 0; guard < 10_000; guard++) {
      const eol = this.buffer.indexOf('\r\n')
      if (eol < 0) break
      const line = this.buffer.slice(0, eol)
      this.buffer = this.buffer.slice(eol + 2)
      if (line.length >= 4 && line[3] === '-') continue // continuation of a multi-line reply
      const reply = { code: Number.parseInt(line.slice(0, 3), 10) || 0, text: line }
      const w = this.waiter
      if (w) {
        this.waiter = null
        w(reply)
      } else {
        this.replies.push(reply)
      }
    }
  }

  private fail(err: Error): void {
    this.failure ??= err
    const w = this.waiter
    if (w) {
      this.waiter = null
      w(err)
    }
  }

  read(): Promise<Reply> {
    const queued = this.replies.shift()
    if (queued) return Promise.resolve(queued)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null
        reject(new Error(`no reply within ${this.replyTimeoutMs} ms`))
        this.socket.destroy()
      }, this.replyTimeoutMs)
      this.waiter = (r) => {
        clearTimeout(timer)
        if (r instanceof Error) reject(r)
        else resolve(r)
      }
    })
  }

  write(data: string | Buffer): void {
    this.socket.write(data)
  }

  /** Sends one command line and returns its reply; throws SmtpError unless the code is `expect`. */
  async command(line: string, expect: number): Promise<Reply> {
    this.write(`${line}\r\n`)
    const r = await this.read()
    if (r.code !== expect) throw new SmtpError(`${line.split(' ')[0]}: ${r.text}`, r.code)
    return r
  }

  close(): void {
    this.socket.removeAllListeners('close')
    this.socket.on('error', () => {})
    if (!this.socket.destroyed) {
      this.socket.end('QUIT\r\n')
      setTimeout(() => this.socket.destroy(), 1000).unref()
    }
  }
}

/** Sends `count` messages over `concurrency` connections and measures the acceptance latency. */
export async function runLoad(input: LoadOptions): Promise<LoadResult> {
  const options: Required<LoadOptions> = {
    perConnection: 0,
    timeoutMs: 300_000,
    replyTimeoutMs: 30_000,
    stallMs: 30_000,
    idPrefix: `load-${Date.now().toString(36)}`,
    helo: 'loadgen.test',
    ...input,
  }
  const { host, port, count, size, to, from } = options
  const concurrency = Math.max(1, Math.min(options.concurrency, count))
  const deadline = Date.now() + options.timeoutMs
  const records: MessageRecord[] = []
  let next = 0
  let connectionsOpened = 0
  let lastReplyAt = Date.now()
  let stalled = false
  const alive = (): boolean => {
    if (Date.now() - lastReplyAt > options.stallMs) stalled = true
    return !stalled && Date.now() < deadline
  }

  const worker = async (connection: number): Promise<void> => {
    let conn: Connection | null = null
    let onThisConnection = 0
    // at most one iteration per message; stops at the deadline
    while (next < count && alive()) {
      const index = next++
      const id = `${options.idPrefix}-${index}`
      const record: MessageRecord = {
        id,
        index,
        connection,
        dataEndAt: null,
        latencyMs: null,
        code: null,
        ok: false,
        reply: '',
      }
      records.push(record)
      try {
        if (conn && options.perConnection > 0 && onThisConnection >= options.perConnection) {
          conn.close()
          conn = null
        }
        if (!conn) {
          conn = await Connection.open(host, port, options.replyTimeoutMs)
          connectionsOpened++
          onThisConnection = 0
          const greeting = await conn.read()
          if (greeting.code !== 220) throw new SmtpError(`greeting: ${greeting.text}`, greeting.code)
          await conn.command(`EHLO ${options.helo}`, 250)
        }
        const body = buildMessage({ id, size, from, to })
        await conn.command(`MAIL FROM:<${from}>`, 250)
        await conn.command(`RCPT TO:<${to}>`, 250)
        await conn.command('DATA', 354)
        // the body ends with CRLF, so this writes "\r\n.\r\n"
        conn.write(Buffer.concat([body, Buffer.from('.\r\n')]))
        const dataEndAt = now()
        record.dataEndAt = dataEndAt
        const r = await conn.read()
        lastReplyAt = Date.now()
        record.latencyMs = now() - dataEndAt
        record.code = r.code
        record.reply = r.text
        record.ok = r.code === 250
        onThisConnection++
      } catch (err) {
        record.reply = err instanceof Error ? err.message : String(err)
        record.code = err instanceof SmtpError ? err.code : null
        if (err instanceof SmtpError && err.code !== null && err.code >= 400 && conn) {
          // a refused command: reset the transaction and go on on the same connection
          try {
            await conn.command('RSET', 250)
            continue
          } catch {
            // fall through: drop the connection
          }
        }
        conn?.close()
        conn = null
        // connection-level failure: pause a little before reconnecting, so a dead server is not hammered
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    conn?.close()
  }

  const cpuBefore = process.cpuUsage()
  const startedAt = now()
  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)))
  const finishedAt = now()
  const cpu = process.cpuUsage(cpuBefore)
  records.sort((a, b) => a.index - b.index)

  const errorKinds: Record<string, number> = {}
  for (const r of records) {
    if (r.ok) continue
    const kind = r.reply.replace(/\b[0-9a-z]{20,}\b/g, '…').slice(0, 120) || 'unknown'
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1
  }
  const notAttempted = count - records.length
  if (notAttempted > 0) {
    const why = stalled
      ? `the server answered nothing for ${options.stallMs / 1000} s`
      : 'the run deadline passed'
    errorKinds[`not attempted: ${why}`] = notAttempted
  }
  const accepted = records.filter((r) => r.ok)
  const elapsedMs = finishedAt - startedAt
  return {
    options: { ...options, concurrency },
    startedAt,
    finishedAt,
    elapsedMs,
    sent: records.filter((r) => r.dataEndAt !== null).length,
    accepted: accepted.length,
    errors: count - accepted.length,
    errorKinds,
    connectionsOpened,
    cpuMs: (cpu.user + cpu.system) / 1000,
    messagesPerSecond: accepted.length / (elapsedMs / 1000),
    latency: summarize(accepted.map((r) => r.latencyMs as number)),
    records,
  }
}

export function formatResult(result: LoadResult): string {
  const o = result.options
  const l = result.latency
  const lines = [
    `target            ${o.host}:${o.port}`,
    `messages          ${o.count} x ~${o.size} bytes over ${o.concurrency} connections (${result.connectionsOpened} opened)`,
    `elapsed           ${fmt(result.elapsedMs / 1000, 2)} s`,
    `accepted          ${result.accepted} (${result.errors} errors)`,
    `throughput        ${fmt(result.messagesPerSecond)} messages/s`,
    `acceptance ms     p50 ${fmt(l.p50)}  p95 ${fmt(l.p95)}  p99 ${fmt(l.p99)}  max ${fmt(l.max)}  mean ${fmt(l.mean)}`,
  ]
  for (const [kind, n] of Object.entries(result.errorKinds)) lines.push(`  error x${n}: ${kind}`)
  return lines.join('\n')
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '2525' },
      count: { type: 'string', default: '2000' },
      concurrency: { type: 'string', default: '20' },
      size: { type: 'string', default: '4096' },
      to: { type: 'string', default: 'bench@bench.test' },
      from: { type: 'string', default: 'loadgen@sender.test' },
      'per-connection': { type: 'string', default: '0' },
      timeout: { type: 'string', default: '300' },
      'id-prefix': { type: 'string' },
      json: { type: 'string' },
      'go-on-stdin': { type: 'boolean', default: false },
      'allow-remote': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    console.log(
      'usage: tsx load-tests/smtp-load.ts --port N [--host 127.0.0.1] [--count 2000] [--concurrency 20] [--size 4096]\n' +
        '       [--to addr] [--from addr] [--per-connection 0] [--timeout 300] [--id-prefix p] [--json out.json]\n' +
        '       [--go-on-stdin] [--allow-remote]',
    )
    return
  }
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name}: expected a whole number >= ${min}, got ${v}`)
    return n
  }
  if (!LOOPBACK.test(values.host) && !values['allow-remote']) {
    throw new Error(`--host ${values.host} is not loopback; pass --allow-remote to load a remote server`)
  }
  if (values['go-on-stdin']) {
    // for a parent that wants to start measuring once this process is loaded: "ready", then wait for a line
    process.stdout.write('ready\n')
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 60_000)
      process.stdin.once('data', () => {
        clearTimeout(timer)
        process.stdin.destroy() // a paused stdin pipe would keep this process alive
        resolve()
      })
    })
  }
  const result = await runLoad({
    host: values.host,
    port: int('port', values.port, 1),
    count: int('count', values.count, 1),
    concurrency: int('concurrency', values.concurrency, 1),
    size: int('size', values.size, 0),
    to: values.to,
    from: values.from,
    perConnection: int('per-connection', values['per-connection'], 0),
    timeoutMs: int('timeout', values.timeout, 1) * 1000,
    ...(values['id-prefix'] ? { idPrefix: values['id-prefix'] } : {}),
  })
  if (values.json) await fs.writeFile(values.json, JSON.stringify(result))
  console.log(formatResult(result))
  process.exitCode = result.accepted === 0 ? 1 : 0
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    // half-closed sockets must not hold a finished run; stdout is synchronous for files and pipes
    () => process.exit(),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err)
      process.exit(2)
    },
  )
}
