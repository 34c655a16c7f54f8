import type { ObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import {
  authenticateSmtp,
  checkSenderDomain,
  checkSendingRate,
  loadRelayMatcher,
  recordEvent,
  type ScanJob,
  type Submitter,
} from '@moat/core'
import { type Db, messages, newId, recipients, tenants } from '@moat/db'
import type { Logger } from '@moat/log'
import type { Queue } from '@moat/queue'
import { eq } from 'drizzle-orm'
import addressparser from 'nodemailer/lib/addressparser'
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server'
import { AuthThrottle } from './auth-throttle'
import { cachedFor, rfc5322Date, storeData } from './server'
import { keepExplicitStatusCodes, reply, SmtpReply } from './smtp-replies'
import { loadTls } from './tls'

export interface SubmissionDeps {
  config: Config
  db: Db
  store: ObjectStore
  scanQueue: Queue<ScanJob>
  log: Logger
  /** the AUTH failure counter; shared by both listeners, one per process */
  throttle?: AuthThrottle
}

export interface SubmissionServer {
  /** STARTTLS, AUTH only after it */
  port: number
  /** implicit TLS */
  securePort: number
  close(): Promise<void>
}

export const submissionReply = {
  authRequired: () =>
    new SmtpReply(
      530,
      '5.7.0 Authentication required: AUTH with your SMTP credentials, or relay from a registered network',
    ),
  badCredentials: () => new SmtpReply(535, '5.7.8 Authentication credentials invalid'),
  credentialSuspended: (why: string) =>
    new SmtpReply(535, `5.7.8 These credentials are suspended (${why}); an admin must re-enable them`),
  authBlocked: (seconds: number) =>
    new SmtpReply(
      454,
      `4.7.0 Too many failed authentications from your address; try again in ${seconds} seconds`,
    ),
  senderRefused: (why: string) => new SmtpReply(550, `5.7.1 Sender refused: ${why}`),
  fromRefused: (why: string) => new SmtpReply(550, `5.7.1 From header refused: ${why}`),
  rateLimited: (why: string) =>
    new SmtpReply(451, `4.7.0 Sending rate limit reached (${why}); try again later`),
  tenantSuspended: (why: string) =>
    new SmtpReply(451, `4.7.1 Sending is suspended for this account (${why}); try again once it is resumed`),
}

/** How long the table of relay networks is reused. */
const RELAY_CACHE_MS = 5_000

/**
 * The submission service for customers' outbound mail: port `MOAT_SUBMISSION_PORT` with STARTTLS
 * (AUTH only after it) and `MOAT_SUBMISSIONS_PORT` with implicit TLS. A submitter is a tenant's
 * SMTP credential (AUTH PLAIN or LOGIN) or a mail server in a network the tenant registered. The
 * envelope sender and the From header must be in one of the tenant's verified domains. As for
 * inbound mail, `250` means the raw message is stored and its rows and scan job are committed.
 */
export async function startSubmission(deps: SubmissionDeps): Promise<SubmissionServer> {
  const { config, db, log } = deps
  keepExplicitStatusCodes()
  const tls = await loadTls({
    certFile: config.smtp.tlsCert,
    keyFile: config.smtp.tlsKey,
    dataDir: config.dataDir,
    hostname: config.hostname,
  })
  const throttle =
    deps.throttle ??
    new AuthThrottle({
      slowAfter: config.outbound.authSlowAfter,
      blockAfter: config.outbound.authBlockAfter,
      blockSeconds: config.outbound.authBlockSeconds,
    })
  const relayMatcher = cachedFor(RELAY_CACHE_MS, (_: string) => loadRelayMatcher(db))
  const submitters = new WeakMap<SMTPServerSession, Submitter>()

  const options = (secure: boolean): ConstructorParameters<typeof SMTPServer>[0] => ({
    name: config.hostname,
    banner: 'Moat ESMTP submission',
    secure,
    size: config.smtp.maxMessageBytes,
    key: tls.key,
    cert: tls.cert,
    maxClients: config.smtp.maxClients,
    authMethods: ['PLAIN', 'LOGIN'],
    // relay by source network needs no AUTH; everyone else is refused at MAIL FROM
    authOptional: true,
    allowInsecureAuth: false,
    hideENHANCEDSTATUSCODES: false,
    disableReverseLookup: true,
    logger: false,

    onConnect(session, callback) {
      relayMatcher('all').then(
        (match) => {
          const found = match(session.remoteAddress)
          if (found) {
            submitters.set(session, {
              ...found,
              credentialId: null,
              allowedDomains: null,
              via: 'relay',
            })
          }
          callback()
        },
        (err: unknown) => {
          log.error({ err, sessionId: session.id }, 'relay network lookup failed')
          callback(reply.localError('lookup failed'))
        },
      )
    },

    onAuth(auth, session, callback) {
      const ip = session.remoteAddress
      const blocked = throttle.blockedFor(ip)
      if (blocked) {
        callback(submissionReply.authBlocked(blocked))
        return
      }
      authenticateSmtp(db, auth.username ?? '', auth.password ?? '').then(
        async (outcome) => {
          if (outcome.ok) {
            throttle.succeeded(ip)
            submitters.set(session, outcome.submitter)
            log.info(
              { sessionId: session.id, ip, credentialId: outcome.submitter.credentialId },
              'submission authenticated',
            )
            callback(null, { user: outcome.submitter.credentialId ?? undefined })
            return
          }
          const delayMs = throttle.failed(ip)
          log.warn({ sessionId: session.id, ip, user: auth.username, reason: outcome.reason }, 'AUTH failed')
          if (delayMs) await new Promise((r) => setTimeout(r, delayMs))
          callback(
            outcome.reason === 'suspended'
              ? submissionReply.credentialSuspended(outcome.detail)
              : submissionReply.badCredentials(),
          )
        },
        (err: unknown) => {
          log.error({ err, sessionId: session.id }, 'AUTH lookup failed')
          callback(reply.localError('authentication lookup failed'))
        },
      )
    },

    onMailFrom(address, session, callback) {
      const submitter = submitters.get(session)
      if (!submitter) {
        callback(submissionReply.authRequired())
        return
      }
      checkMailFrom(deps, submitter, address.address).then(
        (refusal) => callback(refusal ?? undefined),
        (err: unknown) => {
          log.error({ err, sessionId: session.id }, 'sender check failed')
          callback(reply.localError('sender check failed'))
        },
      )
    },

    onRcptTo(address, session, callback) {
      if (session.envelope.rcptTo.length >= config.smtp.maxRecipients) {
        callback(reply.tooManyRecipients(config.smtp.maxRecipients))
        return
      }
      const at = address.address.lastIndexOf('@')
      if (at <= 0 || at === address.address.length - 1) {
        callback(reply.badAddress(address.address))
        return
      }
      callback()
    },

    onData(stream, session, callback) {
      const submitter = submitters.get(session)
      if (!submitter) {
        stream.resume()
        stream.once('end', () => callback(submissionReply.authRequired()))
        return
      }
      receiveOutbound(deps, stream, session, submitter).then(
        (queueId) => callback(null, reply.queued(queueId)),
        (err: unknown) => {
          if (err instanceof SmtpReply) {
            callback(err)
            return
          }
          log.error({ err, sessionId: session.id }, 'outbound message not accepted')
          callback(reply.localError('message could not be stored'))
        },
      )
    },
  })

  const plain = new SMTPServer(options(false))
  const implicit = new SMTPServer(options(true))
  for (const s of [plain, implicit]) s.on('error', (err) => log.warn({ err }, 'submission connection error'))
  const listen = (server: SMTPServer, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.server.once('error', reject)
      server.listen(port, config.smtp.host, () => {
        const address = server.server.address()
        resolve(typeof address === 'object' && address ? address.port : port)
      })
    })
  const port = await listen(plain, config.outbound.submissionPort)
  let securePort: number
  try {
    securePort = await listen(implicit, config.outbound.submissionsPort)
  } catch (err) {
    await new Promise<void>((resolve) => plain.close(() => resolve()))
    throw err
  }
  log.info({ port, securePort, host: config.smtp.host }, 'submission listening')
  return {
    port,
    securePort,
    close: async () => {
      await Promise.all(
        [plain, implicit].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      )
    },
  }
}

