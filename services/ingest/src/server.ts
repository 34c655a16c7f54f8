import { Transform, type TransformCallback } from 'node:stream'
import type { ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import { findAcceptingDomain, recordEvent, type ScanJob } from '@moat/core'
import { type Db, messages, newId, recipients } from '@moat/db'
import type { Logger } from '@moat/log'
import { metrics } from '@moat/metrics'
import type { Queue } from '@moat/queue'
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server'
import { keepExplicitStatusCodes, reply, SmtpReply } from './smtp-replies'
import { loadTls } from './tls'

export interface IngestDeps {
  config: Config
  db: Db
  store: ObjectStore
  scanQueue: Queue<ScanJob>
  log: Logger
}

export interface IngestServer {
  port: number
  /**
   * Graceful stop: no new connections; idle sessions get `421` at once; a transaction under way
   * finishes (its message is stored and answered `250`), and the next `MAIL FROM` gets `421`.
   * Sessions still open after `deadlineMs` get `421` and are closed.
   */
  close(deadlineMs?: number): Promise<void>
}

interface AcceptedRecipient {
  address: string
  tenantId: string
  domainId: string
}

/**
 * The SMTP front door for inbound mail (the customer domains' MX). It accepts a recipient only in
 * a verified customer domain, and answers `250` only once the raw message is in the object store
 * and its rows and scan job are committed.
 */
export async function startIngest(deps: IngestDeps): Promise<IngestServer> {
  const { config, log } = deps
  keepExplicitStatusCodes()
  const tls = await loadTls({
    certFile: config.smtp.tlsCert,
    keyFile: config.smtp.tlsKey,
    dataDir: config.dataDir,
    hostname: config.hostname,
  })
  const accepted = new WeakMap<SMTPServerSession['envelope'], AcceptedRecipient[]>()
  const lookupDomain = cachedFor(DOMAIN_CACHE_MS, (domain: string) => findAcceptingDomain(deps.db, domain))

  const server = new SMTPServer({
    name: config.hostname,
    banner: 'Moat ESMTP',
    size: config.smtp.maxMessageBytes,
    key: tls.key,
    cert: tls.cert,
    useProxy: config.smtp.proxyProtocol,
    maxClients: config.smtp.maxClients,
    disabledCommands: ['AUTH'],
    authOptional: true,
    // RFC 2034 enhanced status codes on every reply (smtp-server leaves them off by default)
    hideENHANCEDSTATUSCODES: false,
    disableReverseLookup: true,
    logger: false,

    onConnect(session, callback) {
      log.debug({ sessionId: session.id, ip: session.remoteAddress }, 'connection')
      metrics.smtpSessions.inc()
      metrics.smtpSessionsOpen.inc()
      callback()
    },

    onClose() {
      metrics.smtpSessionsOpen.dec()
    },

    onRcptTo(address, session, callback) {
      const list = accepted.get(session.envelope) ?? []
      if (session.envelope.rcptTo.length >= config.smtp.maxRecipients) {
        callback(reply.tooManyRecipients(config.smtp.maxRecipients))
        return
      }
      const at = address.address.lastIndexOf('@')
      const domain = at > 0 ? address.address.slice(at + 1) : ''
      if (!domain) {
        callback(reply.badAddress(address.address))
        return
      }
      lookupDomain(domain.toLowerCase()).then(
        (found) => {
          if (!found) {
            log.info(
              { sessionId: session.id, ip: session.remoteAddress, domain },
              'recipient refused: not a customer domain',
            )
            callback(reply.relayDenied(domain))
            return
          }
          // a repeated RCPT TO for the same address is accepted once
          if (!list.some((r) => r.address.toLowerCase() === address.address.toLowerCase())) {
            list.push({ address: address.address, ...found })
          }
          accepted.set(session.envelope, list)
          callback()
        },
        (err: unknown) => {
          log.error({ err, sessionId: session.id }, 'recipient lookup failed')
          callback(reply.localError('recipient lookup failed'))
        },
      )
    },

    onData(stream, session, callback) {
      const recipientsOfMessage = accepted.get(session.envelope) ?? []
      receive(deps, stream, session, recipientsOfMessage).then(
        (queueId) => callback(null, reply.queued(queueId)),
        (err: unknown) => {
          if (err instanceof SmtpReply) {
            callback(err)
            return
          }
          log.error({ err, sessionId: session.id }, 'message not accepted')
          callback(reply.localError('message could not be stored'))
        },
      )
    },
  })
  server.on('error', (err) => log.warn({ err }, 'smtp connection error'))

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject)
    server.listen(config.smtp.port, config.smtp.host, () => resolve())
  })
  const address = server.server.address()
  const port = typeof address === 'object' && address ? address.port : config.smtp.port
  log.info(
    { port, host: config.smtp.host, tls: tls.selfSigned ? 'self-signed' : 'configured' },
    'ingest listening',
  )

  return {
    port,
    close(deadlineMs = 30_000) {
      // smtp-server stops listening, answers any further command with `421 4.4.2 Server shutting
      // down` (a transaction's DATA in progress still completes), waits `closeTimeout` for open
      // sessions, then sends them 421
      ;(server as unknown as { options: { closeTimeout: number } }).options.closeTimeout = deadlineMs
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      // sessions between transactions have nothing to finish: 421 now, so they retry elsewhere
      for (const connection of (server as unknown as { connections: Set<OpenConnection> }).connections) {
        if (!connection.session?.envelope?.mailFrom && !connection._dataStream) {
          // smtp-server closes the connection after any 421
          connection.send(421, reply.shuttingDown().message)
        }
      }
      return closed
    },
  }
}

