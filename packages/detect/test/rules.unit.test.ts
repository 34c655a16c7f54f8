import { describe, expect, it } from 'vitest'
import { readMessage } from '../src/parse'
import { isEncryptedArchive, runRules, SYMBOLS } from '../src/rules'
import { message, normalHeaders, plainMessage, withAttachments, zip } from './helpers'

const NOW = new Date()
const CTX = { recipientDomains: ['example.net'], now: NOW }

async function symbols(raw: Buffer, ctx = CTX): Promise<string[]> {
  return runRules(await readMessage(raw), ctx).map((h) => h.name)
}

/** A multipart/alternative message with a text and an HTML part. */
function alternative(html: string, text = 'The text version of this newsletter.'): Buffer {
  const b = 'alt-7'
  return message(
    normalHeaders([`Content-Type: multipart/alternative; boundary="${b}"`]),
    `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n` +
      `--${b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}\r\n--${b}--\r\n`,
  )
}

function htmlOnly(html: string): Buffer {
  return message(normalHeaders(['Content-Type: text/html; charset=utf-8']), html)
}

const PDF = {
  filename: 'report.pdf',
  contentType: 'application/pdf',
  content: Buffer.from('%PDF-1.4\n%%EOF'),
}

describe('ordinary messages fire nothing', () => {
  it('a plain text message', async () => {
    expect(await symbols(plainMessage())).toEqual([])
  })

  it('a multipart/alternative newsletter with links and ordinary styles', async () => {
    const html =
      '<html><body><p style="color: #333; font-size: 14px">Hello Bob, the agenda is ready.</p>' +
      '<a href="https://www.example.org/agenda">https://example.org/agenda</a> ' +
      '<a href="https://tracking.example.org/c?u=1">click here</a></body></html>'
    expect(await symbols(alternative(html, 'Hello Bob, see https://www.example.org/agenda'))).toEqual([])
  })

  it('a message with a PDF, a plain zip and a .docx attachment', async () => {
    const raw = withAttachments([
      PDF,
      {
        filename: 'photos.zip',
        contentType: 'application/zip',
        content: zip([
          { name: 'a.txt', data: Buffer.from('hello') },
          { name: 'b.txt', data: Buffer.from('world') },
        ]),
      },
      {
        filename: 'notes.docx',
        contentType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
        content: Buffer.from('PK fake docx'),
      },
    ])
    expect(await symbols(raw)).toEqual([])
  })

  it('every symbol fired by the rules is in the SYMBOLS table with its weight', async () => {
    const raw = message(['Subject: FREE MONEY FOR EVERYONE'], 'hi')
    const hits = runRules(await readMessage(raw), CTX)
    expect(hits.length).toBeGreaterThan(0)
    for (const h of hits) expect(h.score).toBe(SYMBOLS[h.name as keyof typeof SYMBOLS].score)
  })
})

