import net from 'node:net'
import tls from 'node:tls'

/** What a test connection to one destination found. */
export interface ProbeResult {
  ok: boolean
  /** the server's greeting, e.g. `220 mail.example.com ESMTP Postfix` */
  banner: string | null
  /** STARTTLS offered after EHLO, and whether the handshake then worked */
  starttls: { offered: boolean; negotiated: boolean; protocol: string | null }
  /** what failed, in words: connection refused, timeout, a 4xx/5xx reply, TLS required but not offered */
  error: string | null
  ms: number
}

/** A line-oriented SMTP reader over a socket that can be swapped for its TLS upgrade. */
class Replies {
  private buffer = ''
  private waiting: ((reply: string) => void) | undefined
  private lines: string[] = []
  failure: Error | undefined

  attach(socket: net.Socket | tls.TLSSocket): void {
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.buffer += chunk
      let at = this.buffer.indexOf('\n')
      while (at >= 0) {
        const line = this.buffer.slice(0, at).replace(/\r$/, '')
        this.buffer = this.buffer.slice(at + 1)
        this.lines.push(line)
        // the last line of a reply has a space (or nothing) after the code
        if (/^\d{3}(?: |$)/.test(line) && this.waiting) {
          const reply = this.lines.join('\n')
          this.lines = []
          const done = this.waiting
          this.waiting = undefined
          done(reply)
        }
        at = this.buffer.indexOf('\n')
      }
    })
  }

  next(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure)
      const timer = setTimeout(() => {
        this.waiting = undefined
        reject(new Error(`no answer within ${Math.round(timeoutMs / 1000)}s`))
      }, timeoutMs)
      this.waiting = (reply) => {
        clearTimeout(timer)
        resolve(reply)
      }
    })
  }
}

/**
 * Opens SMTP to a destination the way delivery would: greeting, EHLO, STARTTLS when offered (or
 * required), EHLO again, QUIT. Sends no mail. The certificate is not checked, as in delivery.
 */
export async function probeSmtp(
  dest: { host: string; port: number; tls?: string },
  options: { hostname: string; timeoutMs: number },
): Promise<ProbeResult> {
  const started = Date.now()
  const result: ProbeResult = {
    ok: false,
    banner: null,
    starttls: { offered: false, negotiated: false, protocol: null },
    error: null,
    ms: 0,
  }
  const replies = new Replies()
  let socket: net.Socket | tls.TLSSocket | undefined
  const expect = async (code: string, what: string) => {
    const reply = await replies.next(options.timeoutMs)
    if (!reply.startsWith(code)) throw new Error(`${what}: ${reply.split('\n').join(' / ')}`)
    return reply
  }
  try {
    socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: dest.host, port: dest.port, timeout: options.timeoutMs })
      s.once('connect', () => resolve(s))
      s.once('timeout', () => reject(new Error(`connection timed out after ${options.timeoutMs / 1000}s`)))
      s.once('error', reject)
    })
    socket.on('error', (err) => {
      replies.failure = err
    })
    replies.attach(socket)
    const greeting = await replies.next(options.timeoutMs)
    result.banner = greeting.split('\n')[0] ?? greeting
    if (!greeting.startsWith('220')) throw new Error(`the server refused the connection: ${result.banner}`)
    socket.write(`EHLO ${options.hostname}\r\n`)
    const ehlo = await expect('250', 'EHLO was refused')
    result.starttls.offered = /^250[- ]STARTTLS\b/im.test(ehlo)
    if (!result.starttls.offered && dest.tls === 'required') {
      throw new Error('the server does not offer STARTTLS, and this destination requires TLS')
    }
    if (result.starttls.offered) {
      socket.write('STARTTLS\r\n')
      await expect('220', 'STARTTLS was refused')
      const plain = socket as net.Socket
      plain.removeAllListeners('data')
      socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({
          socket: plain,
          servername: net.isIP(dest.host) ? undefined : dest.host,
          rejectUnauthorized: false,
        })
        s.once('secureConnect', () => resolve(s))
        s.once('error', (err) => reject(new Error(`the TLS handshake failed: ${err.message}`)))
      })
      socket.on('error', (err) => {
        replies.failure = err
      })
      replies.attach(socket)
      result.starttls.negotiated = true
      result.starttls.protocol = (socket as tls.TLSSocket).getProtocol()
      socket.write(`EHLO ${options.hostname}\r\n`)
      await expect('250', 'EHLO after STARTTLS was refused')
    }
    socket.write('QUIT\r\n')
    result.ok = true
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    result.error =
      e.code === 'ECONNREFUSED'
        ? `connection refused by ${dest.host}:${dest.port}`
        : e.code === 'ENOTFOUND'
          ? `${dest.host} does not resolve`
          : e.message
  } finally {
    socket?.destroy()
    result.ms = Date.now() - started
  }
  return result
}
