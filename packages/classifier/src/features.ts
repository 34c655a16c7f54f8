import { decodeEncodedWords, headerValue, type ParsedMessage, parseMessage } from './mime'

/** Default feature space: 2^20 hashed binary features. */
export const DEFAULT_BITS = 20

/**
 * Header names whose presence is a feature. Chosen as generic sender/client behaviour; deliberately
 * excludes headers added by whoever collected a corpus (Received, Delivered-To, X-Spam-*, Return-Path)
 * and mailing-list identities, which would teach the model the corpus instead of spam.
 */
const PRESENCE_HEADERS = new Set([
  'message-id',
  'date',
  'mime-version',
  'reply-to',
  'in-reply-to',
  'references',
  'x-mailer',
  'user-agent',
  'x-priority',
  'x-msmail-priority',
  'importance',
  'organization',
  'content-transfer-encoding',
  'list-unsubscribe',
  'cc',
  'to',
])

const MAX_TOKENS = 4000
const MAX_BIGRAMS = 4000
const WORD_RE = /[a-z0-9$\u00c0-\u024f][a-z0-9$_'\u00c0-\u024f-]*/g
const URL_RE = /\b(?:https?:\/\/|www\.)([a-z0-9.-]{1,253})(?::\d{1,5})?(\/[^\s"'<>()]{0,200})?/gi
const TAG_RE = /<([a-zA-Z][a-zA-Z0-9]{0,9})\b([^<>]{0,400})>/g
const ATTR_RE = /([a-zA-Z-]{1,20})\s*=/g

/** 32-bit FNV-1a over UTF-16 code units. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * Strips tags, scripts, styles and comments; decodes the common entities. A linear scan (no
 * backtracking regex), so unclosed `<!--` or `<a ` repeated many times cannot make it quadratic.
 */
export function stripHtml(html: string): string {
  // ASCII-only lower-casing keeps indices aligned with `html`
  const lower = html.replace(/[A-Z]+/g, (c) => c.toLowerCase())
  const out: string[] = []
  let i = 0
  while (i < html.length) {
    const lt = html.indexOf('<', i)
    if (lt < 0) {
      out.push(html.slice(i))
      break
    }
    out.push(html.slice(i, lt), ' ')
    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4)
      if (end < 0) break
      i = end + 3
      continue
    }
    const gt = html.indexOf('>', lt + 1)
    if (gt < 0) {
      // no '>' anywhere after: the rest is text
      out.push(html.slice(lt + 1))
      break
    }
    const name = /^<\s*([a-z]+)/.exec(lower.slice(lt, Math.min(gt, lt + 12)))?.[1]
    if (name === 'script' || name === 'style') {
      const close = lower.indexOf(`</${name}`, gt + 1)
      if (close < 0) break
      const closeEnd = html.indexOf('>', close)
      i = closeEnd < 0 ? html.length : closeEnd + 1
      continue
    }
    i = gt + 1
  }
  return out
    .join('')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&amp;/gi, '&')
    .replace(/&lt;/gi, '<')
    .replace(/&gt;/gi, '>')
    .replace(/&quot;/gi, '"')
    .replace(/&#(\d{1,6});/g, (_m, n: string) => {
      const code = Number(n)
      return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : ' '
    })
}

/**
 * Lower-cased words of 2–20 chars. Pure numbers become a length class and digits inside words become
 * `9`, so dates, years and ids (corpus artefacts) do not become features of their own.
 */
export function tokenize(text: string, max = MAX_TOKENS): string[] {
  const out: string[] = []
  const lower = text.toLowerCase()
  WORD_RE.lastIndex = 0
  for (let m = WORD_RE.exec(lower); m && out.length < max; m = WORD_RE.exec(lower)) {
    let w = m[0]
    while (w.length > 1 && (w.endsWith('-') || w.endsWith("'") || w.endsWith('_'))) w = w.slice(0, -1)
    if (w.length < 2) continue
    if (w.length > 20) {
      out.push('#long')
      continue
    }
    if (/^\d+$/.test(w)) out.push(`#num${Math.min(w.length, 6)}`)
    else if (/\d/.test(w)) out.push(w.replace(/\d/g, '9'))
    else out.push(w)
  }
  return out
}

function emailDomain(addr: string): string | undefined {
  const m = /@([a-z0-9.-]+)/i.exec(addr)
  return m?.[1]?.toLowerCase().replace(/\.$/, '')
}

/** The last two labels of a hostname (three for short second-level names like co.uk). */
export function baseDomain(host: string): string {
  const labels = host.toLowerCase().split('.').filter(Boolean)
  if (labels.length <= 2) return labels.join('.')
  const n = (labels[labels.length - 2] ?? '').length <= 3 && (labels.at(-1) ?? '').length === 2 ? 3 : 2
  return labels.slice(-n).join('.')
}

