import { TextDecoder } from 'node:util'

/**
 * A small, forgiving RFC 5322 / MIME reader for feature extraction. It never throws on bad input and
 * bounds its work: header block, part count, nesting depth and decoded text are all capped.
 */

export interface Header {
  /** lower-cased header name */
  name: string
  /** unfolded raw value (latin1 view of the bytes) */
  value: string
}

export interface TextPart {
  /** lower-cased media type, e.g. `text/plain` */
  type: string
  text: string
  /** declared charset, lower-cased, if any */
  charset?: string
  /** declared Content-Transfer-Encoding, lower-cased, if any */
  encoding?: string
}

export interface ParsedMessage {
  headers: Header[]
  parts: TextPart[]
  /** lower-cased media types of every leaf part, text or not */
  leafTypes: string[]
  /** leaf parts with a filename or `Content-Disposition: attachment` */
  attachments: number
}

export const LIMITS = {
  headerBytes: 64 * 1024,
  headerCount: 200,
  parts: 50,
  depth: 5,
  textChars: 200_000,
}

/** Splits a latin1 string into header block and body at the first empty line. */
function splitHead(s: string): [string, string] {
  const m = /\r?\n\r?\n/.exec(s)
  if (!m) return [s, '']
  return [s.slice(0, m.index), s.slice(m.index + m[0].length)]
}

export function parseHeaders(block: string): Header[] {
  const out: Header[] = []
  const lines = block.slice(0, LIMITS.headerBytes).split(/\r?\n/)
  for (const line of lines) {
    if (out.length >= LIMITS.headerCount) break
    if (line.length === 0) continue
    const first = line.charCodeAt(0)
    if (first === 0x20 || first === 0x09) {
      const last = out[out.length - 1]
      if (last && last.value.length < 16_384) last.value += ` ${line.trim()}`
      continue
    }
    const colon = line.indexOf(':')
    if (colon <= 0 || colon > 76) continue // also skips the mbox "From " line
    const name = line.slice(0, colon).trim().toLowerCase()
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue
    out.push({ name, value: line.slice(colon + 1, colon + 1 + 16_384).trim() })
  }
  return out
}

export function headerValue(headers: Header[], name: string): string | undefined {
  for (const h of headers) if (h.name === name) return h.value
  return undefined
}

/** Parses `type/sub; a=b; c="d"` into a lower-cased type and lower-cased parameter names. */
export function parseContentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>()
  if (!value) return { type: 'text/plain', params }
  const semi = value.indexOf(';')
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase() || 'text/plain'
  if (semi >= 0) {
    const re = /;\s*([^=;\s]+)\s*=\s*(?:"([^"]*)"?|([^;\s]*))/g
    const rest = value.slice(semi)
    for (let m = re.exec(rest); m; m = re.exec(rest)) {
      const key = (m[1] ?? '').toLowerCase()
      if (!params.has(key)) params.set(key, m[2] ?? m[3] ?? '')
    }
  }
  return { type, params }
}

export function decodeQuotedPrintable(s: string): Buffer {
  const cleaned = s.replace(/=\r?\n/g, '')
  const bytes = Buffer.allocUnsafe(cleaned.length)
  let n = 0
  for (let i = 0; i < cleaned.length; i++) {
    const c = cleaned.charCodeAt(i)
    if (c === 0x3d && i + 2 < cleaned.length + 0) {
      const hex = cleaned.slice(i + 1, i + 3)
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes[n++] = Number.parseInt(hex, 16)
        i += 2
        continue
      }
    }
    bytes[n++] = c & 0xff
  }
  return bytes.subarray(0, n)
}

const decoders = new Map<string, TextDecoder>()

