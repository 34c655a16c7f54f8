import { Transform, type TransformCallback } from 'node:stream'
import type { ObjectStore } from '@moat/blobstore'
import { ObjectNotFoundError } from '@moat/blobstore'
import type { Executor } from '@moat/db'
import { type ArchiveFilter, type ArchiveHit, walkArchive } from './search'

/**
 * One message as an mboxrd entry, streamed: CRLF becomes LF, every line that starts with `>*From `
 * gets one more `>`, and the entry ends with an empty line. Lines are cut across chunks correctly;
 * only the current unfinished line is held, so memory stays bounded by the longest line.
 */
export class MboxrdEscape extends Transform {
  private carry = ''
  private atLineStart = true
  constructor() {
    super({ decodeStrings: true })
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    // latin1 maps bytes 1:1, so the bytes come out as they went in, whatever the charset
    const text = this.carry + chunk.toString('latin1')
    const lastNewline = text.lastIndexOf('\n')
    if (lastNewline < 0) {
      // a long line without an end yet: keep only enough to decide whether it starts with >*From
      if (this.atLineStart && /^>*(F(r(o(m( )?)?)?)?)?$/.test(text)) {
        this.carry = text
        done()
        return
      }
      this.carry = ''
      const out = this.atLineStart ? escapeLine(text) : text
      this.atLineStart = false
      done(null, Buffer.from(out.replace(/\r$/, ''), 'latin1'))
      return
    }
    const complete = text.slice(0, lastNewline + 1)
    this.carry = text.slice(lastNewline + 1)
    const lines = complete.split('\n')
    lines.pop() // the empty string after the last newline
    const out = lines.map((line, i) => {
      const escaped = i === 0 && !this.atLineStart ? line : escapeLine(line)
      return `${escaped.replace(/\r$/, '')}\n`
    })
    this.atLineStart = true
    done(null, Buffer.from(out.join(''), 'latin1'))
  }

  override _flush(done: TransformCallback): void {
    let tail = this.carry
    if (tail) tail = `${(this.atLineStart ? escapeLine(tail) : tail).replace(/\r$/, '')}\n`
    done(null, Buffer.from(`${tail}\n`, 'latin1'))
  }
}

function escapeLine(line: string): string {
  return /^>*From /.test(line) ? `>${line}` : line
}

/** The `From ` separator line of an entry: envelope sender and the time Moat received it, in asctime form. */
export function fromLine(m: Pick<ArchiveHit['message'], 'mailFrom' | 'receivedAt'>): string {
  const sender = m.mailFrom.replace(/\s/g, '') || 'MAILER-DAEMON'
  const d = m.receivedAt
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  const pad = (n: number) => String(n).padStart(2, '0')
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  return `From ${sender} ${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${d.getUTCFullYear()}\n`
}

/**
 * Every message a search matches, as one mboxrd stream, oldest first: rows are read 500 at a time
 * and each raw message is streamed from the object store through {@link MboxrdEscape}, so memory
 * stays bounded however many messages there are. `onMessage` hears of each one written (progress).
 */
export async function* mboxChunks(
  db: Executor,
  store: ObjectStore,
  tenantId: string,
  filter: ArchiveFilter,
  onMessage?: (m: ArchiveHit['message']) => void | Promise<void>,
): AsyncGenerator<Buffer> {
  for await (const m of walkArchive(db, tenantId, filter)) {
    let body: AsyncIterable<Buffer>
    try {
      body = (await store.stream(m.objectKey)).pipe(new MboxrdEscape())
    } catch (err) {
      if (err instanceof ObjectNotFoundError) continue // purged between the row read and now
      throw err
    }
    yield Buffer.from(fromLine(m), 'latin1')
    for await (const chunk of body) yield chunk as Buffer
    await onMessage?.(m)
  }
}
