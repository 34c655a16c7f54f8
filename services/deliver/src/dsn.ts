import { randomBytes } from 'node:crypto'

export interface FailedRecipient {
  address: string
  /** the remote server's reply, or Moat's reason */
  diagnostic: string
  /** the server that refused, when one did */
  remoteMta?: string | undefined
  /** RFC 3463 status, e.g. 5.1.1; taken from the reply when it carries one */
  status?: string | undefined
}

/** `Fri, 27 Nov 2026 08:00:00 +0000` */
function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000')
}

/** The RFC 3463 status to report: the one in the reply when present, else 5.0.0 (4.4.7 for an expiry). */
export function statusOf(diagnostic: string, expired: boolean): string {
  const m = /\b([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(diagnostic)
  if (m && !expired) return `5.${m[2]}.${m[3]}`
  return expired ? '4.4.7' : '5.0.0'
}

/**
 * A delivery status notification (RFC 3464): `multipart/report; report-type=delivery-status` with
 * a human-readable part, the per-recipient `message/delivery-status` and the original message's
 * header (`text/rfc822-headers`). It goes to the envelope sender from the null sender, so it can
 * never bounce itself.
 */
export function buildDsn(input: {
  reportingMta: string
  /** the original envelope sender, the DSN's recipient */
  to: string
  queueId: string
  arrivalDate: Date
  failed: FailedRecipient[]
  expired: boolean
  /** the original header block */
  originalHeaders: string
  now?: Date
}): Buffer {
  const now = input.now ?? new Date()
  const boundary = `moat-dsn-${randomBytes(9).toString('base64url')}`
  const human = [
    `This is the mail system at ${input.reportingMta}.`,
    '',
    input.expired
      ? 'Your message could not be delivered in time to the recipients below; Moat has stopped trying.'
      : 'Your message could not be delivered to the recipients below; the receiving servers refused it.',
    '',
    ...input.failed.map(
      (f) => `<${f.address}>: ${f.remoteMta ? `${f.remoteMta} said: ` : ''}${f.diagnostic}`,
    ),
    '',
  ].join('\r\n')
  const perMessage = [
    `Reporting-MTA: dns; ${input.reportingMta}`,
    `X-Moat-Queue-ID: ${input.queueId}`,
    `Arrival-Date: ${rfc5322Date(input.arrivalDate)}`,
  ]
  const perRecipient = input.failed.map((f) =>
    [
      `Final-Recipient: rfc822; ${f.address}`,
      `Action: failed`,
      `Status: ${f.status ?? statusOf(f.diagnostic, input.expired)}`,
      ...(f.remoteMta ? [`Remote-MTA: dns; ${f.remoteMta}`] : []),
      `Diagnostic-Code: smtp; ${f.diagnostic.replace(/[\r\n]+/g, ' ').slice(0, 900)}`,
      `Last-Attempt-Date: ${rfc5322Date(now)}`,
    ].join('\r\n'),
  )
  const headers = input.originalHeaders.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '\r\n')
  return Buffer.from(
    [
      `From: Mail Delivery System <MAILER-DAEMON@${input.reportingMta}>`,
      `To: <${input.to}>`,
      `Subject: Undelivered Mail Returned to Sender`,
      `Date: ${rfc5322Date(now)}`,
      `Message-ID: <${input.queueId}.dsn.${randomBytes(6).toString('hex')}@${input.reportingMta}>`,
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
      '',
      'This is a MIME-encapsulated delivery status notification.',
      '',
      `--${boundary}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      human,
      `--${boundary}`,
      'Content-Type: message/delivery-status',
      '',
      [perMessage.join('\r\n'), ...perRecipient].join('\r\n\r\n'),
      '',
      `--${boundary}`,
      'Content-Type: text/rfc822-headers',
      '',
      headers,
      `--${boundary}--`,
      '',
    ].join('\r\n'),
    'utf8',
  )
}