/** The checks at MAIL FROM, in order: the tenant may send, the sender domain is its own, the rate. */
async function checkMailFrom(
  deps: SubmissionDeps,
  submitter: Submitter,
  mailFrom: string,
): Promise<SmtpReply | undefined> {
  const [tenant] = await deps.db
    .select({ status: tenants.status, reason: tenants.suspendedReason, note: tenants.suspendedNote })
    .from(tenants)
    .where(eq(tenants.id, submitter.tenantId))
  if (tenant?.status !== 'active') {
    const why = tenant?.reason === 'billing' ? 'suspended for billing' : 'suspended by the operator'
    return submissionReply.tenantSuspended(tenant?.note ? `${why}: ${tenant.note}` : why)
  }
  if (mailFrom) {
    const why = await checkSenderDomain(deps.db, submitter, domainOf(mailFrom))
    if (why) return submissionReply.senderRefused(why)
  }
  const rate = await checkSendingRate(deps.db, submitter, deps.config.outbound)
  if (!rate.ok) {
    deps.log.warn(
      { tenantId: submitter.tenantId, credentialId: submitter.credentialId, reason: rate.reason },
      'rate limited',
    )
    return submissionReply.rateLimited(rate.reason)
  }
  return undefined
}

function domainOf(address: string): string {
  const at = address.lastIndexOf('@')
  return at > 0 ? address.slice(at + 1) : ''
}