describe('structural defects', () => {
  it('MIME_UNTERMINATED: a multipart never closed', async () => {
    const raw = message(
      normalHeaders(['Content-Type: multipart/mixed; boundary="zz"']),
      '--zz\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsecond part, cut off',
    )
    const s = await symbols(raw)
    expect(s).toContain('MIME_UNTERMINATED')
    expect(s).not.toContain('MIME_MISSING_BOUNDARY')
  })

  it('MIME_MISSING_BOUNDARY: multipart without a boundary parameter', async () => {
    const raw = message(normalHeaders(['Content-Type: multipart/mixed']), 'no parts at all\r\n')
    expect(await symbols(raw)).toContain('MIME_MISSING_BOUNDARY')
  })

  it('MIME_MISSING_BOUNDARY: a declared boundary that never appears', async () => {
    const raw = message(
      normalHeaders(['Content-Type: multipart/mixed; boundary="declared"']),
      '--other\r\nContent-Type: text/plain\r\n\r\nhello\r\n--other--\r\n',
    )
    expect(await symbols(raw)).toContain('MIME_MISSING_BOUNDARY')
  })

  it('a well-formed nested multipart has neither boundary defect', async () => {
    const raw = message(
      normalHeaders(['Content-Type: multipart/mixed; boundary="outer"']),
      '--outer\r\nContent-Type: multipart/alternative;\r\n boundary="inner"\r\n\r\n' +
        '--inner\r\nContent-Type: text/plain\r\n\r\nhello\r\n' +
        '--inner\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--inner--\r\n' +
        '--outer--\r\n',
    )
    expect(await symbols(raw)).toEqual([])
  })

  it('HEADER_MALFORMED: a header line that is not "Name: value"', async () => {
    const raw = message(normalHeaders(['this line is not a header']), 'body')
    expect(await symbols(raw)).toContain('HEADER_MALFORMED')
  })

  it('HEADER_MALFORMED is not given for folded headers or an mbox From_ line', async () => {
    const raw = Buffer.concat([
      Buffer.from('From alice@example.org Mon Jun  3 10:00:00 2024\r\n'),
      message(normalHeaders(['X-Long: first part\r\n\tsecond part\r\n  third part']), 'body'),
    ])
    expect(await symbols(raw)).toEqual([])
  })

  it('HEADER_TOO_LONG: one header line over 64 KiB', async () => {
    const raw = message(normalHeaders([`X-Junk: ${'a'.repeat(70 * 1024)}`]), 'body')
    expect(await symbols(raw)).toContain('HEADER_TOO_LONG')
  })

  it('HEADER_TOO_LONG: a header block over 256 KiB of short lines', async () => {
    const many = Array.from({ length: 10_000 }, (_, i) => `X-Field-${i}: value number ${i}`)
    const s = await symbols(message(normalHeaders(many), 'body'))
    expect(s).toContain('HEADER_TOO_LONG')
  })

  it('a long but legal header (a 5 KiB folded References) is fine', async () => {
    const refs = Array.from({ length: 100 }, (_, i) => `<ref${i}.abcdefghij@example.org>`).join('\r\n ')
    expect(await symbols(plainMessage([`References: ${refs}`]))).toEqual([])
  })

  it('MIME_TOO_COMPLEX: multiparts nested past the depth limit', async () => {
    let body = 'innermost\r\n'
    for (let i = 40; i > 0; i--)
      body = `--n${i}\r\nContent-Type: multipart/mixed; boundary="n${i + 1}"\r\n\r\n${body}--n${i}--\r\n`
    const raw = message(normalHeaders(['Content-Type: multipart/mixed; boundary="n1"']), body)
    expect(await symbols(raw)).toContain('MIME_TOO_COMPLEX')
  })

  it('MIME_TOO_COMPLEX: more sibling parts than the limit', async () => {
    const parts = Array.from(
      { length: 600 },
      (_, i) => `--s\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`,
    )
    const raw = message(
      normalHeaders(['Content-Type: multipart/mixed; boundary="s"']),
      `${parts.join('')}--s--\r\n`,
    )
    expect(await symbols(raw)).toContain('MIME_TOO_COMPLEX')
  })

  it('a few dozen parts is not too complex', async () => {
    const parts = Array.from({ length: 40 }, (_, i) => `--s\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`)
    const raw = message(
      normalHeaders(['Content-Type: multipart/mixed; boundary="s"']),
      `${parts.join('')}--s--\r\n`,
    )
    expect(await symbols(raw)).toEqual([])
  })

  it('MIME_NO_BODY: headers without the empty line', async () => {
    const raw = Buffer.from(normalHeaders().join('\r\n'))
    expect(await symbols(raw)).toContain('MIME_NO_BODY')
  })
})

