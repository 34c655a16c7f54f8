import { type AddressObject, type ParsedMail, simpleParser } from 'mailparser'

/**
 * What the rules look at: one message read once with mailparser, plus the structural defects
 * found on the way. Reading never throws; a message too broken or too complex to parse fully still
 * gets a view (from its raw header block) and a defect for each problem.
 */
export interface MessageView {
  /** lower-cased header name → every value, in order (from the raw header block) */
  headers: Map<string, string[]>
  from: { address: string; name: string } | undefined
  /** addresses in From: (more than one is a defect of its own) */
  fromCount: number
  /** every From address, lower-cased (DMARC needs exactly one) */
  fromAddresses: string[]
  replyTo: string | undefined
  to: string[]
  subject: string
  text: string
  html: string
  attachments: AttachmentView[]
  links: Link[]
  /** defect symbol names, e.g. MIME_UNTERMINATED */
  defects: string[]
}

export interface AttachmentView {
  filename: string
  contentType: string
  size: number
  /** the decoded content, kept only for archives (checked for encryption) */
  content: Buffer | undefined
}

export interface Link {
  href: string
  /** lower-cased host name, or '' when the link has none */
  host: string
  /** the anchor's visible text for HTML links; '' for links found in plain text */
  text: string
}

/** Bounds on what a message may make the parser do; past them, mailparser is not run at all. */
export const PARSE_LIMITS = {
  headerBytes: 256 * 1024,
  headerLineBytes: 64 * 1024,
  mimeParts: 500,
  mimeDepth: 30,
  /** HTML and text kept for the rules; the rest is ignored */
  bodyChars: 512 * 1024,
  links: 200,
  archiveBytes: 10 * 1024 * 1024,
}

const HEADER_LINE = /^[\x21-\x39\x3b-\x7e]+[ \t]*:/
const ARCHIVE_TYPES = /zip|x-7z|x-rar|octet-stream/i
const ARCHIVE_NAMES = /\.(zip|7z|rar)$/i

/** Reads a raw message into a {@link MessageView}. */
export async function readMessage(raw: Buffer): Promise<MessageView> {
  const { head, defects } = checkStructure(raw)
  const headers = parseHeaderBlock(head)
  const view: MessageView = {
    headers,
    from: undefined,
    fromCount: 0,
    fromAddresses: [],
    replyTo: undefined,
    to: [],
    subject: decodeWords(headers.get('subject')?.[0] ?? ''),
    text: '',
    html: '',
    attachments: [],
    links: [],
    defects,
  }
  if (defects.includes('MIME_TOO_COMPLEX') || defects.includes('HEADER_TOO_LONG')) {
    // the body is not parsed: the header view and the content model still score the message
    view.from = firstAddress(headers.get('from')?.[0])
    view.fromCount = headers.get('from')?.[0] ? 1 : 0
    view.fromAddresses = view.from ? [view.from.address] : []
    return view
  }
  let mail: ParsedMail
  try {
    mail = await simpleParser(raw, {
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipImageLinks: true,
      skipTextLinks: true,
      maxHtmlLengthToParse: PARSE_LIMITS.bodyChars,
    })
  } catch (err) {
    defects.push('MIME_PARSE_ERROR')
    view.from = firstAddress(headers.get('from')?.[0])
    view.fromAddresses = view.from ? [view.from.address] : []
    void err
    return view
  }
  const from = addresses(mail.from)
  view.from = from[0]
  view.fromCount = from.length
  view.fromAddresses = from.map((a) => a.address)
  view.replyTo = addresses(mail.replyTo)[0]?.address
  view.to = [mail.to ?? []].flat().flatMap((a) => addresses(a).map((x) => x.address))
  view.subject = mail.subject ?? ''
  view.text = (mail.text ?? '').slice(0, PARSE_LIMITS.bodyChars)
  view.html = typeof mail.html === 'string' ? mail.html.slice(0, PARSE_LIMITS.bodyChars) : ''
  view.attachments = mail.attachments.map((a) => ({
    filename: a.filename ?? '',
    contentType: a.contentType,
    size: a.size,
    content:
      (ARCHIVE_TYPES.test(a.contentType) || ARCHIVE_NAMES.test(a.filename ?? '')) &&
      a.size <= PARSE_LIMITS.archiveBytes
        ? a.content
        : undefined,
  }))
  view.links = [...htmlLinks(view.html), ...textLinks(view.text)].slice(0, PARSE_LIMITS.links)
  return view
}

function addresses(obj: AddressObject | undefined): { address: string; name: string }[] {
  const out: { address: string; name: string }[] = []
  const walk = (list: AddressObject['value']) => {
    for (const a of list) {
      if (a.group) walk(a.group)
      else if (a.address) out.push({ address: a.address.toLowerCase(), name: a.name ?? '' })
    }
  }
  if (obj) walk(obj.value)
  return out
}

