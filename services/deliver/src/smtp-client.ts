import type { Readable } from 'node:stream'
import nodemailer, { type Transporter } from 'nodemailer'
import type SMTPPool from 'nodemailer/lib/smtp-pool'

export interface Destination {
  host: string
  port: number
  /** `required`: STARTTLS or no delivery (the certificate is not checked: customers' servers often have their own) */
  tls?: 'opportunistic' | 'required' | string
  /** the local address to connect from (an egress path's bind IP) */
  localAddress?: string | undefined
  /** the EHLO name; Moat's host name when unset */
  helo?: string | undefined
  /** implicit TLS from the first byte (a smart host on 465) */
  secure?: boolean | undefined
  auth?: { user: string; pass: string } | undefined
  /** the TLS server name when `host` is an address (the MX host's name) */
  servername?: string | undefined
}

/** What one SMTP delivery to one destination did, per recipient. */
export interface SendOutcome {
  /** accepted by the destination */
  accepted: string[]
  /** refused, each with the reply; `permanent` for 5xx */
  refused: { address: string; code: number | null; reply: string; permanent: boolean }[]
  /** the final reply (`250 ...` on success), or the error */
  reply: string
  code: number | null
  /** the server could not be reached or the session broke before a reply (no SMTP answer at all) */
  connectionFailed?: boolean
}

const CONNECTION_ERRORS = new Set([
  'ECONNECTION',
  'ETIMEDOUT',
  'ESOCKET',
  'EDNS',
  'ECONNREFUSED',
  'EADDRNOTAVAIL',
])

/**
 * Pooled SMTP connections to customers' servers, one pool per destination, with opportunistic
 * STARTTLS (nodemailer upgrades whenever the server offers it).
 */
export class SmtpClient {
  private readonly pools = new Map<string, Transporter<SMTPPool.SentMessageInfo>>()

  constructor(private readonly options: { hostname: string; timeoutMs: number; maxConnections?: number }) {}

  private pool(dest: Destination): Transporter<SMTPPool.SentMessageInfo> {
    const requireTLS = dest.tls === 'required'
    const key = JSON.stringify([
      dest.host,
      dest.port,
      dest.localAddress,
      dest.helo,
      dest.secure,
      dest.auth?.user,
      dest.servername,
      requireTLS,
    ])
    let pool = this.pools.get(key)
    if (!pool) {
      pool = nodemailer.createTransport({
        pool: true,
        host: dest.host,
        port: dest.port,
        secure: dest.secure ?? false,
        requireTLS,
        name: dest.helo ?? this.options.hostname,
        ...(dest.localAddress ? { localAddress: dest.localAddress } : {}),
        ...(dest.auth ? { auth: dest.auth } : {}),
        maxConnections: this.options.maxConnections ?? 4,
        maxMessages: 100,
        connectionTimeout: this.options.timeoutMs,
        greetingTimeout: this.options.timeoutMs,
        socketTimeout: this.options.timeoutMs,
        // opportunistic TLS towards the customer's own server: encrypt when offered, whatever its certificate
        tls: { rejectUnauthorized: false, ...(dest.servername ? { servername: dest.servername } : {}) },
      })
      this.pools.set(key, pool)
    }
    return pool
  }

  async send(
    dest: Destination,
    envelope: { from: string; to: string[] },
    raw: Readable | Buffer,
  ): Promise<SendOutcome> {
    try {
      const info = await this.pool(dest).sendMail({ envelope: { from: envelope.from, to: envelope.to }, raw })
      const rejected = (info.rejected ?? []).map(String)
      const rejectedErrors = (info as { rejectedErrors?: SmtpError[] }).rejectedErrors ?? []
      return {
        accepted: (info.accepted ?? []).map(String),
        refused: rejected.map((address, i) => refusal(address, rejectedErrors[i])),
        reply: info.response,
        code: Number.parseInt(info.response, 10) || 250,
      }
    } catch (err) {
      const e = err as SmtpError
      if (e.code === 'EENVELOPE' && e.rejected?.length) {
        // every recipient was refused at RCPT time
        return {
          accepted: [],
          refused: e.rejected.map((address, i) => refusal(String(address), e.rejectedErrors?.[i] ?? e)),
          reply: e.response ?? e.message,
          code: e.responseCode ?? null,
        }
      }
      if (e.code === 'ETLS') {
        // no TLS where it is required: the mail waits for the customer to fix their server or route
        const reply = `TLS could not be set up (STARTTLS: ${e.response ?? e.message}); this destination requires TLS, so the mail waits`
        return {
          accepted: [],
          refused: envelope.to.map((address) => ({ address, code: null, reply, permanent: false })),
          reply,
          code: null,
        }
      }
      const code = e.responseCode ?? null
      const reply = e.response ?? `${e.code ?? 'error'}: ${e.message}`
      return {
        connectionFailed: code === null && CONNECTION_ERRORS.has(e.code ?? ''),
        accepted: [],
        refused: envelope.to.map((address) => ({
          address,
          code,
          reply,
          permanent: code !== null && code >= 500,
        })),
        reply,
        code,
      }
    }
  }

  close(): void {
    for (const pool of this.pools.values()) pool.close()
    this.pools.clear()
  }
}

interface SmtpError extends Error {
  code?: string
  responseCode?: number
  response?: string
  rejected?: string[]
  rejectedErrors?: SmtpError[]
}

function refusal(address: string, err: SmtpError | undefined): SendOutcome['refused'][number] {
  const code = err?.responseCode ?? null
  return {
    address,
    code,
    reply: err?.response ?? err?.message ?? 'refused',
    permanent: code !== null && code >= 500,
  }
}
