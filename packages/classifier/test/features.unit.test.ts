import { describe, expect, it } from 'vitest'
import { extractFeatures, featureNames, parseMessage, stripHtml, tokenize } from '../src/index'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'), 'latin1')

describe('parseMessage', () => {
  it('reads headers, a multipart/alternative body and decodes QP and base64', () => {
    const raw = crlf(
      [
        'From: "Cheap Pills" <offers@pharma.example.ru>',
        'Subject: =?utf-8?B?QnV5IG5vdyE=?=',
        'MIME-Version: 1.0',
        'Content-Type: multipart/alternative; boundary="XYZ"',
        '',
        'preamble',
        '--XYZ',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: quoted-printable',
        '',
        'Caf=C3=A9 viagra =',
        'discount',
        '--XYZ',
        'Content-Type: text/html',
        'Content-Transfer-Encoding: base64',
        '',
        Buffer.from('<p>Visit <a href="http://www.cheap.example.com/x">here</a></p>').toString('base64'),
        '--XYZ--',
        'epilogue',
      ].join('\n'),
    )
    const msg = parseMessage(raw)
    expect(msg.parts.map((p) => p.type)).toEqual(['text/plain', 'text/html'])
    expect(msg.parts[0]?.text).toContain('Café viagra discount')
    const names = featureNames(msg)
    expect(names).toContain('s:buy')
    expect(names).toContain('fd:pharma.example.ru')
    expect(names).toContain('fn:cheap')
    expect(names).toContain('u:www.cheap.example.com')
    expect(names).toContain('ub:example.com')
    expect(names).toContain('b:café')
    expect(names).toContain('b:visit')
    expect(names).not.toContain('b:href')
    expect(names).toContain('mp:text/plain,text/html')
    expect(names).toContain('cs:utf-8')
    expect(names).toContain('te:text/html:base64')
    expect(names).toContain('te:text/plain:quoted-printable')
  })

  it('sender consistency: Message-ID and Reply-To domains against From', () => {
    const names = (h: string) => featureNames(parseMessage(crlf(`${h}\nSubject: x\n\nhello there`)))
    expect(names('From: a@mail.example.com\nMessage-ID: <1@smtp.example.com>')).toContain('hx:mid-same')
    expect(names('From: a@example.com\nMessage-ID: <1@bulk.example.net>')).toContain('hx:mid-other')
    expect(names('From: a@example.com\nMessage-ID: <12345>')).toContain('hx:mid-nodomain')
    expect(names('From: a@example.com\nReply-To: b@other.example.org')).toContain('hx:replyto-other')
    expect(names('From: a@example.com').some((n) => n.startsWith('hx:'))).toBe(false)
  })

  it('URL path tokens, optional HTML tag and character n-gram features', () => {
    const raw = crlf(
      'Subject: x\nContent-Type: text/html\n\n<font color=red>Fr-ee</font> <a href="https://shop.example.com:8080/deals/Buy-Now.php?id=77">go</a>',
    )
    const msg = parseMessage(raw)
    const names = featureNames(msg)
    expect(names).toContain('u:shop.example.com')
    expect(names).toContain('up:deals')
    expect(names).toContain('up:buy-now')
    expect(names).toContain('up:php')
    expect(names).toContain('u#query')
    expect(names.some((n) => n.startsWith('tag:') || n.startsWith('c:'))).toBe(false)
    const more = featureNames(msg, { htmlTags: true, charNgrams: 4 })
    expect(more).toContain('tag:font')
    expect(more).toContain('attr:font.color')
    expect(more).toContain('c:fr e')
    expect(more).toContain('c: go ')
  })

  it('does not use corpus-specific headers or raw numbers', () => {
    const names = featureNames(
      parseMessage(
        crlf(
          'From joe@x.org  Thu Aug 22 12:36:23 2002\nReceived: from a.b\nX-Spam-Status: No\nDelivered-To: zzzz@x\nSubject: hi 2002\nFrom: joe@x.org\n\nmeet on 2002-08-22\n',
        ),
      ),
    )
    expect(names.some((n) => n.includes('received') || n.includes('x-spam') || n.includes('delivered'))).toBe(
      false,
    )
    expect(names).toContain('s:#num4')
    expect(names.some((n) => n.includes('2002'))).toBe(false)
  })

  it('survives malformed MIME: missing boundary, unclosed parts, garbage headers', () => {
    const inputs = [
      'Content-Type: multipart/mixed\n\nno boundary here',
      'Content-Type: multipart/mixed; boundary=\n\n--\n--',
      'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: multipart/mixed; boundary="a"\n\n--a\n',
      ':::\n\x00\x01\xff: x\n \n\tcontinued\n\nbody',
      'Subject: =?bogus-charset?Q?=FF=FE?= =?utf-8?B?!!!?=\nContent-Type: text/plain; charset=no-such\n\n\xff\xfe',
      '',
      '\n\n\n',
    ]
    for (const s of inputs) {
      expect(() => extractFeatures(Buffer.from(s, 'latin1'))).not.toThrow()
      expect(extractFeatures(Buffer.from(s, 'latin1')).length).toBeGreaterThan(0)
    }
  })

  it('decodes a truncated base64 part as far as it goes', () => {
    const b64 = Buffer.from('limited time offer for you today').toString('base64')
    const raw = crlf(
      `Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n${b64.slice(0, 23)}`,
    )
    const msg = parseMessage(raw)
    expect(msg.parts[0]?.text.startsWith('limited time')).toBe(true)
  })

  it('handles a huge header and deep nesting in bounded time', () => {
    const huge = `Subject: ${'spam '.repeat(400_000)}\nX-Long: ${'a'.repeat(2_000_000)}\n${'X-H: v\n'.repeat(50_000)}\nbody`
    let nested = 'Content-Type: multipart/mixed; boundary=z0\n\n'
    for (let i = 1; i < 200; i++) nested += `--z${i - 1}\nContent-Type: multipart/mixed; boundary=z${i}\n\n`
    const t = performance.now()
    expect(extractFeatures(Buffer.from(huge)).length).toBeGreaterThan(0)
    expect(extractFeatures(Buffer.from(nested)).length).toBeGreaterThan(0)
    expect(extractFeatures(Buffer.from(`Subject: x\n\n${'<'.repeat(1_000_000)}`)).length).toBeGreaterThan(0)
    // inputs that make backtracking regexes quadratic
    const from = `From: ${'<'.repeat(60_000)}\nSubject: ${'x'.repeat(60_000)}\n`
    for (const html of ['<!--', '<a ', '<script>', '<style x="']) {
      const raw = `${from}Content-Type: text/html\n\n${html.repeat(50_000)}`
      expect(extractFeatures(Buffer.from(raw)).length).toBeGreaterThan(0)
    }
    expect(performance.now() - t).toBeLessThan(2000)
  })

  it('returns sorted unique indices inside the feature space', () => {
    const v = extractFeatures(Buffer.from('Subject: a b c a b c\n\nword word word'), { bits: 10 })
    for (let i = 1; i < v.length; i++) expect(v[i]).toBeGreaterThan(v[i - 1] ?? -1)
    for (const x of v) expect(x).toBeLessThan(1 << 10)
  })
})

describe('helpers', () => {
  it('tokenize lower-cases and keeps 2-20 char words', () => {
    expect(tokenize("Hello WORLD a it's 123456789 supercalifragilisticexpialidocious")).toEqual([
      'hello',
      'world',
      "it's",
      '#num6',
      '#long',
    ])
  })
  it('stripHtml removes tags, scripts, comments and decodes entities', () => {
    expect(
      stripHtml('<style>x{}</style><b>Hi</b>&amp;<!-- c -->&#65;<script>evil()</script>')
        .replace(/\s+/g, ' ')
        .trim(),
    ).toBe('Hi & A')
  })
})
