import type { MessageView } from './parse'

/**
 * Every symbol Moat can give a message, with its weight, in one table an operator can read.
 * A message's score is the sum of its symbols' scores; the tenant's policy turns the score into an
 * action (see `policy.ts`). Positive means spammy, negative means hammy.
 *
 * DNS blocklist symbols are not here: their names and weights come with each configured zone
 * (`MOAT_DNSBL_ZONES`).
 */
export const SYMBOLS = {
  // parsing defects: the message is still scored, the defect is one more piece of evidence
  MIME_PARSE_ERROR: { score: 2.0, description: 'MIME structure could not be parsed' },
  MIME_TOO_COMPLEX: { score: 2.5, description: 'too many or too deeply nested MIME parts; body not parsed' },
  MIME_MISSING_BOUNDARY: { score: 1.0, description: 'multipart without a usable boundary' },
  MIME_UNTERMINATED: { score: 0.5, description: 'multipart never closed (truncated message?)' },
  MIME_NO_BODY: { score: 0.5, description: 'no empty line between header and body' },
  HEADER_TOO_LONG: { score: 2.0, description: 'header block or a header line far beyond RFC 5322 limits' },
  HEADER_MALFORMED: { score: 1.0, description: 'a header line that is not "Name: value"' },

  // header heuristics
  MISSING_DATE: { score: 1.0, description: 'no Date header' },
  INVALID_DATE: { score: 1.0, description: 'Date header that does not parse' },
  DATE_IN_FUTURE: { score: 1.5, description: 'Date more than a day ahead of the time of scanning' },
  MISSING_MESSAGE_ID: { score: 0.8, description: 'no Message-ID header' },
  INVALID_MESSAGE_ID: { score: 0.8, description: 'Message-ID not of the form <local@domain>' },
  MISSING_FROM: { score: 2.0, description: 'no From address' },
  MULTIPLE_FROM: { score: 1.5, description: 'more than one address in From' },
  FROM_NAME_HAS_OTHER_ADDRESS: {
    score: 1.5,
    description: 'From display name shows an address other than the real sender',
  },
  FROM_NAME_SPOOFS_RCPT_DOMAIN: {
    score: 3.0,
    description: "From display name names the recipient's own domain, but the mail comes from elsewhere",
  },
  SUBJECT_ALL_CAPS: { score: 0.5, description: 'subject written in capitals' },

  // content heuristics
  HTML_ONLY: { score: 0.3, description: 'HTML body without a text alternative' },
  HTML_HIDDEN_TEXT: { score: 1.5, description: 'HTML with text hidden by style (display:none, zero size)' },
  URL_TEXT_MISMATCH: {
    score: 2.0,
    description: 'a link whose visible text names another host than its target',
  },
  URL_NUMERIC_HOST: { score: 1.5, description: 'a link to a bare IP address' },
  ATTACH_EXECUTABLE: { score: 4.0, description: 'executable or script attachment (.exe, .scr, .js, …)' },
  ATTACH_DOUBLE_EXTENSION: { score: 4.0, description: 'attachment named like invoice.pdf.exe' },
  ATTACH_ENCRYPTED_ARCHIVE: {
    score: 3.0,
    description: 'password-protected archive (content hidden from scanning)',
  },
  ATTACH_MACRO_OFFICE: { score: 1.5, description: 'macro-enabled Office document (.docm, .xlsm, …)' },

  // sender authentication (mailauth)
  SPF_PASS: { score: -0.1, description: 'SPF pass for the envelope sender' },
  SPF_FAIL: { score: 2.0, description: 'SPF fail: the connecting IP is not allowed to send for the sender' },
  SPF_SOFTFAIL: { score: 0.8, description: 'SPF softfail' },
  SPF_PERMERROR: { score: 0.3, description: 'SPF record is broken' },
  DKIM_VALID_ALIGNED: { score: -0.5, description: 'valid DKIM signature by the From domain' },
  DKIM_VALID: { score: -0.1, description: 'valid DKIM signature by another domain' },
  DKIM_INVALID: { score: 1.0, description: 'DKIM signature present but does not verify' },
  DMARC_PASS: { score: -1.0, description: 'DMARC pass: the From domain is authenticated' },
  DMARC_FAIL_NONE: { score: 1.0, description: 'DMARC fail, the domain publishes p=none' },
  DMARC_QUARANTINE: { score: 7.0, description: 'DMARC fail, the domain asks for quarantine' },
  DMARC_REJECT: { score: 12.0, description: 'DMARC fail, the domain asks for reject' },
  ARC_FAIL: { score: 0.5, description: 'broken ARC chain' },

  // content model: its probability becomes a score by contentScore() (below)
  CONTENT_SPAM: {
    score: 0,
    description: 'statistical content model says spam (score scales with certainty)',
  },
  CONTENT_HAM: { score: 0, description: 'statistical content model says ham (score scales with certainty)' },
  CONTENT_MODEL_MISSING: { score: 0, description: 'no content model loaded; content not scored' },

  // network reputation
  DNSBL_ERROR: { score: 0, description: 'a blocklist did not answer in time' },
} as const satisfies Record<string, { score: number; description: string }>