describe('header rules', () => {
  it('MISSING_DATE', async () => {
    const raw = message(
      normalHeaders().filter((h) => !h.startsWith('Date:')),
      'hello',
    )
    expect(await symbols(raw)).toEqual(['MISSING_DATE'])
  })

  it('INVALID_DATE', async () => {
    const s = await symbols(plainMessage(['Date: the day after tomorrow']))
    expect(s).toEqual(['INVALID_DATE'])
  })

  it('an RFC 5322 date with a comment is valid', async () => {
    expect(await symbols(plainMessage(['Date: Mon, 3 Jun 2024 10:00:00 +0200 (CEST)']))).toEqual([])
  })

  it('DATE_IN_FUTURE: more than a day ahead', async () => {
    const future = new Date(NOW.getTime() + 3 * 24 * 3600 * 1000)
    expect(await symbols(plainMessage([`Date: ${future.toUTCString()}`]))).toEqual(['DATE_IN_FUTURE'])
  })

  it('a date a few hours ahead (clock skew, time zones) is not in the future', async () => {
    const ahead = new Date(NOW.getTime() + 10 * 3600 * 1000)
    expect(await symbols(plainMessage([`Date: ${ahead.toUTCString()}`]))).toEqual([])
  })

  it('MISSING_MESSAGE_ID', async () => {
    const raw = message(
      normalHeaders().filter((h) => !h.startsWith('Message-ID:')),
      'hello',
    )
    expect(await symbols(raw)).toEqual(['MISSING_MESSAGE_ID'])
  })

  it('INVALID_MESSAGE_ID', async () => {
    expect(await symbols(plainMessage(['Message-ID: 12345']))).toEqual(['INVALID_MESSAGE_ID'])
    expect(await symbols(plainMessage(['Message-ID: <no-at-sign>']))).toEqual(['INVALID_MESSAGE_ID'])
  })

  it('MISSING_FROM', async () => {
    const raw = message(
      normalHeaders().filter((h) => !h.startsWith('From:')),
      'hello',
    )
    expect(await symbols(raw)).toEqual(['MISSING_FROM'])
  })

  it('MULTIPLE_FROM', async () => {
    const s = await symbols(plainMessage(['From: alice@example.org, carol@example.org']))
    expect(s).toEqual(['MULTIPLE_FROM'])
  })

  it('FROM_NAME_HAS_OTHER_ADDRESS', async () => {
    const s = await symbols(plainMessage(['From: "support@paypal.com" <x@evil.test>']))
    expect(s).toContain('FROM_NAME_HAS_OTHER_ADDRESS')
  })

  it('a display name showing the sender’s own address is fine', async () => {
    expect(await symbols(plainMessage(['From: "alice@example.org" <alice@example.org>']))).toEqual([])
  })

  it('FROM_NAME_SPOOFS_RCPT_DOMAIN', async () => {
    const s = await symbols(plainMessage(['From: "example.net IT Helpdesk" <helpdesk@evil.test>']))
    expect(s).toEqual(['FROM_NAME_SPOOFS_RCPT_DOMAIN'])
  })

  it('the recipient’s own domain (or a subdomain) naming itself is fine', async () => {
    expect(await symbols(plainMessage(['From: "example.net IT" <it@mail.example.net>']))).toEqual([])
    // another recipient domain: no spoof
    const s = await symbols(plainMessage(['From: "example.net IT Helpdesk" <helpdesk@evil.test>']), {
      recipientDomains: ['other.org'],
      now: NOW,
    })
    expect(s).toEqual([])
  })

  it('SUBJECT_ALL_CAPS', async () => {
    expect(await symbols(plainMessage(['Subject: URGENT ACTION REQUIRED NOW']))).toEqual(['SUBJECT_ALL_CAPS'])
    expect(await symbols(plainMessage(['Subject: =?utf-8?B?R1LDnFNTRSBBVVMgTcOcTkNIRU4=?=']))).toEqual([
      'SUBJECT_ALL_CAPS',
    ])
  })

  it('short capitals and mixed case are not SUBJECT_ALL_CAPS', async () => {
    expect(await symbols(plainMessage(['Subject: RE: FYI ASAP']))).toEqual([])
    expect(await symbols(plainMessage(['Subject: Meeting notes for the NATO project']))).toEqual([])
    expect(await symbols(plainMessage(['Subject: 2024-06-03 12:00 #4711']))).toEqual([])
  })
})

