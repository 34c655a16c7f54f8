import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'

/** The EICAR anti-virus test string (68 bytes). Not a virus; every scanner detects it by convention. */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
/** The name of the signature in the test database that a local clamd gets without real signatures. */
export const EICAR_SIGNATURE = 'Moat.Test.EICAR'

/** Where Debian's clamav-daemon keeps clamd and freshclam's signatures. */
export const CLAMD_BINARY = ['/usr/sbin/clamd', '/usr/bin/clamd'].find((p) => existsSync(p))
export const SYSTEM_SIGNATURES = '/var/lib/clamav'

export interface LocalClamd {
  url: string
  port: number
  /** `system` when it loaded the signatures in /var/lib/clamav, `test` for the EICAR-only database */
  signatures: 'system' | 'test'
  stop(): Promise<void>
}

function hasSignatures(dir: string): boolean {
  try {
    return readdirSync(dir).some((f) => /\.(cvd|cld|ndb|hdb|ldb)$/.test(f))
  } catch {
    return false
  }
}

/**
 * Runs clamd as a child process on a loopback port, with its files under `dir`. It loads the
 * system's signatures when freshclam has fetched some, or else a one-signature database that
 * detects only EICAR (enough for development and tests, useless against real viruses). Resolves
 * once clamd answers PING.
 */
export async function startLocalClamd(options: {
  dir: string
  port: number
  signatures?: 'system' | 'test' | 'auto'
  startTimeoutMs?: number
}): Promise<LocalClamd> {
  if (!CLAMD_BINARY) throw new Error('clamd is not installed (Debian package clamav-daemon)')
  const wanted = options.signatures ?? 'auto'
  const signatures = wanted === 'auto' ? (hasSignatures(SYSTEM_SIGNATURES) ? 'system' : 'test') : wanted
  await fs.mkdir(options.dir, { recursive: true })
  let databaseDir = SYSTEM_SIGNATURES
  if (signatures === 'test') {
    databaseDir = path.join(options.dir, 'db')
    await fs.mkdir(databaseDir, { recursive: true })
    await fs.writeFile(
      path.join(databaseDir, 'moat-test.ndb'),
      `${EICAR_SIGNATURE}:0:*:${Buffer.from(EICAR).toString('hex')}\n`,
    )
  }
  const conf = path.join(options.dir, 'clamd.conf')
  const logFile = path.join(options.dir, 'clamd.log')
  await fs.writeFile(
    conf,
    [
      `TCPSocket ${options.port}`,
      'TCPAddr 127.0.0.1',
      `DatabaseDirectory ${databaseDir}`,
      'Foreground yes',
      `LogFile ${logFile}`,
      'StreamMaxLength 100M',
      'MaxThreads 4',
      '',
    ].join('\n'),
  )
  const child = spawn(CLAMD_BINARY, ['-c', conf], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const deadline = Date.now() + (options.startTimeoutMs ?? 120_000)
  while (!(await clamdPing(options.port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await fs.readFile(logFile, 'utf8').catch(() => '')
      child.kill('SIGKILL')
      throw new Error(`clamd did not start:\n${log.slice(-2000)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    url: `tcp://127.0.0.1:${options.port}`,
    port: options.port,
    signatures,
    async stop() {
      child.kill('SIGTERM')
      await exited
    },
  }
}

/** Whether a clamd answers PING at `port` on loopback. */
export function clamdPing(port: number, host = '127.0.0.1'): Promise<boolean> {
  return clamdAnswers({ host, port })
}

/** Whether a clamd answers PING at a TCP address or a unix socket. */
export function clamdAnswers(target: { host: string; port: number } | { socket: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = 'socket' in target ? net.connect(target.socket) : net.connect(target.port, target.host)
    let reply = ''
    socket.setTimeout(1000)
    socket.on('connect', () => socket.write('zPING\0'))
    socket.on('data', (d) => {
      reply += d.toString()
    })
    socket.on('end', () => resolve(reply.startsWith('PONG')))
    socket.on('error', () => resolve(false))
    socket.on('timeout', () => {
      socket.destroy()
      resolve(false)
    })
  })
}
