import { Readable } from 'node:stream'
import type { HeaderRewrite } from '@moat/db'
import { describe, expect, it } from 'vitest'
import { rewriteHeaders } from '../src/header-rewrite'

async function rewrite(raw: string, rw: HeaderRewrite | null, chunk = raw.length): Promise<string> {
  const bytes = Buffer.from(raw, 'utf8')
  const chunks: Buffer[] = []
  for (let i = 0; i < bytes.length; i += chunk) chunks.push(bytes.subarray(i, i + chunk))
  let out = Buffer.alloc(0)
  for await (const c of rewriteHeaders(Readable.from(chunks), rw)) out = Buffer.concat([out, c as Buffer])
  return out.toString('utf8')
}

const MESSAGE = [
  'Received: from relay.example ([192.0.2.1])',
  '\tby mx.moat.test (Moat); Tue, 24 Nov 2026 10:00:00 +0000',
  'Authentication-Results: mx.moat.test; dkim=pass (forged)',
  'Authentication-Results: (comment) MX.MOAT.TEST; spf=pass',
  'Authentication-Results: relay.example; spf=pass smtp.mailfrom=a.example',
  'From: a@a.example',
  'Subject: héllo',
  '',
  'Body line 1',
  '',
  'Authentication-Results: mx.moat.test; in the body, untouched',
  '',
].join('\r\n')

describe('rewriteHeaders', () => {
  it('adds fields on top, drops results claiming our authserv-id, keeps the body byte for byte', async () => {
    for (const chunk of [MESSAGE.length, 7, 1]) {
      const out = await rewrite(
        MESSAGE,
        {
          prepend: ['Authentication-Results: mx.moat.test;\r\n spf=none', 'X-Moat-Spam: no'],
          stripAuthservId: 'mx.moat.test',
        },
        chunk,
      )
      expect(out).toBe(
        [
          'Authentication-Results: mx.moat.test;',
          ' spf=none',
          'X-Moat-Spam: no',
          'Received: from relay.example ([192.0.2.1])',
          '\tby mx.moat.test (Moat); Tue, 24 Nov 2026 10:00:00 +0000',
          'Authentication-Results: relay.example; spf=pass smtp.mailfrom=a.example',
          'From: a@a.example',
          'Subject: héllo',
          '',
          'Body line 1',
          '',
          'Authentication-Results: mx.moat.test; in the body, untouched',
          '',
        ].join('\r\n'),
      )
    }
  })

  it('prefixes the subject once, and adds one when there is none', async () => {
    const tagged = await rewrite(MESSAGE, { prepend: [], subjectPrefix: '[SPAM]' })
    expect(tagged).toContain('\r\nSubject: [SPAM] héllo\r\n\r\nBody line 1')
    const again = await rewrite(tagged, { prepend: [], subjectPrefix: '[SPAM]' })
    expect(again).toBe(tagged)
    const none = await rewrite('From: a@a.example\r\n\r\nhi\r\n', { prepend: [], subjectPrefix: '[SPAM]' })
    expect(none).toBe('From: a@a.example\r\nSubject: [SPAM]\r\n\r\nhi\r\n')
  })

  it('handles LF-only mail, a header without body, and passes through when there is nothing to do', async () => {
    expect(await rewrite('From: a\nSubject: s\n\nbody\n', { prepend: ['X-A: 1'] })).toBe(
      'X-A: 1\nFrom: a\nSubject: s\n\nbody\n',
    )
    expect(await rewrite('From: a\r\nSubject: s', { prepend: ['X-A: 1'] })).toBe(
      'X-A: 1\r\nFrom: a\r\nSubject: s\r\n',
    )
    expect(await rewrite(MESSAGE, null)).toBe(MESSAGE)
  })
})
