import { Readable } from 'node:stream'
import type { HeaderRewrite } from '@moat/db'

/** A header block larger than this is passed through with the new fields added but nothing removed. */
const MAX_HEADER_BYTES = 1024 * 1024

/**
 * Applies a {@link HeaderRewrite} to a raw message as it streams to delivery: new fields on top,
 * `Authentication-Results` fields that claim our authserv-id removed (they came from outside and
 * would be trusted by the customer's server), and the subject prefixed. The body is not touched
 * or buffered.
 */
export function rewriteHeaders(source: Readable, rewrite: HeaderRewrite | null | undefined): Readable {
  if (!rewrite || (!rewrite.prepend.length && !rewrite.stripAuthservId && !rewrite.subjectPrefix))
    return source
  async function* run() {
    let head = Buffer.alloc(0)
    let done = false
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (done) {
        yield chunk
        continue
      }
      head = Buffer.concat([head, chunk])
      const end = headerEnd(head)
      if (end >= 0) {
        yield Buffer.from(rewriteBlock(head.toString('latin1', 0, end), rewrite as HeaderRewrite), 'latin1')
        yield head.subarray(end)
        done = true
      } else if (head.length > MAX_HEADER_BYTES) {
        yield Buffer.from(rewrite?.prepend.map((f) => `${f}\r\n`).join('') ?? '', 'latin1')
        yield head
        done = true
      }
    }
    if (!done) yield Buffer.from(rewriteBlock(head.toString('latin1'), rewrite as HeaderRewrite), 'latin1')
  }
  return Readable.from(run(), { objectMode: false })
}

/** Offset of the empty line that ends the header (pointing at its line break), or -1. */
function headerEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n')
  const lf = buf.indexOf('\n\n')
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 2
  return lf >= 0 ? lf + 1 : -1
}

/** Rewrites one header block (without the terminating empty line). Exported for tests. */
export function rewriteBlock(block: string, rewrite: HeaderRewrite): string {
  const eol = block.includes('\r\n') ? '\r\n' : '\n'
  // split into fields, keeping folded continuation lines with their field
  const fields = block
    .replace(/\r?\n$/, '')
    .split(/\r?\n(?=[^ \t])/)
    .filter((f) => f.length > 0)
  const strip = rewrite.stripAuthservId?.toLowerCase()
  // the block is a latin1 view of the bytes; what we add is UTF-8
  const bytes = (v: string) => Buffer.from(v, 'utf8').toString('latin1')
  const prefix = rewrite.subjectPrefix ? bytes(rewrite.subjectPrefix) : undefined
  const kept: string[] = []
  let subjectSeen = false
  for (const field of fields) {
    const colon = field.indexOf(':')
    const name = colon > 0 ? field.slice(0, colon).trim().toLowerCase() : ''
    if (strip && name === 'authentication-results') {
      const id = field
        .slice(colon + 1)
        .replace(/\([^)]*\)/g, ' ')
        .split(';')[0]
        ?.trim()
        .split(/\s+/)[0]
        ?.toLowerCase()
      if (id === strip) continue
    }
    if (prefix && name === 'subject' && !subjectSeen) {
      subjectSeen = true
      const value = field.slice(colon + 1).replace(/^[ \t]+/, '')
      kept.push(value.startsWith(prefix) ? field : `Subject: ${prefix} ${value}`)
      continue
    }
    kept.push(field)
  }
  if (prefix && !subjectSeen) kept.push(`Subject: ${prefix}`)
  const added = rewrite.prepend.map((f) => bytes(f).replace(/\r?\n/g, eol))
  return [...added, ...kept].map((f) => `${f}${eol}`).join('')
}
