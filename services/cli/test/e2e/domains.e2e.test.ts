import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { auditLog } from '@moat/db'
import { type Harness, startHarness } from '@moat/testkit'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const execFileP = promisify(execFile)
const MOAT = path.resolve(import.meta.dirname, '../../bin/moat.js')

describe('domain verification through the CLI and a DNS server on loopback', () => {
  let h: Harness

  /** Runs `moat ARGS` against the test stack; resolves with its output and exit code. */
  async function moat(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
    try {
      const { stdout, stderr } = await execFileP(process.execPath, [MOAT, ...args], {
        env: { ...process.env, ...h.env },
      })
      return { stdout, stderr, code: 0 }
    } catch (err) {
      const e = err as { stdout: string; stderr: string; code: number }
      return { stdout: e.stdout, stderr: e.stderr, code: e.code }
    }
  }

  beforeAll(async () => {
    h = await startHarness({ only: [] })
  })
  afterAll(async () => {
    await h?.close()
  })

  it('verifies a domain once its TXT record is published, and reports where MX points', async () => {
    expect((await moat('tenant', 'create', 'acme')).stdout).toMatch(
      /^created tenant acme \(ten_[0-9a-z]{26}\)/,
    )
    const added = await moat('domain', 'add', 'acme', 'Example.TEST')
    expect(added.code).toBe(0)
    const txt = /example\.test\. 3600 IN TXT "(moat-verification=[0-9a-f]{32})"/.exec(added.stdout)
    expect(txt).not.toBeNull()
    expect(added.stdout).toContain('example.test. 3600 IN MX 10 mx1.moat.test.')
    expect(added.stdout).toContain('example.test. 3600 IN MX 20 mx2.moat.test.')

    // nothing published yet
    const missing = await moat('domain', 'verify', 'example.test')
    expect(missing.code).toBe(1)
    expect(missing.stdout).toContain(
      `example.test: NOT verified: no TXT record at example.test (the name does not exist); publish: example.test. TXT "${txt?.[1]}"`,
    )

    // a TXT record, but not ours
    h.dns.zones.set('example.test', { txt: ['v=spf1 -all', 'moat-verification=0000'] })
    const wrong = await moat('domain', 'verify', 'example.test')
    expect(wrong.code).toBe(1)
    expect(wrong.stdout).toContain(
      `example.test: NOT verified: the TXT records at example.test do not include "${txt?.[1]}" (found: "v=spf1 -all", "moat-verification=0000")`,
    )

    // the right record, MX still elsewhere: verified, not yet active
    h.dns.zones.set('example.test', {
      txt: ['v=spf1 -all', txt?.[1] ?? ''],
      mx: [{ exchange: 'mail.example.test', priority: 10 }],
    })
    const verified = await moat('domain', 'verify', 'example.test')
    expect(verified.code).toBe(0)
    expect(verified.stdout).toContain('example.test: verified for tenant acme')
    expect(verified.stdout).toContain(
      'MX: mail.example.test; does not point at Moat (mx1.moat.test, mx2.moat.test) yet',
    )

    // MX now at Moat: active
    h.dns.zones.set('example.test', {
      txt: [txt?.[1] ?? ''],
      mx: [
        { exchange: 'mx1.moat.test', priority: 10 },
        { exchange: 'mail.example.test', priority: 20 },
      ],
    })
    const active = JSON.parse((await moat('--json', 'domain', 'verify', 'example.test')).stdout)
    expect(active).toMatchObject({
      verified: true,
      mx: { pointsAtMoat: true },
      domain: { status: 'active', verifiedBy: 'dns' },
    })

    const list = await moat('domain', 'list')
    expect(list.stdout).toMatch(/example\.test\s+acme\s+active\s+moat/)
  })

  it('does not let another tenant claim a verified domain', async () => {
    await moat('tenant', 'create', 'intruder')
    const claim = await moat('domain', 'add', 'intruder', 'example.test')
    expect(claim.code).toBe(1)
    expect(claim.stderr).toBe(
      'error: example.test is already verified by another customer\n  contact support if it is yours\n',
    )
  })

  it('lets an operator force verification, and records the override in the audit log', async () => {
    await moat('tenant', 'create', 'forced-co')
    await moat('domain', 'add', 'forced-co', 'forced.test')
    const forced = await moat('domain', 'verify', 'forced.test', '--force')
    expect(forced.code).toBe(0)
    expect(forced.stdout).toContain('forced.test: verified for tenant forced-co (operator override)')
    const rows = await h.stack.database.db.select().from(auditLog)
    const override = rows.find((r) => r.action === 'domain.force_verify')
    expect(override?.actor).toMatch(/^operator:/)
    expect(override?.detail).toMatchObject({ name: 'forced.test', reason: 'operator override' })
  })

  it('explains mistakes: unknown tenant, bad domain, bad destination, unknown message', async () => {
    expect((await moat('domain', 'add', 'nobody', 'x.test')).stderr).toBe(
      'error: no tenant nobody\n  create it with: moat tenant create NAME\n',
    )
    expect((await moat('domain', 'add', 'acme', 'not a domain')).stderr).toBe(
      'error: invalid domain name "not a domain"\n  give a name like example.com\n',
    )
    expect((await moat('route', 'set', 'example.test', 'mail.example.test')).stderr).toBe(
      'error: invalid destination "mail.example.test"\n  write HOST:PORT or HOST:PORT:PRIORITY, e.g. mail.example.com:25:10\n',
    )
    expect((await moat('message', 'show', 'msg_nope')).stderr).toBe(
      'error: no message msg_nope\n  list recent ones with: moat messages\n',
    )
    const route = await moat('route', 'set', 'example.test', 'mail.example.test:25:20', '[::1]:2526:10')
    expect(route.code).toBe(0)
    expect(route.stdout).toMatch(/10\s+::1\s+2526\n20\s+mail\.example\.test\s+25/)
  })

  it('names the bad variable when the configuration is wrong', async () => {
    const bad = await execFileP(process.execPath, [MOAT, 'tenant', 'list'], {
      env: { ...process.env, ...h.env, MOAT_SMTP_PORT: 'twenty-five' },
    }).catch((err: { stderr: string; code: number }) => err)
    expect('code' in bad && bad.code).toBe(2)
    expect(bad.stderr).toBe(
      'invalid configuration:\n  MOAT_SMTP_PORT="twenty-five": expected a TCP port number\n',
    )
  })
})
