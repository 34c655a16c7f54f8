import { metrics } from '@moat/metrics'
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js'

/** An SMTP reply Moat gives on purpose: the code and the text, which starts with its RFC 3463 status. */
export class SmtpReply extends Error {
  readonly responseCode: number
  constructor(code: number, text: string) {
    super(text)
    this.responseCode = code
  }
}

export const reply = {
  relayDenied: (domain: string) =>
    new SmtpReply(550, `5.7.1 Relaying denied: ${domain} is not a domain served here`),
  badAddress: (address: string) => new SmtpReply(550, `5.1.3 Bad recipient address syntax: ${address}`),
  tooManyRecipients: (max: number) =>
    new SmtpReply(452, `4.5.3 Too many recipients (at most ${max} per message)`),
  tooBig: (max: number) => new SmtpReply(552, `5.3.4 Message too big (at most ${max} bytes)`),
  localError: (what: string) =>
    new SmtpReply(451, `4.3.0 Temporary local error (${what}); please try again later`),
  shuttingDown: () => new SmtpReply(421, '4.3.2 Service shutting down; please try again later'),
  queued: (id: string) => `2.0.0 queued as ${id}`,
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /
type Send = (code: number, data?: string | string[], context?: string | false) => void

/**
 * smtp-server adds an RFC 3463 enhanced status code to every reply from a table keyed by the
 * reply code alone, which would turn `550 5.7.1` (relaying denied) into `550 5.1.1` and
 * `452 4.5.3` into `452 4.2.2`. Replies whose text already starts with an enhanced code are sent
 * as written; every other reply keeps the library's code. Every reply is also counted in
 * `moat_smtp_replies_total` by its code.
 */
export function keepExplicitStatusCodes(): void {
  const proto = SMTPConnection.prototype as unknown as { send: Send; __moatPatched?: boolean }
  if (proto.__moatPatched) return
  const original = proto.send
  proto.send = function send(this: unknown, code, data, context) {
    metrics.smtpReplies.inc({ code: String(code) })
    if (typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false)
    return original.call(this, code, data, context)
  }
  proto.__moatPatched = true
}