/** Stores an outbound message and records it; resolves with the queue id for the `250`. */
async function receiveOutbound(
  deps: SubmissionDeps,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  submitter: Submitter,
): Promise<string> {
  const { config, store, log, db } = deps
  const queueId = newId()
  const now = new Date()
  const objectKey = `outbound/${now.toISOString().slice(0, 10).replaceAll('-', '/')}/${queueId}.eml`
  const helo = session.hostNameAppearsAs || 'unknown'
  const protocol = `ESMTP${session.secure ? 'S' : ''}${submitter.via === 'auth' ? 'A' : ''}`
  const received =
    `Received: from ${helo} ([${session.remoteAddress}])\r\n` +
    `\tby ${config.hostname} (Moat) with ${protocol} id ${queueId};\r\n` +
    `\t${rfc5322Date(now)}\r\n`
  const { size, headers } = await storeData(store, stream, objectKey, received, config.smtp.maxMessageBytes)
  const { subject, messageId, from } = headers.parsed()
  const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
  const fromRefusal = await checkFromHeader(db, submitter, from)
  if (fromRefusal) {
    await store.delete(objectKey).catch(() => {})
    log.info(
      { sessionId: session.id, tenantId: submitter.tenantId, reason: fromRefusal.message },
      'From refused',
    )
    throw fromRefusal
  }
  const to = session.envelope.rcptTo.map((r) => r.address)
  try {
    const id = newId('msg')
    await db.transaction(async (tx) => {
      await tx.insert(messages).values({
        id,
        tenantId: submitter.tenantId,
        queueId,
        direction: 'outbound',
        status: 'received',
        mailFrom,
        rcptTo: to,
        objectKey,
        size,
        subject,
        messageIdHeader: messageId,
        clientIp: session.remoteAddress,
        clientHelo: session.hostNameAppearsAs,
        credentialId: submitter.credentialId,
        receivedAt: now,
      })
      await Promise.all([
        tx
          .insert(recipients)
          .values(
            to.map((address) => ({ messageId: id, tenantId: submitter.tenantId, address, domainId: null })),
          ),
        recordEvent(tx, { id, tenantId: submitter.tenantId }, 'received', {
          queueId,
          direction: 'outbound',
          from: mailFrom,
          to,
          size,
          clientIp: session.remoteAddress,
          helo: session.hostNameAppearsAs,
          tls: Boolean(session.secure),
          via: submitter.via,
          credentialId: submitter.credentialId,
        }),
        deps.scanQueue.send({ messageId: id }, { tx }),
      ])
    })
    log.info(
      {
        sessionId: session.id,
        queueId,
        messageId: id,
        size,
        recipients: to.length,
        tenantId: submitter.tenantId,
      },
      'outbound message queued',
    )
    return queueId
  } catch (err) {
    await store.delete(objectKey).catch(() => {})
    throw err
  }
}

/** Every address in From must be in one of the submitter's domains; a message without From is refused. */
async function checkFromHeader(
  db: Db,
  submitter: Submitter,
  from: string | null,
): Promise<SmtpReply | undefined> {
  if (!from) return submissionReply.fromRefused('the message has no From header')
  const addresses = addressparser(from, { flatten: true })
    .map((a) => a.address)
    .filter((a): a is string => Boolean(a))
  if (!addresses.length) return submissionReply.fromRefused(`no address in From: ${from.slice(0, 200)}`)
  for (const address of addresses) {
    const why = await checkSenderDomain(db, submitter, domainOf(address))
    if (why) return submissionReply.fromRefused(why)
  }
  return undefined
}