/** What `close()` reaches into on smtp-server's connections (not part of its typed API). */
interface OpenConnection {
  session?: { envelope?: { mailFrom?: unknown } }
  _dataStream?: unknown
  send(code: number, message: string): void
}

/** How long a recipient domain's lookup is reused: a newly verified domain takes effect within this. */
const DOMAIN_CACHE_MS = 5_000

/** Memoizes an async lookup per key for `ttlMs`, answers and misses alike; failures are not kept. */
export function cachedFor<T>(
  ttlMs: number,
  lookup: (key: string) => Promise<T>,
): (key: string) => Promise<T> {
  const cache = new Map<string, { value: Promise<T>; expires: number }>()
  return (key) => {
    const now = Date.now()
    const hit = cache.get(key)
    if (hit && hit.expires > now) return hit.value
    if (cache.size > 10_000) cache.clear()
    const value = lookup(key)
    cache.set(key, { value, expires: now + ttlMs })
    value.catch(() => cache.delete(key))
    return value
  }
}

/** Stores one message and records it; resolves with the queue id to quote in the `250` reply. */
async function receive(
  deps: IngestDeps,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  accepted: AcceptedRecipient[],
): Promise<string> {
  const { config, store, log } = deps
  const queueId = newId()
  const now = new Date()
  const objectKey = `inbound/${now.toISOString().slice(0, 10).replaceAll('-', '/')}/${queueId}.eml`
  const { size, headers } = await storeData(
    store,
    stream,
    objectKey,
    receivedHeader(session, config.hostname, queueId, now, accepted),
    config.smtp.maxMessageBytes,
  )

  const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
  const { subject, messageId } = headers.parsed()
  const byTenant = new Map<string, AcceptedRecipient[]>()
  for (const r of accepted) byTenant.set(r.tenantId, [...(byTenant.get(r.tenantId) ?? []), r])

  try {
    const ids = await deps.db.transaction(async (tx) => {
      const created: string[] = []
      for (const [tenantId, list] of byTenant) {
        const id = newId('msg')
        await tx.insert(messages).values({
          id,
          tenantId,
          queueId,
          direction: 'inbound',
          status: 'received',
          mailFrom,
          rcptTo: list.map((r) => r.address),
          objectKey,
          size,
          subject,
          messageIdHeader: messageId,
          clientIp: session.remoteAddress,
          clientHelo: session.hostNameAppearsAs,
          receivedAt: now,
        })
        // independent of each other once the message row exists: pipelined on the connection
        await Promise.all([
          tx
            .insert(recipients)
            .values(list.map((r) => ({ messageId: id, tenantId, address: r.address, domainId: r.domainId }))),
          recordEvent(tx, { id, tenantId }, 'received', {
            queueId,
            from: mailFrom,
            to: list.map((r) => r.address),
            size,
            clientIp: session.remoteAddress,
            helo: session.hostNameAppearsAs,
            tls: Boolean(session.secure),
          }),
          deps.scanQueue.send({ messageId: id }, { tx }),
        ])
        created.push(id)
      }
      return created
    })
    log.info(
      { sessionId: session.id, queueId, messageIds: ids, size, recipients: accepted.length },
      'message queued',
    )
    return queueId
  } catch (err) {
    await store.delete(objectKey).catch(() => {})
    throw err
  }
}