export type SymbolName = keyof typeof SYMBOLS

/**
 * The content model's spam probability p becomes a score: `(p - 0.5) * 2 * 10` for p ≥ 0.5 (up to
 * +10) and half that for p < 0.5 (down to −5), so that a model that is fairly sure of ham cannot
 * outweigh hard evidence such as an executable attachment plus a DMARC failure. With the default
 * thresholds the model alone tags at p ≥ 0.75 and quarantines at p ≥ 0.85 (chosen on a
 * cross-validation split other than the one reported; see load-tests/results/spam-engine.md).
 */
export const CONTENT_MODEL_SCALE = { spam: 10, ham: 5 }

export function contentScore(p: number): number {
  return (p - 0.5) * 2 * (p >= 0.5 ? CONTENT_MODEL_SCALE.spam : CONTENT_MODEL_SCALE.ham)
}

/** One piece of evidence in a verdict. */
export interface Hit {
  name: string
  score: number
  detail?: string
}

export function hit(name: SymbolName, detail?: string): Hit {
  return detail === undefined
    ? { name, score: SYMBOLS[name].score }
    : { name, score: SYMBOLS[name].score, detail }
}

const EXECUTABLE =
  /\.(exe|scr|com|pif|bat|cmd|cpl|msi|msp|jar|js|jse|vbs|vbe|wsf|wsh|hta|ps1|lnk|reg|dll|iso|img|vhd)$/i