/** Optional feature groups (experiments; the defaults are what the shipped model is trained with). */
export interface FeatureConfig {
  /** character n-gram length over the normalised body text; 0 = off */
  charNgrams: number
  /** how many characters of normalised body text the character n-grams read */
  charNgramChars: number
  /** URL path tokens (`up:`) besides the host */
  urlPaths: boolean
  /** names of HTML tags and attributes used (`tag:`, `attr:`) */
  htmlTags: boolean
  /** Content-Type structure and transfer encodings of the parts (`cs:`, `te:`, `mp:`) */
  mimeStructure: boolean
  /** word pairs in the body; max count */
  bodyBigrams: number
  /** skip-one word pairs in the body (`b3:a _ c`); max count, 0 = off */
  skipBigrams: number
  /** sender-consistency header features: Reply-To and Message-ID domain vs the From domain (`hx:`) */
  headerExtras: boolean
}

export const DEFAULT_FEATURES: FeatureConfig = {
  charNgrams: 0,
  charNgramChars: 3000,
  urlPaths: true,
  htmlTags: false,
  mimeStructure: true,
  bodyBigrams: MAX_BIGRAMS,
  skipBigrams: 0,
  headerExtras: true,
}

export interface ExtractOptions extends Partial<FeatureConfig> {
  bits?: number
}

/** The named (unhashed) features of a message, for debugging and tests. */
export function featureNames(msg: ParsedMessage, options: Partial<FeatureConfig> = {}): string[] {
  const cfg = { ...DEFAULT_FEATURES, ...options }
  const f: string[] = []
  const subject = decodeEncodedWords((headerValue(msg.headers, 'subject') ?? '').slice(0, 2000))
  const subjTokens = tokenize(subject, 60)
  for (const t of subjTokens) f.push(`s:${t}`)
  for (let i = 1; i < subjTokens.length; i++) f.push(`s2:${subjTokens[i - 1]} ${subjTokens[i]}`)
  if (subject.length === 0) f.push('s#empty')
  const letters = subject.replace(/[^A-Za-z]/g, '')
  if (letters.length >= 6 && letters === letters.toUpperCase()) f.push('s#caps')
  if (/[!$]{1}/.test(subject)) f.push('s#bang')

  const from = decodeEncodedWords((headerValue(msg.headers, 'from') ?? '').slice(0, 1000))
  const fromDomain = emailDomain(from)
  if (fromDomain) {
    f.push(`fd:${fromDomain}`, `fb:${baseDomain(fromDomain)}`, `ft:${fromDomain.split('.').at(-1)}`)
  } else f.push('fd#none')
  const display = from.replace(/<[^>]*>/g, '').replace(/\S+@\S+/g, '')
  for (const t of tokenize(display, 10)) f.push(`fn:${t}`)

  for (const h of msg.headers) if (PRESENCE_HEADERS.has(h.name)) f.push(`h:${h.name}`)
  if (cfg.headerExtras) headerExtras(f, msg, fromDomain)
  const mailer = headerValue(msg.headers, 'x-mailer') ?? headerValue(msg.headers, 'user-agent')
  if (mailer) for (const t of tokenize(mailer, 4)) f.push(`xm:${t}`)
  const topType = (headerValue(msg.headers, 'content-type') ?? 'text/plain')
    .split(';')[0]
    ?.trim()
    .toLowerCase()
  f.push(`ct:${topType}`)
  for (const t of new Set(msg.leafTypes)) f.push(`lt:${t}`)
  if (msg.attachments > 0) f.push('att', `att:${Math.min(msg.attachments, 3)}`)

  const hasPlain = msg.parts.some((p) => p.type === 'text/plain')
  const hasHtml = msg.parts.some((p) => p.type === 'text/html')
  if (hasHtml && !hasPlain) f.push('b#htmlonly')
  let text = ''
  for (const p of msg.parts) {
    urls(f, p.text, cfg.urlPaths)
    if (p.type === 'text/html') {
      if (/<img\b/i.test(p.text)) f.push('b#img')
      if (/<form\b/i.test(p.text)) f.push('b#form')
      if (cfg.htmlTags) htmlTags(f, p.text)
      text += ` ${stripHtml(p.text)}`
    } else {
      text += ` ${p.text}`
    }
  }
  if (cfg.mimeStructure) {
    f.push(`mp:${msg.leafTypes.slice(0, 6).join(',')}`)
    for (const p of msg.parts) {
      f.push(
        `cs:${(p.charset ?? 'none').slice(0, 20)}`,
        `te:${p.type}:${(p.encoding ?? 'none').slice(0, 20)}`,
      )
    }
  }
  const body = tokenize(text)
  for (const t of body) f.push(`b:${t}`)
  const nb = Math.min(body.length, cfg.bodyBigrams)
  for (let i = 1; i < nb; i++) f.push(`b2:${body[i - 1]} ${body[i]}`)
  const ns = Math.min(body.length, cfg.skipBigrams)
  for (let i = 2; i < ns; i++) f.push(`b3:${body[i - 2]} ${body[i]}`)
  if (cfg.charNgrams > 0) charNgrams(f, text, cfg.charNgrams, cfg.charNgramChars)
  f.push(`b#len${Math.min(Math.floor(Math.log2(body.length + 1)), 14)}`)
  return f
}

