import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { type Harness, startHarness, tempDir } from '@moat/testkit'
import { generate } from 'selfsigned'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

/** Opens SMTP, upgrades with STARTTLS and returns the certificate the server presented. */
async function starttlsCertificate(port: number): Promise<tls.PeerCertificate> {
  const socket = net.connect(port, '127.0.0.1')
  let buffer = ''
  const waitFor = (pattern: RegExp) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (pattern.test(buffer)) {
          socket.off('data', onData)
          buffer = ''
          resolve()
        }
      }
      const onData = (d: Buffer) => {
        buffer += d.toString()
        check()
      }
      socket.on('data', onData)
      check()
    })
  await waitFor(/^220 /m)
  socket.write('EHLO client.example\r\n')
  await waitFor(/^250 /m)
  socket.write('STARTTLS\r\n')
  await waitFor(/^220 /m)
  const secure = tls.connect({ socket, rejectUnauthorized: false, servername: 'mx.moat.test' })
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve())
    secure.once('error', reject)
  })
  const certificate = secure.getPeerCertificate()
  secure.destroy()
  return certificate
}

describe('STARTTLS certificate', () => {
  let h: Harness
  let dir: string

  beforeAll(async () => {
    dir = await tempDir('moat-tls-')
    const pems = await generate([{ name: 'commonName', value: 'mx.customer-facing.test' }], {
      keySize: 2048,
      algorithm: 'sha256',
    })
    await fs.writeFile(path.join(dir, 'cert.pem'), pems.cert)
    await fs.writeFile(path.join(dir, 'key.pem'), pems.private)
    h = await startHarness({
      only: ['ingest'],
      env: { MOAT_TLS_CERT: path.join(dir, 'cert.pem'), MOAT_TLS_KEY: path.join(dir, 'key.pem') },
    })
  })
  afterAll(async () => {
    await h?.close()
    await fs.rm(dir, { recursive: true, force: true })
  })

  it('presents the certificate from MOAT_TLS_CERT / MOAT_TLS_KEY', async () => {
    const certificate = await starttlsCertificate(h.smtpPort)
    expect(certificate.subject.CN).toBe('mx.customer-facing.test')
  })

  it('generates a self-signed certificate for MOAT_HOSTNAME when none is configured, and keeps it', async () => {
    const plain = await startHarness({ only: ['ingest'] })
    try {
      const first = await starttlsCertificate(plain.smtpPort)
      expect(first.subject.CN).toBe('mx.moat.test')
      expect(first.issuer.CN).toBe('mx.moat.test')
      const saved = await fs.readFile(path.join(plain.dataDir, 'tls', 'self-signed-cert.pem'), 'utf8')
      expect(saved).toContain('BEGIN CERTIFICATE')
      const again = await starttlsCertificate(plain.smtpPort)
      expect(again.fingerprint256).toBe(first.fingerprint256)
    } finally {
      await plain.close()
    }
  })
})