/**
 * Streams a transaction's DATA into the store under `objectKey`, behind the `Received:` line,
 * capturing the header on the way. When the store fails or the message is too big, nothing is
 * left behind: the object is deleted and the error (or the size reply) thrown.
 */
export async function storeData(
  store: ObjectStore,
  stream: SMTPServerDataStream,
  objectKey: string,
  received: string,
  maxBytes: number,
): Promise<{ size: number; headers: HeaderCapture }> {
  const headers = new HeaderCapture(received)
  let ended = false
  stream.once('end', () => {
    ended = true
  })
  stream.pipe(headers)
  let size: number
  try {
    ;({ size } = await store.put(objectKey, headers))
  } catch (err) {
    stream.unpipe(headers)
    await drain(stream, () => ended)
    await store.delete(objectKey).catch(() => {})
    throw err
  }
  if (stream.sizeExceeded) {
    await store.delete(objectKey).catch(() => {})
    throw reply.tooBig(maxBytes)
  }
  return { size, headers }
}

/** Reads what is left of the SMTP data stream, so that the session can answer. */
export function drain(stream: SMTPServerDataStream, ended: () => boolean): Promise<void> {
  if (ended()) return Promise.resolve()
  return new Promise((resolve) => {
    stream.once('end', () => resolve())
    stream.resume()
  })
}

function receivedHeader(
  session: SMTPServerSession,
  hostname: string,
  queueId: string,
  date: Date,
  accepted: AcceptedRecipient[],
): string {
  const helo = session.hostNameAppearsAs || 'unknown'
  const protocol = session.secure ? 'ESMTPS' : 'ESMTP'
  const tlsInfo =
    session.secure && session.tlsOptions ? ` (${session.tlsOptions.version} ${session.tlsOptions.name})` : ''
  const forClause = accepted.length === 1 && accepted[0] ? `\r\n\tfor <${accepted[0].address}>` : ''
  return (
    `Received: from ${helo} ([${session.remoteAddress}])\r\n` +
    `\tby ${hostname} (Moat) with ${protocol}${tlsInfo} id ${queueId}${forClause};\r\n` +
    `\t${rfc5322Date(date)}\r\n`
  )
}

/** `Fri, 27 Nov 2026 08:00:00 +0000` */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000')
}

const HEADER_LIMIT = 64 * 1024

/**
 * Passes the message through unchanged after a prepended header, and keeps the header block
 * (up to 64 KiB) to read the Subject and Message-ID from.
 */
export class HeaderCapture extends Transform {
  private head: Buffer[] = []
  private headBytes = 0
  private done = false

  constructor(prefix: string) {
    super()
    this.push(Buffer.from(prefix))
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (!this.done) {
      this.head.push(chunk)
      this.headBytes += chunk.length
      const joined = Buffer.concat(this.head)
      if (joined.indexOf('\r\n\r\n') >= 0 || joined.indexOf('\n\n') >= 0 || this.headBytes >= HEADER_LIMIT) {
        this.done = true
      }
    }
    callback(null, chunk)
  }

  parsed(): { subject: string | null; messageId: string | null; from: string | null } {
    const raw = Buffer.concat(this.head).subarray(0, HEADER_LIMIT).toString('utf8')
    const end = raw.search(/\r?\n\r?\n/)
    const block = (end >= 0 ? raw.slice(0, end) : raw).replace(/\r?\n[ \t]+/g, ' ')
    const field = (name: string): string | null => {
      const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(block)
      return m?.[1] ? m[1].trim().slice(0, 998) : null
    }
    return { subject: field('Subject'), messageId: field('Message-ID'), from: field('From') }
  }
}
