import { describe, expect, it } from 'vitest'
import { Detector, type Envelope } from '../src/engine'
import { normalHeaders, smallModel } from './helpers'

/**
 * Hostile and broken input: the detector must score every message, quickly, in bounded memory,
 * and name the defect where there is one. No DNS (offline detector).
 */

const CRLF = '\r\n'
const head = (extra: string[] = []) => normalHeaders(extra).join(CRLF)

function nested(depth: number): Buffer {
  const open: string[] = []
  const close: string[] = []
  for (let i = 0; i < depth; i++) {
    open.push(`--d${i}${CRLF}Content-Type: multipart/mixed; boundary="d${i + 1}"${CRLF}${CRLF}`)
    close.unshift(`--d${i}--${CRLF}`)
  }
  return Buffer.from(
    `${head(['Content-Type: multipart/mixed; boundary="d0"'])}${CRLF}${CRLF}${open.join('')}` +
      `--d${depth}${CRLF}Content-Type: text/plain${CRLF}${CRLF}deep${CRLF}--d${depth}--${CRLF}${close.join('')}`,
  )
}

function siblings(n: number): Buffer {
  const parts: string[] = []
  for (let i = 0; i < n; i++) parts.push(`--s${CRLF}Content-Type: text/plain${CRLF}${CRLF}part ${i}${CRLF}`)
  return Buffer.from(
    `${head(['Content-Type: multipart/mixed; boundary="s"'])}${CRLF}${CRLF}${parts.join('')}--s--${CRLF}`,
  )
}