function firstAddress(value: string | undefined): { address: string; name: string } | undefined {
  if (!value) return undefined
  const m = /<([^<>\s]+@[^<>\s]+)>/.exec(value) ?? /([^\s<>"]+@[^\s<>"]+)/.exec(value)
  if (!m?.[1]) return undefined
  return { address: m[1].toLowerCase(), name: value.replace(m[0], '').replace(/"/g, '').trim() }
}

/**
 * Finds the header block and checks the MIME structure without decoding anything: header sizes,
 * how many parts and how deeply nested, whether every multipart is closed. Linear in the message.
 */
export function checkStructure(raw: Buffer): { head: string; defects: string[] } {
  const defects: string[] = []
  let end = raw.indexOf('\r\n\r\n')
  let sep = 4
  const lf = raw.indexOf('\n\n')
  if (end < 0 || (lf >= 0 && lf < end)) {
    end = lf
    sep = 2
  }
  if (end < 0) {
    defects.push('MIME_NO_BODY')
    end = raw.length
    sep = 0
  }
  if (end > PARSE_LIMITS.headerBytes) {
    defects.push('HEADER_TOO_LONG')
    end = PARSE_LIMITS.headerBytes
  }
  const head = raw.toString('latin1', 0, end)
  if (!defects.includes('HEADER_TOO_LONG')) {
    let lineStart = 0
    for (let i = head.indexOf('\n'); ; i = head.indexOf('\n', i + 1)) {
      const stop = i < 0 ? head.length : i
      if (stop - lineStart > PARSE_LIMITS.headerLineBytes) {
        defects.push('HEADER_TOO_LONG')
        break
      }
      if (i < 0) break
      lineStart = i + 1
    }
  }
  const body = raw.toString('latin1', Math.min(raw.length, end + sep))
  // multipart boundaries declared anywhere (top level or nested part headers)
  const boundaries: string[] = []
  const declared = /content-type:[^\n]*(?:\n[ \t][^\n]*)*/gi
  for (const text of [head, body]) {
    declared.lastIndex = 0
    for (let m = declared.exec(text); m; m = declared.exec(text)) {
      if (!/multipart\//i.test(m[0])) continue
      const b = /boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;"]{1,200}))/i.exec(m[0])
      boundaries.push(b?.[1] ?? b?.[2] ?? '')
      if (boundaries.length > PARSE_LIMITS.mimeDepth * 4) break
    }
  }
  if (boundaries.length > PARSE_LIMITS.mimeDepth) defects.push('MIME_TOO_COMPLEX')
  let parts = 0
  for (
    let i = body.indexOf('\n--');
    i >= 0 && parts <= PARSE_LIMITS.mimeParts;
    i = body.indexOf('\n--', i + 3)
  )
    parts++
  if (parts > PARSE_LIMITS.mimeParts && !defects.includes('MIME_TOO_COMPLEX'))
    defects.push('MIME_TOO_COMPLEX')
  if (boundaries.some((b) => b === '')) defects.push('MIME_MISSING_BOUNDARY')
  else if (!defects.includes('MIME_TOO_COMPLEX')) {
    for (const b of boundaries) {
      if (!body.includes(`--${b}`)) {
        defects.push('MIME_MISSING_BOUNDARY')
        break
      }
      if (!body.includes(`--${b}--`)) {
        defects.push('MIME_UNTERMINATED')
        break
      }
    }
  }
  const unfolded = head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)
  if (
    unfolded.some(
      (line, i) => line !== '' && !(i === 0 && line.startsWith('From ')) && !HEADER_LINE.test(line),
    )
  )
    defects.push('HEADER_MALFORMED')
  return { head, defects }
}

/** Raw header block → lower-cased name → unfolded values (RFC 2047 words left encoded). */
export function parseHeaderBlock(head: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  const lines = head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue
    const values = out.get(name) ?? []
    values.push(line.slice(colon + 1).trim())
    out.set(name, values)
  }
  return out
}

function decodeWords(value: string): string {
  return value.replace(
    /=\?([^?]+)\?([bq])\?([^?]*)\?=/gi,
    (_, _charset: string, enc: string, text: string) => {
      try {
        return enc.toLowerCase() === 'b'
          ? Buffer.from(text, 'base64').toString('utf8')
          : text
              .replace(/_/g, ' ')
              .replace(/=([0-9a-f]{2})/gi, (_m, h: string) => String.fromCharCode(Number.parseInt(h, 16)))
      } catch {
        return text
      }
    },
  )
}

function hostOf(href: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#:\s]+)/i.exec(href) ?? /^www\.([^/?#:\s]+)/i.exec(href)
  if (!m?.[1]) return ''
  const host = m[1].replace(/^[^@]*@/, '').toLowerCase()
  return href.toLowerCase().startsWith('www.') ? `www.${host}` : host
}

/** `<a href>` links with their visible text. A linear scan: no regex backtracking on hostile HTML. */
export function htmlLinks(html: string): Link[] {
  const out: Link[] = []
  const lower = html.toLowerCase()
  let i = lower.indexOf('<a')
  while (i >= 0 && out.length < PARSE_LIMITS.links) {
    const tagEnd = lower.indexOf('>', i)
    if (tagEnd < 0) break
    const tag = html.slice(i, tagEnd + 1)
    const next = lower.indexOf('<a', tagEnd)
    if (/^<a[\s>]/i.test(tag)) {
      const href = /href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i.exec(tag)
      const close = lower.indexOf('</a', tagEnd)
      const inner =
        close >= 0 && (next < 0 || close < next) ? html.slice(tagEnd + 1, Math.min(close, tagEnd + 2000)) : ''
      const value = (href?.[1] ?? href?.[2] ?? href?.[3] ?? '').trim()
      if (value)
        out.push({
          href: value,
          host: hostOf(value),
          text: inner
            .replace(/<[^>]*>/g, ' ')
            .replace(/&nbsp;/g, ' ')
            .replace(/\s+/g, ' ')
            .trim(),
        })
    }
    i = next
  }
  return out
}

const TEXT_URL = /\b(?:https?:\/\/|www\.)[^\s<>"')\]]{1,2000}/gi

export function textLinks(text: string): Link[] {
  const out: Link[] = []
  TEXT_URL.lastIndex = 0
  for (let m = TEXT_URL.exec(text); m && out.length < PARSE_LIMITS.links; m = TEXT_URL.exec(text))
    out.push({ href: m[0], host: hostOf(m[0]), text: '' })
  return out
}