/** Decodes bytes in a declared charset; unknown charsets fall back to latin1. */
export function decodeCharset(bytes: Buffer, charset: string | undefined): string {
  const label = (charset ?? '').toLowerCase().trim()
  if (label === '' || label === 'us-ascii' || label === 'ascii') return bytes.toString('latin1')
  let dec = decoders.get(label)
  if (!dec) {
    try {
      dec = new TextDecoder(label, { fatal: false })
    } catch {
      dec = new TextDecoder('latin1')
    }
    decoders.set(label, dec)
  }
  return dec.decode(bytes)
}

/** Decodes RFC 2047 encoded words (`=?utf-8?B?...?=`) in a header value. */
export function decodeEncodedWords(value: string): string {
  if (!value.includes('=?')) return value
  return value.replace(
    /=\?([^?\s]{1,40})\?([bBqQ])\?([^?\s]{0,2000})\?=/g,
    (_m, cs: string, enc: string, data: string) => {
      const bytes =
        enc.toLowerCase() === 'b'
          ? Buffer.from(data, 'base64')
          : decodeQuotedPrintable(data.replace(/_/g, ' '))
      return decodeCharset(bytes, cs.split('*')[0])
    },
  )
}

function decodeBody(body: string, encoding: string | undefined): Buffer {
  const enc = (encoding ?? '').toLowerCase().trim()
  if (enc === 'base64') return Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64')
  if (enc === 'quoted-printable') return decodeQuotedPrintable(body)
  return Buffer.from(body, 'latin1')
}

function walk(raw: string, headers: Header[], depth: number, out: ParsedMessage): void {
  const ct = parseContentType(headerValue(headers, 'content-type'))
  const [, body] = depth === 0 ? ['', raw] : splitHead(raw)
  if (ct.type.startsWith('multipart/') && depth < LIMITS.depth) {
    const boundary = ct.params.get('boundary')
    if (boundary) {
      const sep = `--${boundary}`
      const chunks = body.split(sep)
      // chunks[0] is the preamble; a chunk starting with "--" is the epilogue after the close delimiter
      for (let i = 1; i < chunks.length && out.leafTypes.length < LIMITS.parts; i++) {
        const chunk = chunks[i] ?? ''
        if (chunk.startsWith('--')) break
        const partRaw = chunk.replace(/^[ \t]*\r?\n/, '')
        const [head] = splitHead(partRaw)
        walk(partRaw, parseHeaders(head), depth + 1, out)
      }
      return
    }
  }
  out.leafTypes.push(ct.type)
  const disposition = (headerValue(headers, 'content-disposition') ?? '').toLowerCase()
  if (disposition.startsWith('attachment') || ct.params.has('name') || disposition.includes('filename')) {
    out.attachments++
    return
  }
  if (ct.type !== 'text/plain' && ct.type !== 'text/html' && ct.type !== 'text') return
  const used = out.parts.reduce((n, p) => n + p.text.length, 0)
  if (used >= LIMITS.textChars) return
  const slice = body.slice(0, (LIMITS.textChars - used) * 2)
  const bytes = decodeBody(slice, headerValue(headers, 'content-transfer-encoding'))
  const text = decodeCharset(bytes, ct.params.get('charset')).slice(0, LIMITS.textChars - used)
  const charset = ct.params.get('charset')?.toLowerCase()
  const encoding = headerValue(headers, 'content-transfer-encoding')?.trim().toLowerCase()
  out.parts.push({ type: ct.type === 'text/html' ? 'text/html' : 'text/plain', text, charset, encoding })
}

/** Parses a raw message. Never throws; malformed structure yields fewer parts, not an error. */
export function parseMessage(raw: Buffer | string): ParsedMessage {
  const s = typeof raw === 'string' ? raw : raw.toString('latin1')
  const out: ParsedMessage = { headers: [], parts: [], leafTypes: [], attachments: 0 }
  try {
    const [head, body] = splitHead(s)
    out.headers = parseHeaders(head)
    walk(body, out.headers, 0, out)
  } catch {
    // keep whatever was parsed: a feature extractor must not fail a message
  }
  return out
}
