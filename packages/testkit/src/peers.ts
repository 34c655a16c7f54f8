import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { startLocalClamd } from '@moat/scan'
import dns2 from 'dns2'
import { SMTPServer } from 'smtp-server'

/** A free TCP port on loopback (bound, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export async function tempDir(prefix = 'moat-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix))
}

export interface ReceivedMail {
  from: string
  to: string[]
  raw: Buffer
  secure: boolean
}

export interface SmtpSink {
  port: number
  messages: ReceivedMail[]
  /** reply for RCPT TO of an address; return undefined to accept */
  rcptReply?: (address: string) => { code: number; message: string } | undefined
  /** Resolves once `count` messages have arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>
  stop(): Promise<void>
}

/**
 * A real SMTP server on loopback standing for a customer's mail server: it stores what it
 * receives and can refuse recipients on demand. Pass a port to come back up on the same port, and
 * a host (127.0.0.2, 127.0.0.3…) to stand for several MX hosts on one port.
 */
export async function startSmtpSink(
  options: {
    port?: number
    /** offer STARTTLS (the default) */
    starttls?: boolean
    banner?: string
    /** a loopback address other than 127.0.0.1, to stand for several MX hosts on one port */
    host?: string
  } = {},
): Promise<SmtpSink> {
  const waiters: (() => void)[] = []
  const sink: SmtpSink = {
    port: 0,
    messages: [],
    waitFor(count, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (sink.messages.length >= count) {
            clearTimeout(timer)
            resolve(sink.messages)
            return true
          }
          return false
        }
        const timer = setTimeout(
          () => reject(new Error(`expected ${count} messages at the sink, got ${sink.messages.length}`)),
          timeoutMs,
        )
        if (!check()) waiters.push(() => void check())
      })
    },
    stop: async () => {},
  }
  const server = new SMTPServer({
    authOptional: true,
    logger: false,
    disableReverseLookup: true,
    ...(options.starttls === false ? { disabledCommands: ['STARTTLS'] } : {}),
    ...(options.banner ? { banner: options.banner } : {}),
    onRcptTo(address, _session, callback) {
      const refusal = sink.rcptReply?.(address.address)
      if (refusal) {
        const err = Object.assign(new Error(refusal.message), { responseCode: refusal.code })
        callback(err)
        return
      }
      callback()
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        sink.messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          secure: session.secure,
        })
        for (const w of waiters.splice(0)) w()
        callback(null, 'sink accepted')
      })
    },
  })
  // a client cut off mid-session (a killed worker) is that client's problem, not the sink's
  server.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject)
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve())
  })
  sink.port = (server.server.address() as net.AddressInfo).port
  sink.stop = () => new Promise<void>((resolve) => server.close(() => resolve()))
  return sink
}

export interface DnsZone {
  txt?: string[]
  mx?: { exchange: string; priority: number }[]
  a?: string[]
}

export interface TestDnsServer {
  /** `ip:port`, as MOAT_DNS_SERVERS takes it */
  address: string
  zones: Map<string, DnsZone>
  stop(): Promise<void>
}

/** An authoritative DNS server on loopback (UDP) answering TXT and MX from `zones`. */
export async function startDnsServer(): Promise<TestDnsServer> {
  const zones = new Map<string, DnsZone>()
  const { Packet } = dns2
  // dns2's bundled typings lag its code: RCODE exists, and answers are plain objects
  const NXDOMAIN = 3
  type Answer = (typeof Packet.prototype.answers)[number]
  const server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request)
      const question = request.questions[0]
      const name = (question?.name ?? '').toLowerCase().replace(/\.$/, '')
      const zone = zones.get(name)
      if (!zone) {
        response.header.rcode = NXDOMAIN
      } else if (question?.type === Packet.TYPE.TXT) {
        for (const data of zone.txt ?? []) {
          response.answers.push({
            name,
            type: Packet.TYPE.TXT,
            class: Packet.CLASS.IN,
            ttl: 60,
            // one TXT record, split into character-strings of at most 255 octets (a DKIM key is longer)
            data: data.match(/[\s\S]{1,255}/g) ?? [''],
          } as unknown as Answer)
        }
      } else if (question?.type === Packet.TYPE.A) {
        for (const address of zone.a ?? []) {
          response.answers.push({
            name,
            type: Packet.TYPE.A,
            class: Packet.CLASS.IN,
            ttl: 60,
            address,
          } as unknown as Answer)
        }
      } else if (question?.type === Packet.TYPE.MX) {
        for (const mx of zone.mx ?? []) {
          response.answers.push({
            name,
            type: Packet.TYPE.MX,
            class: Packet.CLASS.IN,
            ttl: 60,
            exchange: mx.exchange,
            priority: mx.priority,
          } as unknown as Answer)
        }
      }
      send(response)
    },
  })
  const port = await freePort()
  await server.listen({ udp: { port, address: '127.0.0.1' } })
  return {
    address: `127.0.0.1:${port}`,
    zones,
    async stop() {
      await server.close()
    },
  }
}

/** One raw SMTP reply: the code and the full text of its last line. */
export interface Reply {
  code: number
  text: string
}

/**
 * A raw SMTP client for exact replies: `send` writes one command and resolves with its reply.
 * Used where a full client (nodemailer) would hide the server's words.
 */
export async function rawSmtp(port: number, host = '127.0.0.1') {
  const socket = net.connect(port, host)
  let buffer = ''
  const pending: ((r: Reply) => void)[] = []
  const replies: Reply[] = []
  socket.on('data', (d) => {
    buffer += d.toString('utf8')
    for (;;) {
      const m = /^(\d{3})([ -])(.*)\r\n/.exec(buffer)
      if (!m) break
      buffer = buffer.slice(m[0].length)
      if (m[2] === '-') continue
      const reply = { code: Number(m[1]), text: `${m[1]} ${m[3]}` }
      const next = pending.shift()
      if (next) next(reply)
      else replies.push(reply)
    }
  })
  const read = (): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const queued = replies.shift()
      if (queued) {
        resolve(queued)
        return
      }
      const timer = setTimeout(() => reject(new Error('no SMTP reply within 30s')), 30_000)
      pending.push((r) => {
        clearTimeout(timer)
        resolve(r)
      })
    })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  const greeting = await read()
  return {
    greeting,
    /** the next reply, for pipelined commands */
    read,
    /** writes raw bytes, with no reply expected */
    write(data: string) {
      socket.write(data)
    },
    send(line: string): Promise<Reply> {
      socket.write(`${line}\r\n`)
      return read()
    },
    /** Sends a message body after DATA (dot-stuffed here) and returns the final reply. */
    data(body: string | Buffer): Promise<Reply> {
      const text = Buffer.isBuffer(body) ? body.toString('latin1') : body
      const stuffed = text.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..')
      socket.write(Buffer.from(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`, 'latin1'))
      return read()
    },
    close() {
      socket.destroy()
    },
  }
}

export { CLAMD_BINARY, EICAR, EICAR_SIGNATURE } from '@moat/scan'

export interface Clamd {
  url: string
  port: number
  stop(): Promise<void>
}

/**
 * A real clamd on a free loopback port with a one-signature database that detects EICAR
 * (written here, so no signature download is needed).
 */
export async function startClamd(): Promise<Clamd> {
  const dir = await tempDir('moat-clamd-')
  const clamd = await startLocalClamd({
    dir,
    port: await freePort(),
    signatures: 'test',
    startTimeoutMs: 60_000,
  })
  return {
    url: clamd.url,
    port: clamd.port,
    async stop() {
      await clamd.stop()
      await fs.rm(dir, { recursive: true, force: true })
    },
  }
}
