import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { createSmtpCredential, getOutboundSettings, VERIFICATION_PREFIX } from '@moat/core'
import { freePort, type Harness, type SmtpSink, startHarness, startSmtpSink } from '@moat/testkit'
import nodemailer, { type Transporter } from 'nodemailer'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const execFileP = promisify(execFile)
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')

/**
 * A sender pool of three smart hosts (`mailx1` weight 3, `mailx2` weight 1, `mailx3` weight 1),
 * each a real SMTP server on loopback. With mailx3 down, the other two share the mail by weight
 * and nothing is lost; once mailx3 is back and its cool-down is over, a probe finds it and it
 * gets mail again. Scanning is off here: the pool is what is under test.
 */
describe('sender pool of smart hosts', () => {
  let h: Harness
  const sinks: SmtpSink[] = []
  const ports: number[] = []
  let transport: Transporter
  let tenantId: string

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) ports.push(await freePort())
    sinks.push(await startSmtpSink({ port: ports[0] }), await startSmtpSink({ port: ports[1] }))
    const pools = {
      default: [
        { name: 'mailx1', weight: 3, smarthost: { host: '127.0.0.1', port: ports[0] } },
        { name: 'mailx2', weight: 1, smarthost: { host: '127.0.0.1', port: ports[1] } },
        { name: 'mailx3', weight: 1, smarthost: { host: '127.0.0.1', port: ports[2] } },
      ],
    }
    h = await startHarness({
      env: {
        MOAT_VIRUS_SCAN: 'off',
        MOAT_SPAM_SCAN: 'off',
        MOAT_SENDER_POOLS: JSON.stringify(pools),
        MOAT_EGRESS_COOLDOWN_SECONDS: '1',
        MOAT_OUTBOUND_RATE_PER_MINUTE: '10000',
        MOAT_OUTBOUND_TENANT_RATE_PER_MINUTE: '10000',
        MOAT_OUTBOUND_SPIKE_MIN: '10000',
      },
      only: ['submission', 'scan', 'deliver'],
    })
    ;({ tenantId } = await h.customer({ tenant: 'pooled', domain: 'pooled.test', destinations: [] }))
    expect(h.dns.zones.get('pooled.test')?.txt?.[0]).toMatch(new RegExp(`^${VERIFICATION_PREFIX}`))
    const { username, password } = await createSmtpCredential(h.stack.database.db, {
      tenantId,
      name: 'bulk',
      actor: 'test',
    })
    transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: h.submissionPort,
      requireTLS: true,
      pool: true,
      maxConnections: 4,
      auth: { user: username, pass: password },
      tls: { rejectUnauthorized: false },
    })
  })
  afterAll(async () => {
    transport?.close()
    await h?.close()
    await Promise.all(sinks.map((s) => s.stop()))
  })

  const send = (i: number) =>
    transport.sendMail({
      envelope: { from: 'news@pooled.test', to: [`reader${i}@elsewhere.example`] },
      raw: `From: news@pooled.test\r\nTo: reader${i}@elsewhere.example\r\nSubject: issue ${i}\r\n\r\nhello\r\n`,
    })

  it('spreads over the healthy smart hosts by weight while one is down, and loses nothing', async () => {
    await Promise.all(Array.from({ length: 40 }, (_, i) => send(i)))
    await Promise.all(sinks.map((s) => s.waitFor(1)))
    const total = () => (sinks[0]?.messages.length ?? 0) + (sinks[1]?.messages.length ?? 0)
    const deadline = Date.now() + 30_000
    while (total() < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    expect(total()).toBe(40)
    const [x1, x2] = [sinks[0]?.messages.length ?? 0, sinks[1]?.messages.length ?? 0]
    // weight 3 against 1: about 30 and 10; far from an even split either way
    expect(x1).toBeGreaterThanOrEqual(22)
    expect(x2).toBeGreaterThanOrEqual(4)
  })

  it('gives the downed smart host mail again once it is back', async () => {
    const mailx3 = await startSmtpSink({ port: ports[2] })
    sinks.push(mailx3)
    // past its cool-down (1 s, doubled while it kept failing: at most 16 s)
    const deadline = Date.now() + 40_000
    let i = 100
    while (mailx3.messages.length === 0 && Date.now() < deadline) {
      await send(i++)
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(mailx3.messages.length).toBeGreaterThan(0)
  })

  it('the operator assigns a tenant to a configured pool with `moat tenant pool`', async () => {
    const moat = (...args: string[]) =>
      execFileP(process.execPath, [MOAT, ...args], { env: { ...process.env, ...h.env } }).then(
        (r) => ({ ...r, code: 0 }),
        (e: { stdout: string; stderr: string; code: number }) => e,
      )
    const bad = await moat('tenant', 'pool', 'pooled', 'bulk')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('no sender pool bulk')
    expect(bad.stderr).toContain('configured pools: default')
    const good = await moat('tenant', 'pool', 'pooled', 'default')
    expect(good.stdout.trim()).toBe('pooled now sends through the default pool')
    expect((await getOutboundSettings(h.stack.database.db, tenantId)).senderPool).toBeNull()
  })
})
