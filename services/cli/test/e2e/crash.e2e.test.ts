import { type ChildProcess, spawn } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { showMessage } from '@moat/core'
import { eventually, type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')
const clamdUrl = inject('clamdUrl')

/** A clamd stand-in that accepts connections and never answers: a scan through it hangs. */
async function stallingClamd(): Promise<{ url: string; connections: () => number; close(): void }> {
  let count = 0
  const sockets: net.Socket[] = []
  const server = net.createServer((socket) => {
    count++
    sockets.push(socket)
    socket.on('error', () => {})
    socket.resume()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  return {
    url: `tcp://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => count,
    close() {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

function scanWorker(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [MOAT, 'start', '--only', 'scan'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[scan worker] ${d}`))
  return child
}

describe.skipIf(!clamdUrl)(`a scan worker killed mid-job ${inject('clamdMissing')}`, () => {
  let h: Harness
  let sink: SmtpSink
  const children: ChildProcess[] = []

  beforeAll(async () => {
    sink = await startSmtpSink()
    // ingest and deliver here; the scan worker runs as its own process against the same database and store
    h = await startHarness({ only: ['ingest', 'deliver'] })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: [`127.0.0.1:${sink.port}`] })
  })
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL')
    await h?.close()
    await sink?.stop()
  })

  it('loses nothing: after a restart the message is scanned and delivered exactly once', async () => {
    const stall = await stallingClamd()
    const first = scanWorker({ ...h.env, MOAT_CLAMD: stall.url, MOAT_SCAN_VISIBILITY_SECONDS: '2' })
    children.push(first)

    const queueId = await h.send({
      from: 'alice@sender.example',
      to: 'bob@acme.test',
      subject: 'survives a crash',
      text: 'hello',
      messageId: '<crash-test@sender.example>',
    })

    // the worker has taken the job and is waiting on the scanner: kill it there
    await eventually('the scan to start', () => stall.connections() > 0)
    first.kill('SIGKILL')
    await new Promise((resolve) => first.once('exit', resolve))
    stall.close()
    const [midway] = await showMessage(h.stack.database.db, queueId)
    expect(midway?.message.status).toBe('received')
    expect(sink.messages).toHaveLength(0)

    const second = scanWorker({ ...h.env, MOAT_CLAMD: clamdUrl, MOAT_SCAN_VISIBILITY_SECONDS: '2' })
    children.push(second)
    await sink.waitFor(1, 60_000)
    await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
    // give a duplicate every chance to show up
    await new Promise((resolve) => setTimeout(resolve, 3000))
    expect(sink.messages.filter((m) => m.raw.includes('<crash-test@sender.example>'))).toHaveLength(1)
    const [trace] = await showMessage(h.stack.database.db, queueId)
    expect(trace?.events.filter((e) => e.kind === 'scanned')).toHaveLength(1)
    expect(trace?.events.filter((e) => e.kind === 'delivered')).toHaveLength(1)
    expect(await h.stack.scanQueue.depth()).toEqual({ visible: 0, delayed: 0, inFlight: 0, dead: 0 })

    second.kill('SIGTERM')
    await new Promise((resolve) => second.once('exit', resolve))
  })
})
