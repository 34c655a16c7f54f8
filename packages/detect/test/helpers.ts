import { type LabeledMessage, trainModel } from '@moat/classifier'
import { ContentModel } from '../src/model'

/** A message from header lines and a body, CRLF line ends throughout. */
export function message(headers: string[], body = ''): Buffer {
  return Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body.replace(/\r?\n/g, '\r\n')}`, 'utf8')
}

/** The headers of an ordinary, well-formed message; `overrides` replace headers of the same name. */
export function normalHeaders(overrides: string[] = [], now = new Date()): string[] {
  const base = [
    'From: Alice Example <alice@example.org>',
    'To: Bob <bob@example.net>',
    'Subject: Lunch on Thursday',
    `Date: ${now.toUTCString()}`,
    'Message-ID: <20240601.1234@example.org>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
  ]
  const name = (h: string) => h.slice(0, h.indexOf(':')).toLowerCase()
  const replaced = new Set(overrides.map(name))
  return [...base.filter((h) => !replaced.has(name(h))), ...overrides]
}

export function plainMessage(
  overrides: string[] = [],
  body = 'Hi Bob,\n\nare we still on for lunch?\n',
): Buffer {
  return message(normalHeaders(overrides), body)
}

/** A multipart/mixed message: a text part plus the given attachments (base64). */
export function withAttachments(
  attachments: { filename: string; contentType: string; content: Buffer }[],
  overrides: string[] = [],
): Buffer {
  const b = 'b-mixed-42'
  const parts = [
    `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the file attached.\r\n`,
    ...attachments.map(
      (a) =>
        `--${b}\r\nContent-Type: ${a.contentType}; name="${a.filename}"\r\n` +
        `Content-Disposition: attachment; filename="${a.filename}"\r\n` +
        `Content-Transfer-Encoding: base64\r\n\r\n${(a.content.toString('base64').match(/.{1,76}/g) ?? ['']).join('\r\n')}\r\n`,
    ),
  ]
  return message(
    normalHeaders([`Content-Type: multipart/mixed; boundary="${b}"`, ...overrides]),
    `${parts.join('')}--${b}--\r\n`,
  )
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32(buf: Buffer): number {
  let c = 0xffffffff
  for (const byte of buf) c = (CRC_TABLE[(c ^ byte) & 0xff] as number) ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/**
 * A ZIP archive written by hand (stored entries, with central directory). An `encrypted` entry has
 * general-purpose flag bit 0 set and a 12-byte (random-looking) traditional-encryption header before
 * its data, as a password-protected zip has.
 */
export function zip(entries: { name: string; data: Buffer; encrypted?: boolean }[]): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8')
    const data = e.encrypted ? Buffer.concat([Buffer.from('0123456789ab'), e.data]) : e.data
    const flags = e.encrypted ? 1 : 0
    const crc = crc32(e.data)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4) // version needed
    local.writeUInt16LE(flags, 6)
    local.writeUInt16LE(0, 8) // stored
    local.writeUInt16LE(0, 10) // time
    local.writeUInt16LE(0x21, 12) // date 1980-01-01
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(data.length, 18)
    local.writeUInt32LE(e.data.length, 22)
    local.writeUInt16LE(name.length, 26)
    local.writeUInt16LE(0, 28)
    locals.push(local, name, data)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4) // version made by
    central.writeUInt16LE(20, 6)
    central.writeUInt16LE(flags, 8)
    central.writeUInt16LE(0, 10)
    central.writeUInt16LE(0, 12)
    central.writeUInt16LE(0x21, 14)
    central.writeUInt32LE(crc, 16)
    central.writeUInt32LE(data.length, 20)
    central.writeUInt32LE(e.data.length, 24)
    central.writeUInt16LE(name.length, 28)
    central.writeUInt32LE(offset, 42)
    centrals.push(central, name)
    offset += 30 + name.length + data.length
  }
  const cd = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(cd.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, cd, end])
}

const SPAM_WORDS = 'viagra cheap pills winner lottery prize claim urgent casino bonus free money offer'.split(
  ' ',
)
const HAM_WORDS = 'meeting agenda project schedule review minutes budget quarterly team notes draft'.split(
  ' ',
)

/** A few dozen synthetic messages, spam on cheap-pills words and ham on office words. */
export function syntheticCorpus(n = 40): LabeledMessage[] {
  const out: LabeledMessage[] = []
  for (let i = 0; i < n; i++) {
    const label = (i % 2) as 0 | 1
    const words = label ? SPAM_WORDS : HAM_WORDS
    const pick = (k: number) => words[(i * 7 + k * 3) % words.length]
    const body = Array.from({ length: 30 }, (_, k) => pick(k)).join(' ')
    out.push({
      id: String(i),
      label,
      raw: message(
        [
          label ? `From: Winner <promo${i}@bulk-offers.biz>` : `From: Colleague <c${i}@example.org>`,
          'To: bob@example.net',
          `Subject: ${pick(1)} ${pick(2)} ${pick(3)}`,
        ],
        body,
      ),
    })
  }
  return out
}

/** A small content model trained on {@link syntheticCorpus}: milliseconds, not the real corpus. */
export function smallModel(): ContentModel {
  return new ContentModel(trainModel(syntheticCorpus(), { bits: 16, epochs: 5 }))
}