/**
 * Sender consistency: whether the Reply-To and Message-ID domains match the From domain (many bulk
 * senders and ratware generate Message-IDs on another host). Learned, not a rule: a corpus where
 * legitimate mail often mismatches gives these small weights.
 */
function headerExtras(f: string[], msg: ParsedMessage, fromDomain: string | undefined): void {
  const fromBase = fromDomain ? baseDomain(fromDomain) : ''
  const replyTo = headerValue(msg.headers, 'reply-to')
  if (replyTo) {
    const d = emailDomain(replyTo)
    f.push(d && baseDomain(d) === fromBase ? 'hx:replyto-same' : 'hx:replyto-other')
  }
  const mid = headerValue(msg.headers, 'message-id')
  if (mid) {
    const d = /@([^>\s]+)/.exec(mid)?.[1]?.toLowerCase()
    f.push(!d ? 'hx:mid-nodomain' : baseDomain(d) === fromBase ? 'hx:mid-same' : 'hx:mid-other')
  }
}

function urls(f: string[], text: string, paths: boolean): void {
  URL_RE.lastIndex = 0
  let n = 0
  for (let m = URL_RE.exec(text); m && n < 100; m = URL_RE.exec(text), n++) {
    addHost(f, m[1] ?? '')
    const path = m[2]
    if (!paths || !path) continue
    if (path.includes('?')) f.push('u#query')
    if (path.includes('@') || path.includes('%')) f.push('u#escape')
    for (const t of tokenize(path.replace(/[/?&=._#+]/g, ' '), 8)) f.push(`up:${t}`)
  }
}

function htmlTags(f: string[], html: string): void {
  TAG_RE.lastIndex = 0
  const seen = new Set<string>()
  let n = 0
  for (let m = TAG_RE.exec(html); m && n < 2000; m = TAG_RE.exec(html), n++) {
    const tag = (m[1] ?? '').toLowerCase()
    if (!seen.has(tag)) {
      seen.add(tag)
      f.push(`tag:${tag}`)
    }
    const attrs = m[2]
    if (!attrs) continue
    ATTR_RE.lastIndex = 0
    for (let a = ATTR_RE.exec(attrs); a; a = ATTR_RE.exec(attrs)) {
      const name = `${tag}.${(a[1] ?? '').toLowerCase()}`
      if (!seen.has(name)) {
        seen.add(name)
        f.push(`attr:${name}`)
      }
    }
  }
}

/**
 * Character n-grams of the normalised text (lower-case letters; digits become 9; anything else a single
 * space), over at most `maxChars` normalised characters. Robust to the word-splitting obfuscation spam
 * uses (`V-i-a-g-r-a`, `fr ee`), and to inflections.
 */
function charNgrams(f: string[], text: string, n: number, maxChars: number): void {
  const lower = text.toLowerCase()
  let norm = ''
  let space = true
  for (let i = 0; i < lower.length && norm.length < maxChars; i++) {
    const c = lower.charCodeAt(i)
    if ((c >= 97 && c <= 122) || (c >= 0xc0 && c <= 0x24f)) {
      norm += lower[i]
      space = false
    } else if (c >= 48 && c <= 57) {
      norm += '9'
      space = false
    } else if (!space) {
      norm += ' '
      space = true
    }
  }
  for (let i = 0; i + n <= norm.length; i++) f.push(`c:${norm.slice(i, i + n)}`)
}

function addHost(f: string[], host: string): void {
  const h = host.toLowerCase().replace(/\.+$/, '')
  if (!h) return
  if (/^\d+\.\d+\.\d+\.\d+$/.test(h)) {
    f.push('u#ip')
    return
  }
  f.push(`u:${h}`, `ub:${baseDomain(h)}`)
}

/**
 * Extracts hashed binary features from a raw RFC 5322 message: sorted, unique indices in
 * [0, 2^bits). Never throws.
 */
export function extractFeatures(raw: Buffer | string, options: ExtractOptions = {}): Uint32Array {
  const mask = (1 << (options.bits ?? DEFAULT_BITS)) - 1
  let names: string[]
  try {
    names = featureNames(parseMessage(raw), options)
  } catch {
    names = ['#unparsable']
  }
  const h = new Uint32Array(names.length)
  for (let i = 0; i < names.length; i++) h[i] = fnv1a(names[i] ?? '') & mask
  h.sort()
  let n = 0
  for (let i = 0; i < h.length; i++) if (i === 0 || h[i] !== h[i - 1]) h[n++] = h[i] ?? 0
  return h.slice(0, n)
}
