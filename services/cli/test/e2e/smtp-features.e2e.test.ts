import net from 'node:net'
import { showMessage } from '@moat/core'
import { eventually, type Harness, rawSmtp, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import nodemailer from 'nodemailer'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'

const clamdUrl = inject('clamdUrl')

describe.skipIf(!clamdUrl)(
  `SMTP service extensions and multi-tenant transactions ${inject('clamdMissing')}`,
  () => {
    let h: Harness
    const sinks: Record<string, SmtpSink> = {}

    beforeAll(async () => {
      sinks.acme = await startSmtpSink()
      sinks.globex = await startSmtpSink()
      h = await startHarness({ env: { MOAT_CLAMD: clamdUrl } })
      await h.customer({
        tenant: 'acme',
        domain: 'acme.test',
        destinations: [`127.0.0.1:${sinks.acme.port}`],
      })
      await h.customer({
        tenant: 'globex',
        domain: 'globex.test',
        destinations: [`127.0.0.1:${sinks.globex.port}`],
      })
    })
    afterAll(async () => {
      await h?.close()
      for (const s of Object.values(sinks)) await s.stop()
    })

    it('advertises STARTTLS, SIZE, PIPELINING, 8BITMIME, SMTPUTF8 and enhanced status codes', async () => {
      const socket = net.connect(h.smtpPort, '127.0.0.1')
      const text = await new Promise<string>((resolve) => {
        let buf = ''
        socket.on('data', (d) => {
          buf += d.toString()
          if (buf.startsWith('220') && !buf.includes('EHLO sent')) {
            buf += 'EHLO sent'
            socket.write('EHLO client.example\r\n')
          }
          if (/\r\n250 [^\r\n]*\r\n$/.test(buf)) resolve(buf)
        })
      })
      socket.destroy()
      const extensions = text
        .split('\r\n')
        .filter((l) => /^250[- ]/.test(l))
        .map((l) => l.slice(4))
      expect(extensions).toEqual(
        expect.arrayContaining([
          'STARTTLS',
          'SIZE 26214400',
          'PIPELINING',
          '8BITMIME',
          'SMTPUTF8',
          'ENHANCEDSTATUSCODES',
        ]),
      )
    })

    it('accepts a pipelined transaction sent in one write', async () => {
      const smtp = await rawSmtp(h.smtpPort)
      await smtp.send('EHLO client.example')
      const mail = await smtp.send(
        'MAIL FROM:<a@sender.example>\r\nRCPT TO:<p1@acme.test>\r\nRCPT TO:<nobody@else.example>\r\nDATA',
      )
      expect([mail, await smtp.read(), await smtp.read(), await smtp.read()].map((r) => r.text)).toEqual([
        '250 2.1.0 Accepted',
        '250 2.1.5 Accepted',
        '550 5.7.1 Relaying denied: else.example is not a domain served here',
        '354 End data with <CR><LF>.<CR><LF>',
      ])
      expect((await smtp.data('Subject: pipelined\r\n\r\nhi\r\n')).text).toMatch(/^250 2\.0\.0 queued as /)
      smtp.close()
    })

    it('splits one transaction whose recipients span two tenants into one record each, delivered separately', async () => {
      const info = await nodemailer
        .createTransport({
          host: '127.0.0.1',
          port: h.smtpPort,
          secure: false,
          requireTLS: true,
          tls: { rejectUnauthorized: false },
        })
        .sendMail({
          from: 'alice@sender.example',
          to: ['bob@acme.test', 'carol@globex.test', 'dan@acme.test'],
          subject: 'to two customers',
          text: 'one message, two tenants',
        })
      const queueId = info.response.split(' ').pop() as string
      const traces = await eventually('both records delivered', async () => {
        const t = await showMessage(h.stack.database.db, queueId)
        return t.length === 2 && t.every((x) => x.message.status === 'delivered') && t
      })
      const byTenant = Object.fromEntries(traces.map((t) => [t.message.tenantName, t]))
      expect(byTenant.acme?.message.rcptTo).toEqual(['bob@acme.test', 'dan@acme.test'])
      expect(byTenant.globex?.message.rcptTo).toEqual(['carol@globex.test'])
      expect(byTenant.acme?.message.objectKey).toBe(byTenant.globex?.message.objectKey)
      expect(byTenant.acme?.message.id).not.toBe(byTenant.globex?.message.id)

      const ofThisMessage = (sink: SmtpSink | undefined) =>
        eventually('the message at the sink', () =>
          sink?.messages.find((m) => m.raw.includes('Subject: to two customers')),
        )
      const toAcme = await ofThisMessage(sinks.acme)
      const toGlobex = await ofThisMessage(sinks.globex)
      expect(toAcme?.to).toEqual(['bob@acme.test', 'dan@acme.test'])
      expect(toGlobex?.to).toEqual(['carol@globex.test'])
      // received over STARTTLS, said so in the Received header, and delivered over TLS too
      expect(toAcme?.raw.toString()).toMatch(
        /\r\nReceived: from .*\r\n\tby mx\.moat\.test \(Moat\) with ESMTPS \(TLSv1\.[23] /,
      )
      expect(toAcme?.secure).toBe(true)
    })

    it('delivers a bounce with the null sender <> as such', async () => {
      const smtp = await rawSmtp(h.smtpPort)
      await smtp.send('EHLO mailer-daemon.example')
      expect((await smtp.send('MAIL FROM:<>')).code).toBe(250)
      expect((await smtp.send('RCPT TO:<bob@globex.test>')).code).toBe(250)
      expect((await smtp.send('DATA')).code).toBe(354)
      const reply = await smtp.data(
        'From: MAILER-DAEMON@example\r\nSubject: Undelivered Mail\r\n\r\nbounce\r\n',
      )
      smtp.close()
      const queueId = reply.text.split(' ').pop() as string
      await h.traceWhen(queueId, (t) => t.message.status === 'delivered')
      const bounce = sinks.globex?.messages.find((m) => m.raw.includes('Undelivered Mail'))
      expect(bounce?.from).toBe('')
    })
  },
)

describe('PROXY protocol behind a TCP load balancer', () => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({ only: ['ingest'], env: { MOAT_SMTP_PROXY_PROTOCOL: '1' } })
    await h.customer({ tenant: 'acme', domain: 'acme.test', destinations: ['127.0.0.1:9'] })
  })
  afterAll(async () => {
    await h?.close()
  })

  it("records the client address the load balancer reports, not the balancer's", async () => {
    const socket = net.connect(h.smtpPort, '127.0.0.1')
    const lines: string[] = []
    let wake: () => void = () => {}
    socket.on('data', (d) => {
      lines.push(...d.toString().split('\r\n').filter(Boolean))
      wake()
    })
    const reply = async (prefix: string) => {
      while (!lines.some((l) => l.startsWith(prefix))) await new Promise<void>((r) => (wake = r))
      return lines.splice(0).find((l) => l.startsWith(prefix)) as string
    }
    socket.write('PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n')
    await reply('220 ')
    socket.write('EHLO lb-client.example\r\n')
    await reply('250 ')
    socket.write('MAIL FROM:<a@sender.example>\r\n')
    await reply('250 ')
    socket.write('RCPT TO:<b@acme.test>\r\n')
    await reply('250 ')
    socket.write('DATA\r\n')
    await reply('354 ')
    socket.write('Subject: via proxy\r\n\r\nhi\r\n.\r\n')
    const queued = await reply('250 ')
    socket.destroy()
    const queueId = queued.split(' ').pop() as string
    const [trace] = await showMessage(h.stack.database.db, queueId)
    expect(trace?.message.clientIp).toBe('203.0.113.7')
    const raw = (await h.stack.store.get(trace?.message.objectKey ?? '')).toString()
    expect(raw).toMatch(/^Received: from lb-client\.example \(\[203\.0\.113\.7\]\)/)
  })
})