describe('content rules', () => {
  it('HTML_ONLY', async () => {
    expect(await symbols(htmlOnly('<p>Hello Bob, the agenda is ready.</p>'))).toEqual(['HTML_ONLY'])
  })

  it('HTML with a text alternative is not HTML_ONLY', async () => {
    expect(await symbols(alternative('<p>Hello Bob, the agenda is ready.</p>'))).toEqual([])
  })

  it('HTML_HIDDEN_TEXT', async () => {
    for (const style of ['display:none', 'visibility: hidden', 'font-size:0px', 'opacity:0']) {
      const html = `<p>Hello</p><div style="${style}">lorem ipsum dolor sit amet consectetur bayesian poison</div>`
      expect(await symbols(alternative(html)), style).toContain('HTML_HIDDEN_TEXT')
    }
  })

  it('HTML_HIDDEN_TEXT: upper case, single quotes, nested markup; the detail is the hidden text', async () => {
    const html =
      "<P>Hi</P><SPAN class=x STYLE='DISPLAY: NONE'>Cheap <b>meds</b> without prescription here</SPAN>"
    const hits = runRules(await readMessage(alternative(html)), CTX)
    expect(hits).toEqual([
      {
        name: 'HTML_HIDDEN_TEXT',
        score: SYMBOLS.HTML_HIDDEN_TEXT.score,
        detail: 'Cheap meds without prescription here',
      },
    ])
  })

  it('a hidden element with hardly any text (a preheader spacer, a tracking pixel) is not HTML_HIDDEN_TEXT', async () => {
    const html =
      '<div style="display:none">&nbsp;</div><img style="display:none" src="https://t.example.org/p.gif">' +
      '<p style="font-size:10px; opacity:0.8">Unsubscribe from these emails at any time.</p>'
    expect(await symbols(alternative(html))).toEqual([])
    // not a style attribute
    const data =
      '<div data-style="display:none" title="style=display:none">an ordinary visible paragraph of text</div>'
    expect(await symbols(alternative(data))).toEqual([])
  })

  it('URL_TEXT_MISMATCH', async () => {
    const html = '<a href="http://login.evil.test/paypal">https://www.paypal.com/signin</a>'
    expect(await symbols(alternative(html))).toEqual(['URL_TEXT_MISMATCH'])
  })

  it('link text naming its own target (or no host) is not URL_TEXT_MISMATCH', async () => {
    const html =
      '<a href="https://www.paypal.com/signin">https://paypal.com/signin</a>' +
      '<a href="https://click.example.org/x">Read more on example.com</a>' +
      '<a href="https://news.example.org/">www.example.org</a>'
    expect(await symbols(alternative(html))).toEqual([])
  })

  it('URL_NUMERIC_HOST: in HTML and in plain text', async () => {
    expect(await symbols(alternative('<a href="http://192.0.2.7/login">log in</a>'))).toEqual([
      'URL_NUMERIC_HOST',
    ])
    expect(await symbols(plainMessage([], 'Log in at http://198.51.100.23:8080/account now'))).toEqual([
      'URL_NUMERIC_HOST',
    ])
  })

  it('a link to a host name with digits is not URL_NUMERIC_HOST', async () => {
    expect(
      await symbols(
        plainMessage([], 'see https://web1.example.org/2024.06.03/ and https://1.2.3.example.org'),
      ),
    ).toEqual([])
  })

  it('ATTACH_EXECUTABLE', async () => {
    for (const filename of ['setup.exe', 'invoice.js', 'scan.SCR', 'run.ps1']) {
      const raw = withAttachments([
        { filename, contentType: 'application/octet-stream', content: Buffer.from('MZ') },
      ])
      expect(await symbols(raw), filename).toEqual(['ATTACH_EXECUTABLE'])
    }
  })

  it('ATTACH_DOUBLE_EXTENSION', async () => {
    const raw = withAttachments([
      { filename: 'invoice.pdf.exe', contentType: 'application/octet-stream', content: Buffer.from('MZ') },
    ])
    expect(await symbols(raw)).toEqual(['ATTACH_EXECUTABLE', 'ATTACH_DOUBLE_EXTENSION'])
    const padded = withAttachments([
      { filename: 'invoice.pdf          .html', contentType: 'text/html', content: Buffer.from('<p>x</p>') },
    ])
    expect(await symbols(padded)).toContain('ATTACH_DOUBLE_EXTENSION')
  })

  it('a dotted document name is not ATTACH_DOUBLE_EXTENSION', async () => {
    const raw = withAttachments([
      { filename: 'report.2024.06.pdf', contentType: 'application/pdf', content: Buffer.from('%PDF') },
      { filename: 'photo.jpg.png', contentType: 'image/png', content: Buffer.from('png') },
    ])
    expect(await symbols(raw)).toEqual([])
  })

  it('ATTACH_ENCRYPTED_ARCHIVE: a password-protected zip', async () => {
    const encrypted = zip([
      { name: 'readme.txt', data: Buffer.from('plain entry') },
      { name: 'invoice.doc', data: Buffer.from('secret content'), encrypted: true },
    ])
    expect(isEncryptedArchive(encrypted)).toBe(true)
    const raw = withAttachments([
      { filename: 'invoice.zip', contentType: 'application/zip', content: encrypted },
    ])
    expect(await symbols(raw)).toEqual(['ATTACH_ENCRYPTED_ARCHIVE'])
    // sent as octet-stream under an archive name: still looked into
    const octet = withAttachments([
      { filename: 'invoice.zip', contentType: 'application/octet-stream', content: encrypted },
    ])
    expect(await symbols(octet)).toEqual(['ATTACH_ENCRYPTED_ARCHIVE'])
  })

  it('a plain zip is not ATTACH_ENCRYPTED_ARCHIVE', async () => {
    const plain = zip([
      { name: 'a.txt', data: Buffer.from('hello') },
      { name: 'b.txt', data: Buffer.from('world') },
    ])
    expect(isEncryptedArchive(plain)).toBe(false)
    const raw = withAttachments([{ filename: 'photos.zip', contentType: 'application/zip', content: plain }])
    expect(await symbols(raw)).toEqual([])
  })

  it('isEncryptedArchive on non-zips and truncated zips', () => {
    expect(isEncryptedArchive(Buffer.alloc(0))).toBe(false)
    expect(isEncryptedArchive(Buffer.from('PK\x03\x04'))).toBe(false)
    expect(isEncryptedArchive(Buffer.from('%PDF-1.4 not an archive at all, not at all'))).toBe(false)
    const plain = zip([{ name: 'a.txt', data: Buffer.alloc(100, 1) }])
    expect(isEncryptedArchive(plain.subarray(0, 40))).toBe(false)
  })

  it('ATTACH_MACRO_OFFICE', async () => {
    for (const filename of ['budget.xlsm', 'letter.docm', 'deck.pptm']) {
      const raw = withAttachments([
        { filename, contentType: 'application/vnd.ms-office', content: Buffer.from('PK macro') },
      ])
      expect(await symbols(raw), filename).toEqual(['ATTACH_MACRO_OFFICE'])
    }
  })
})