const DOCUMENT = /\.(pdf|docx?|xlsx?|pptx?|rtf|txt|jpe?g|png|gif|zip|rar|html?)\s*\.[a-z0-9]{2,4}$/i
const MACRO_OFFICE = /\.(docm|dotm|xlsm|xltm|xlsb|pptm|potm|ppsm)$/i
/** Elements without content: hiding one (a tracking pixel) hides no text. */
const VOID_ELEMENT = /^(?:area|base|br|col|embed|hr|img|input|link|meta|source|track|wbr)$/i
const HIDING_STYLE =
  /display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:[a-z%]*\s*[;"']|\s*$)|opacity\s*:\s*0(?:\.0+)?\s*[;"']/i

/** A header or content heuristic. `test` returns a detail string, `true`, or nothing when it does not fire. */
interface Rule {
  name: SymbolName
  test(m: MessageView, ctx: RuleContext): string | boolean | undefined
}

export interface RuleContext {
  /** domains of the envelope recipients, lower-cased */
  recipientDomains: string[]
  now: Date
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase()
}

function sameOrg(a: string, b: string): boolean {
  return a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`)
}

const RULES: Rule[] = [
  { name: 'MISSING_DATE', test: (m) => !m.headers.has('date') },
  {
    name: 'INVALID_DATE',
    test: (m) => {
      const d = m.headers.get('date')?.[0]
      return d !== undefined && Number.isNaN(Date.parse(d.replace(/\([^)]*\)/g, ''))) && d.slice(0, 80)
    },
  },
  {
    name: 'DATE_IN_FUTURE',
    test: (m, ctx) => {
      const d = Date.parse((m.headers.get('date')?.[0] ?? '').replace(/\([^)]*\)/g, ''))
      return !Number.isNaN(d) && d - ctx.now.getTime() > 24 * 3600 * 1000 && new Date(d).toISOString()
    },
  },
  { name: 'MISSING_MESSAGE_ID', test: (m) => !m.headers.has('message-id') },
  {
    name: 'INVALID_MESSAGE_ID',
    test: (m) => {
      const id = m.headers.get('message-id')?.[0]
      return id !== undefined && !/^<[^<>@\s]+@[^<>@\s]+>$/.test(id.trim()) && id.slice(0, 80)
    },
  },
  { name: 'MISSING_FROM', test: (m) => !m.from },
  { name: 'MULTIPLE_FROM', test: (m) => m.fromCount > 1 },
  {
    name: 'FROM_NAME_HAS_OTHER_ADDRESS',
    test: (m) => {
      const shown = /[^\s<>"'@]+@[a-z0-9.-]+\.[a-z]{2,}/i.exec(m.from?.name ?? '')?.[0]?.toLowerCase()
      return (
        shown !== undefined &&
        m.from !== undefined &&
        shown !== m.from.address &&
        `${shown} ≠ ${m.from.address}`
      )
    },
  },
  {
    name: 'FROM_NAME_SPOOFS_RCPT_DOMAIN',
    test: (m, ctx) => {
      if (!m.from) return
      const name = m.from.name.toLowerCase()
      const fromDomain = domainOf(m.from.address)
      const spoofed = ctx.recipientDomains.find(
        (d) => name.includes(d) && !sameOrg(fromDomain, d) && d.includes('.'),
      )
      return spoofed && `"${m.from.name}" <${m.from.address}>`
    },
  },
  {
    name: 'SUBJECT_ALL_CAPS',
    test: (m) => {
      const letters = m.subject.replace(/[^\p{L}]/gu, '')
      return letters.length >= 10 && letters === letters.toUpperCase() && letters !== letters.toLowerCase()
    },
  },
  { name: 'HTML_ONLY', test: (m) => m.html.length > 0 && m.text.trim().length === 0 },
  {
    name: 'HTML_HIDDEN_TEXT',
    test: (m) => hiddenText(m.html),
  },
  {
    name: 'URL_TEXT_MISMATCH',
    test: (m) => {
      for (const link of m.links) {
        if (!link.text || !link.host) continue
        const shown = /(?:https?:\/\/)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/:?#\s]|$)/i
          .exec(link.text)?.[1]
          ?.toLowerCase()
        if (!shown || !/^https?:|^www\./i.test(link.text.trim())) continue
        const target = link.host.replace(/^www\./, '')
        if (!sameOrg(shown.replace(/^www\./, ''), target)) return `${shown} → ${link.host}`
      }
      return
    },
  },
  {
    name: 'URL_NUMERIC_HOST',
    test: (m) => m.links.find((l) => /^\d{1,3}(\.\d{1,3}){3}$|^\[[0-9a-f:]+\]$/i.test(l.host))?.host,
  },
  {
    name: 'ATTACH_EXECUTABLE',
    test: (m) => m.attachments.find((a) => EXECUTABLE.test(a.filename.trim()))?.filename,
  },
  {
    name: 'ATTACH_DOUBLE_EXTENSION',
    test: (m) =>
      m.attachments.find((a) => DOCUMENT.test(a.filename.trim()) && EXECUTABLE.test(a.filename.trim()))
        ?.filename ?? m.attachments.find((a) => /\s{5,}\.[a-z0-9]{2,4}$/i.test(a.filename))?.filename,
  },
  {
    name: 'ATTACH_ENCRYPTED_ARCHIVE',
    test: (m) =>
      m.attachments.find((a) => a.content !== undefined && isEncryptedArchive(a.content))?.filename,
  },
  {
    name: 'ATTACH_MACRO_OFFICE',
    test: (m) => m.attachments.find((a) => MACRO_OFFICE.test(a.filename.trim()))?.filename,
  },
]

const STYLE_ATTR = /^[\s"'/]style\s*=\s*(?:"([^"]*)"|'([^']*)')/

/**
 * The text of the first element whose style hides it, when that is at least 20 letters. One pass
 * over the tags (a regex over the whole body backtracked for seconds on hostile HTML); each tag and
 * the text after it are looked at within fixed bounds.
 */
function hiddenText(html: string): string | undefined {
  const lower = html.toLowerCase()
  for (let i = lower.indexOf('<'); i >= 0; ) {
    const end = lower.indexOf('>', i)
    if (end < 0) return
    const next = lower.indexOf('<', end)
    const tag = lower.slice(i, Math.min(end + 1, i + 2000))
    i = next
    const name = /^<([a-z][a-z0-9]*)[\s/]/.exec(tag)?.[1]
    if (!name || VOID_ELEMENT.test(name) || tag.endsWith('/>')) continue
    const at = tag.search(/[\s"'/]style\s*=/)
    if (at < 0) continue
    const style = STYLE_ATTR.exec(tag.slice(at))
    if (!style || !HIDING_STYLE.test(`${style[1] ?? style[2] ?? ''};`)) continue
    const after = html.slice(end + 1, end + 1 + 3000)
    const close = after.toLowerCase().indexOf(`</${name}`)
    const hidden = (close >= 0 ? after.slice(0, close) : after.slice(0, 300)).replace(/<[^<>]*>/g, '')
    if (hidden.replace(/[^\p{L}]/gu, '').length >= 20) return hidden.trim().slice(0, 60)
  }
  return
}

/** Runs the header and content heuristics, plus the parser's defects. */
export function runRules(m: MessageView, ctx: RuleContext): Hit[] {
  const hits: Hit[] = m.defects.map((d) => hit(d as SymbolName))
  for (const rule of RULES) {
    let result: string | boolean | undefined
    try {
      result = rule.test(m, ctx)
    } catch {
      continue // a heuristic never fails a message
    }
    if (result) hits.push(hit(rule.name, typeof result === 'string' ? result : undefined))
  }
  return hits
}

/**
 * True for a ZIP whose entries are encrypted (general-purpose flag bit 0), a RAR 5 archive with an
 * encryption header, or a 7z whose header is encrypted.
 */
export function isEncryptedArchive(buf: Buffer): boolean {
  if (buf.length >= 30 && buf.readUInt32LE(0) === 0x04034b50) {
    // walk the local file headers
    let o = 0
    for (let n = 0; n < 1000 && o + 30 <= buf.length && buf.readUInt32LE(o) === 0x04034b50; n++) {
      const flags = buf.readUInt16LE(o + 6)
      if (flags & 1) return true
      const compressed = buf.readUInt32LE(o + 18)
      const nameLen = buf.readUInt16LE(o + 26)
      const extraLen = buf.readUInt16LE(o + 28)
      if (flags & 8) break // sizes follow the data; the first entry decided
      o += 30 + nameLen + extraLen + compressed
    }
    return false
  }
  if (buf.subarray(0, 8).equals(Buffer.from('526172211a070100', 'hex'))) {
    // RAR 5: an archive encryption header (type 4) comes right after the signature
    return buf.length > 14 && buf[8 + 4 + 1] === 4
  }
  if (buf.subarray(0, 6).equals(Buffer.from('377abcaf271c', 'hex'))) {
    // 7z with encrypted headers has an AES coder id (06 f1 07 01) near the end
    return buf.subarray(Math.max(0, buf.length - 4096)).includes(Buffer.from('06f10701', 'hex'))
  }
  return false
}
