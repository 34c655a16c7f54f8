import fs from 'node:fs/promises'
import path from 'node:path'
import { generate } from 'selfsigned'

/**
 * The STARTTLS certificate: the configured PEM files, or a self-signed one generated once under
 * the data directory for local use.
 */
export async function loadTls(options: {
  certFile: string | undefined
  keyFile: string | undefined
  dataDir: string
  hostname: string
}): Promise<{ cert: Buffer; key: Buffer; selfSigned: boolean }> {
  if (options.certFile && options.keyFile) {
    return {
      cert: await fs.readFile(options.certFile),
      key: await fs.readFile(options.keyFile),
      selfSigned: false,
    }
  }
  const dir = path.join(options.dataDir, 'tls')
  const certFile = path.join(dir, 'self-signed-cert.pem')
  const keyFile = path.join(dir, 'self-signed-key.pem')
  try {
    return { cert: await fs.readFile(certFile), key: await fs.readFile(keyFile), selfSigned: true }
  } catch {
    const pems = await generate([{ name: 'commonName', value: options.hostname }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: options.hostname }] }],
    })
    await fs.mkdir(dir, { recursive: true })
    await fs.writeFile(keyFile, pems.private, { mode: 0o600 })
    await fs.writeFile(certFile, pems.cert)
    return { cert: Buffer.from(pems.cert), key: Buffer.from(pems.private), selfSigned: true }
  }
}