function garbage(bytes: number, seed = 7): Buffer {
  const out = Buffer.alloc(bytes)
  let x = seed
  for (let i = 0; i < bytes; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

interface Case {
  name: string
  raw: () => Buffer
  /** defect symbols the message must get */
  defects: string[]
}

const CASES: Case[] = [
  {
    name: 'truncated MIME, cut off mid-part',
    raw: () =>
      Buffer.from(
        `${head(['Content-Type: multipart/mixed; boundary="cut"'])}${CRLF}${CRLF}` +
          `--cut${CRLF}Content-Type: text/plain${CRLF}${CRLF}hello${CRLF}` +
          `--cut${CRLF}Content-Type: application/pdf; name="a.pdf"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}` +
          'JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29kZT4+CnN0cmVhbQp4nK1',
      ),
    defects: ['MIME_UNTERMINATED'],
  },
  {
    name: 'bad base64 and bad quoted-printable',
    raw: () =>
      Buffer.from(
        `${head(['Content-Type: multipart/mixed; boundary="enc"'])}${CRLF}${CRLF}` +
          `--enc${CRLF}Content-Type: text/plain${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}` +
          `!!!not*base64@@@===\u00ff\u00fe==ab=c${CRLF}` +
          `--enc${CRLF}Content-Type: text/html${CRLF}Content-Transfer-Encoding: quoted-printable${CRLF}${CRLF}` +
          `=ZZ=4=\r\n=${'='.repeat(1000)}<p>=E2=82</p>=${CRLF}` +
          `--enc${CRLF}Content-Type: application/zip; name="x.zip"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}` +
          `UEsDBA${CRLF}--enc--${CRLF}`,
        'latin1',
      ),
    defects: [],
  },
  {
    name: 'unknown and bogus charsets',
    raw: () =>
      Buffer.from(
        `${head([
          'Subject: =?x-klingon-42?Q?Qapla=27?= =?utf-8?B?!!!?= =??Q??=',
          'Content-Type: multipart/alternative; boundary="cs"',
        ])}${CRLF}${CRLF}` +
          `--cs${CRLF}Content-Type: text/plain; charset=x-unknown-charset${CRLF}${CRLF}h\u00e9llo${CRLF}` +
          `--cs${CRLF}Content-Type: text/html; charset="${'utf'.repeat(300)}"${CRLF}${CRLF}<p>hi</p>${CRLF}` +
          `--cs${CRLF}Content-Type: text/plain; charset=utf-7${CRLF}${CRLF}+AGEAYgBj-${CRLF}--cs--${CRLF}`,
        'latin1',
      ),
    defects: [],
  },
  { name: '10,000 nested multipart parts', raw: () => nested(10_000), defects: ['MIME_TOO_COMPLEX'] },
  { name: '10,000 sibling parts', raw: () => siblings(10_000), defects: ['MIME_TOO_COMPLEX'] },
  {
    name: 'a 2 MB single header line',
    raw: () => Buffer.from(`${head([`X-Huge: ${'A'.repeat(2 * 1024 * 1024)}`])}${CRLF}${CRLF}body${CRLF}`),
    defects: ['HEADER_TOO_LONG'],
  },
  {
    name: 'a 2 MB Subject line',
    raw: () => Buffer.from(`${head([`Subject: ${'spam '.repeat(400_000)}`])}${CRLF}${CRLF}body${CRLF}`),
    defects: ['HEADER_TOO_LONG'],
  },
  {
    name: '100,000 header fields',
    raw: () => {
      const fields = Array.from({ length: 100_000 }, (_, i) => `Received: from h${i} by x; id ${i}`)
      return Buffer.from(`${head(fields)}${CRLF}${CRLF}body${CRLF}`)
    },
    defects: ['HEADER_TOO_LONG'],
  },
  { name: 'binary garbage (1 MB)', raw: () => garbage(1024 * 1024), defects: [] },
  { name: 'empty input', raw: () => Buffer.alloc(0), defects: ['MIME_NO_BODY'] },
  { name: 'only headers, no empty line', raw: () => Buffer.from(head()), defects: ['MIME_NO_BODY'] },
  {
    name: 'only headers, then the empty line',
    raw: () => Buffer.from(`${head()}${CRLF}${CRLF}`),
    defects: [],
  },
  {
    name: 'NUL bytes in header names, values and body',
    raw: () =>
      Buffer.from(
        `${head(['X-A\0B: one', 'Subject: null\0byte'])}${CRLF}${CRLF}body\0with\0nuls${'\0'.repeat(10_000)}${CRLF}`,
        'latin1',
      ),
    defects: ['HEADER_MALFORMED'],
  },
  {
    name: 'a multipart boundary that never appears, 100,000 lines of body',
    raw: () =>
      Buffer.from(
        `${head(['Content-Type: multipart/mixed; boundary="nowhere"'])}${CRLF}${CRLF}${'line of text\r\n'.repeat(100_000)}`,
      ),
    defects: ['MIME_MISSING_BOUNDARY'],
  },
  {
    name: 'hostile HTML: 50,000 unclosed anchors and styled tags',
    raw: () =>
      Buffer.from(
        `${head(['Content-Type: text/html'])}${CRLF}${CRLF}${'<a href="http://x.test/<div style="display:none">'.repeat(50_000)}`,
      ),
    defects: [],
  },
  {
    // a regex over the whole body once took 11 s on this
    name: 'hostile HTML: 40,000 styled tags never closed',
    raw: () =>
      Buffer.from(`${head(['Content-Type: text/html'])}${CRLF}${CRLF}${'<a style="x"'.repeat(40_000)}`),
    defects: [],
  },
  {
    name: 'hostile HTML: hidden elements full of unclosed "<"',
    raw: () =>
      Buffer.from(
        `${head(['Content-Type: text/html'])}${CRLF}${CRLF}${`<i style="display:none">${'<'.repeat(2970)}`.repeat(170)}`,
      ),
    defects: [],
  },
  {
    name: 'a header of 100,000 folded continuation lines',
    raw: () => Buffer.from(`${head([`X-Folded: a${'\r\n b'.repeat(100_000)}`])}${CRLF}${CRLF}body${CRLF}`),
    defects: ['HEADER_TOO_LONG'],
  },
]

describe('broken and hostile messages', () => {
  const detector = new Detector({ model: smallModel(), authservId: 'mx.moat.test' })
  const envelope: Envelope = {
    mailFrom: 'x@evil.test',
    rcptTo: ['bob@example.net'],
    clientIp: null,
    helo: null,
  }
  const baseline = process.memoryUsage().heapUsed

  for (const c of CASES) {
    it(`${c.name}: scored in bounded time and memory`, async () => {
      const raw = c.raw()
      const started = performance.now()
      const a = await detector.analyze(raw, envelope)
      const ms = performance.now() - started
      expect(ms, `${c.name} took ${ms.toFixed(0)} ms`).toBeLessThan(5000)
      expect(Number.isFinite(a.score)).toBe(true)
      expect(a.probability).not.toBeNull()
      const names = a.hits.map((h) => h.name)
      for (const d of c.defects) expect(names, c.name).toContain(d)
      const grown = process.memoryUsage().heapUsed - baseline
      expect(grown, `heap grew ${(grown / 1e6).toFixed(0)} MB`).toBeLessThan(300 * 1024 * 1024)
    })
  }

  it('a well-formed message gets no defect symbol', async () => {
    const raw = Buffer.from(`${head()}${CRLF}${CRLF}Hello Bob.${CRLF}`)
    const a = await detector.analyze(raw, envelope)
    expect(a.hits.map((h) => h.name).filter((n) => /^(MIME|HEADER)_/.test(n))).toEqual([])
  })
})
